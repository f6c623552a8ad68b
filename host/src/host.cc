#include "host.h"

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <spdlog/spdlog.h>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <optional>
#include <set>
#include <unordered_map>
#include <variant>

#include "admission.h"
#include "completion.h"
#include "control_handler.h"
#include "deadlines.h"
#include "curve_auth.h"
#include "executor.h"
#include "outbox.h"
#include "http_server.h"
#include "lifecycle.h"
#include "machine.h"
#include "protocol.h"
#include "reload_plan.h"
#include "result_cache.h"
#include "service_notify.h"
#include "resource_pool.h"
#include "scheduler.h"
#include "task_context.h"
#include "telemetry.h"

namespace umi {
namespace {

using Clock = std::chrono::steady_clock;


// How long a drained host waits for a collector to take its last results.
constexpr auto kFlushTimeout = std::chrono::seconds(10);
// How long a process-isolated task may run on after it is cancelled (timeout,
// cancel, drain) before its worker is SIGKILLed.
constexpr auto kWorkerKillGrace = std::chrono::milliseconds(2000);
// After the drain deadline, how long cancelled tasks get to return.
constexpr auto kCancelGrace = std::chrono::seconds(5);
// An idle loop still wakes this often, so its heartbeat shows it is alive.
constexpr auto kHeartbeatInterval = std::chrono::milliseconds(1000);
// While an rpc client's pipe is full, how often its replies are retried.
constexpr auto kRpcRetryInterval = std::chrono::milliseconds(2);

double UnixNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

Clock::duration DedupWindow(const HardwareConfig& config) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(config.dedup_window_s));
}

double Millis(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

struct Endpoint {
  std::string address;
  bool bind = true;
};

Endpoint ParseEndpoint(const std::string& text) {
  if (!text.empty() && text[0] == '>') return {text.substr(1), false};
  if (!text.empty() && text[0] == '@') return {text.substr(1), true};
  return {text, true};
}

struct RunningTask {
  QueuedTask task;
  Allocation allocation;
  std::shared_ptr<UMI_Context> context;
  double queued_ms = 0;
  bool timed_out = false;
  bool cancel_requested = false;
};

}  // namespace

class Host::Loop {
  struct ActiveTask {
    uint64_t key;
    uint64_t fingerprint;
  };

 public:
  Loop(HostOptions options, const HardwareConfig& config, PluginRegistry& plugins)
      : options_(std::move(options)),
        config_(config),
        plugins_(plugins),
        pool_(MakeCapacity(options_, config, plugins)),
        scheduler_(pool_, std::chrono::milliseconds(config.reserve_after_ms)),
        tasks_(context_, zmq::socket_type::pull),
        results_(context_, zmq::socket_type::push),
        rpc_(context_, zmq::socket_type::router),
        events_(context_, zmq::socket_type::xpub) {}

  std::string Open() {
    std::optional<CurveKeyPair> curve;
    if (!config_.curve_secret_key_file.empty()) {
      auto keys = ReadCurveKeyPair(config_.curve_secret_key_file);
      if (!keys.ok()) return "security.curve.secret_key_file: " + keys.error();
      auto authorized = ReadCurvePublicKeys(config_.curve_authorized_keys_file);
      if (!authorized.ok()) return "security.curve.authorized_keys_file: " + authorized.error();
      if (!zmq_has("curve")) return "security.curve: this libzmq has no CURVE support";
      spdlog::info("CURVE on: {} authorized client key(s)", authorized->size());
      zap_ = std::make_unique<ZapHandler>(context_, std::move(authorized.value()));
      curve = keys.value();
    }
    struct Named {
      const char* name;
      zmq::socket_t* socket;
      const std::string* endpoint;
    };
    for (const Named& s : {Named{"tasks", &tasks_, &options_.tasks_endpoint},
                           Named{"results", &results_, &options_.results_endpoint},
                           Named{"rpc", &rpc_, &options_.rpc_endpoint},
                           Named{"events", &events_, &options_.events_endpoint}}) {
      const Endpoint endpoint = ParseEndpoint(*s.endpoint);
      try {
        s.socket->set(zmq::sockopt::linger, 0);
        if (curve) {
          s.socket->set(zmq::sockopt::curve_server, 1);
          s.socket->set(zmq::sockopt::curve_secretkey, curve->secret_z85);
          s.socket->set(zmq::sockopt::zap_domain, "umi");
        }
        if (s.socket == &tasks_) tasks_.set(zmq::sockopt::rcvhwm, config_.tasks_hwm);
        if (s.socket == &tasks_ || s.socket == &rpc_) s.socket->set(zmq::sockopt::maxmsgsize, config_.max_message_bytes);
        // A full pipe to a client says EAGAIN (the reply waits) instead of
        // dropping it; a client that is gone says EHOSTUNREACH.
        if (s.socket == &rpc_) rpc_.set(zmq::sockopt::router_mandatory, 1);
        if (endpoint.bind) {
          s.socket->bind(endpoint.address);
          endpoints_[s.name] = s.socket->get(zmq::sockopt::last_endpoint);
        } else {
          s.socket->connect(endpoint.address);
          endpoints_[s.name] = ">" + endpoint.address;
        }
      } catch (const zmq::error_t& e) {
        return std::string(s.name) + " socket: cannot " + (endpoint.bind ? "bind " : "connect ") +
               endpoint.address + ": " + e.what();
      }
    }
    if (!options_.http_listen.empty()) {
      if (std::string error = http_.Start(options_.http_listen); !error.empty()) return error;
      endpoints_["http"] = http_.url();
    }
    telemetry_.SetPluginLoadFailures(plugins_.refusals_total());
    telemetry_.SetKnownPlugins(LoadedNames());
    telemetry_.SetConfigFallback(options_.config_fallback);
    PrestartWorkers(plugins_.plugins());
    UpdateLoad();
    telemetry_.SetReady(true);
    return {};
  }

  const std::map<std::string, std::string>& endpoints() const { return endpoints_; }

  int Run(int signal_fd) {
    NotifyService("READY=1\nSTATUS=serving");
    while (true) {
      const bool accepting = lifecycle_.serving() && scheduler_.size() < static_cast<size_t>(config_.max_queued) &&
                             outbox_.results_waiting() < static_cast<size_t>(config_.max_pending_results);
      // Replies waiting for slow rpc clients: read no more requests until they leave.
      const bool rpc_reading = outbox_.replies_waiting() < static_cast<size_t>(config_.max_pending_results);
      zmq::pollitem_t items[] = {
          {nullptr, executor_.fd(), ZMQ_POLLIN, 0},
          {nullptr, signal_fd, ZMQ_POLLIN, 0},
          {rpc_.handle(), 0, static_cast<short>(rpc_reading ? ZMQ_POLLIN : 0), 0},
          {results_.handle(), 0, static_cast<short>(outbox_.results_waiting() == 0 ? 0 : ZMQ_POLLOUT), 0},
          {tasks_.handle(), 0, static_cast<short>(accepting ? ZMQ_POLLIN : 0), 0},
          {events_.handle(), 0, ZMQ_POLLIN, 0},
      };
      zmq::poll(items, std::size(items), NextWakeup());

      if (items[0].revents & ZMQ_POLLIN) HandleMail();
      if (items[1].revents & ZMQ_POLLIN) HandleSignal(signal_fd);
      if (items[3].revents & ZMQ_POLLOUT) outbox_.FlushResults();
      if (outbox_.replies_waiting() > 0) outbox_.FlushReplies();
      if (items[2].revents & ZMQ_POLLIN) ReceiveBatch(rpc_, /*is_rpc=*/true);
      if (items[4].revents & ZMQ_POLLIN) ReceiveBatch(tasks_, /*is_rpc=*/false);
      if (items[5].revents & ZMQ_POLLIN) ReadSubscriptions();
      CheckDeadlines();
      Dispatch();
      UpdateLoad();
      if (!lifecycle_.serving() && running_.empty()) return FinishDrain();
    }
  }

 private:
  static PoolCapacity MakeCapacity(const HostOptions& options, const HardwareConfig& config,
                                   const PluginRegistry& plugins) {
    PoolCapacity capacity = PoolCapacity::FromConfig(config, options.machine_cores);
    for (const auto& [name, plugin] : plugins.plugins()) {
      if (!plugin->allow_concurrent) {
        auto [cap, inserted] = capacity.plugin_caps.emplace(name, 1);
        cap->second = 1;
      }
    }
    return capacity;
  }

  // ---- receiving -----------------------------------------------------------

  // Reads what is waiting, bounded so one busy socket cannot starve the rest.
  void ReceiveBatch(zmq::socket_t& socket, bool is_rpc) {
    for (int i = 0; i < 256; ++i) {
      if (!is_rpc && (!lifecycle_.serving() || scheduler_.size() >= static_cast<size_t>(config_.max_queued))) return;
      std::vector<zmq::message_t> frames;
      const auto received = zmq::recv_multipart(socket, std::back_inserter(frames), zmq::recv_flags::dontwait);
      if (!received) return;
      ReplyRoute route;
      if (is_rpc) {
        for (size_t f = 0; f + 1 < frames.size(); ++f) route.envelope.push_back(frames[f].to_string());
      }
      const zmq::message_t& body = frames.back();
      HandleMessage(std::string_view(static_cast<const char*>(body.data()), body.size()), std::move(route));
    }
  }

  void HandleMessage(std::string_view bytes, ReplyRoute route) {
    Message message = DecodeMessage(bytes);
    if (auto* bad = std::get_if<BadMessage>(&message)) {
      telemetry_.CountMalformed();
      spdlog::warn("rejected message{}: {}", bad->id ? " '" + *bad->id + "'" : "", bad->message);
      return Refuse(TaskResult::Rejected(bad->id, bad->plugin, bad->code, bad->message), route);
    }
    if (auto* control = std::get_if<ControlRequest>(&message)) {
      if (route.envelope.empty()) {
        return Refuse(TaskResult::Rejected(std::nullopt, "", "bad_request",
                                           "control requests go to the rpc socket"),
                      route);
      }
      return HandleControl(*control, route);
    }
    Accept(std::get<TaskMessage>(std::move(message)), std::move(route));
  }

  void Accept(TaskMessage task, ReplyRoute route) {
    AdmissionFacts facts;
    facts.serving = lifecycle_.serving();
    facts.from_rpc = !route.envelope.empty();
    facts.id_active = active_ids_.count(task.id) > 0;
    facts.finished = finished_.Find(task.id, Clock::now());
    facts.plugin = plugins_.Find(task.plugin);
    if (!facts.plugin) facts.plugin_refusal = plugins_.RefusalOf(task.plugin);
    facts.queued = scheduler_.size();
    facts.max_queued = config_.max_queued;
    facts.allow_task_overrides = config_.allow_task_overrides;
    Admission admission = Admit(task, facts, pool_);
    if (const auto* refused = std::get_if<Refused>(&admission)) {
      spdlog::info("rejected task '{}' ({}): {}", task.id, refused->code, refused->message);
      return Refuse(TaskResult::Rejected(task.id, task.plugin, refused->code, refused->message), route);
    }
    if (const auto* retry = std::get_if<Retry>(&admission)) {
      telemetry_.CountDeduplicated();
      return Send(*retry->result, route);
    }
    Admitted& admitted = std::get<Admitted>(admission);
    QueuedTask queued;
    queued.key = ++last_key_;
    queued.demand = std::move(admitted.demand);
    queued.plugin = facts.plugin;
    queued.reply = std::move(route);
    queued.enqueued_at = Clock::now();
    queued.message = std::move(task);
    active_ids_.emplace(queued.message.id, ActiveTask{queued.key, admitted.fingerprint});
    Publish("task.queued", queued.message.id, queued.message.plugin);
    scheduler_.Enqueue(std::move(queued));
  }

  // ---- running -------------------------------------------------------------

  void Dispatch() {
    if (!lifecycle_.serving()) return;
    for (auto& [task, allocation] : scheduler_.TakeRunnable(Clock::now())) {
      auto running = std::make_unique<RunningTask>();
      running->queued_ms = Millis(Clock::now() - task.enqueued_at);
      if (task.message.timeout_ms > 0) {
        deadlines_.Add(task.key, Clock::now() + std::chrono::milliseconds(task.message.timeout_ms));
      }
      running->context = std::make_shared<UMI_Context>(task.message.id, task.message.plugin,
                                                       task.message.input_msgpack, allocation);
      const uint64_t key = task.key;
      running->context->on_progress = executor_.ProgressReporter(key);
      running->task = std::move(task);
      running->allocation = std::move(allocation);
      Publish("task.started", running->task.message.id, running->task.message.plugin);
      telemetry_.TaskStarted(key, TimelineRecord(*running));

      const PluginConfig* isolated = IsolatedConfig(running->task.plugin->name);
      executor_.Run(key, running->context, *running->task.plugin, running->allocation,
                    isolated ? std::optional<std::string>(isolated->settings_msgpack) : std::nullopt);
      running_.emplace(key, std::move(running));
    }
  }

  // The plugin's config when it runs in worker processes, else null.
  const PluginConfig* IsolatedConfig(const std::string& plugin) const {
    const auto found = config_.plugins.find(plugin);
    return found != config_.plugins.end() && found->second.isolate_process ? &found->second : nullptr;
  }

  void PrestartWorkers(const std::map<std::string, std::unique_ptr<LoadedPlugin>>& plugins) {
    for (const auto& [name, plugin] : plugins) {
      const PluginConfig* isolated = IsolatedConfig(name);
      if (!isolated || executor_.processes().idle_workers(name) >= static_cast<size_t>(isolated->processes)) continue;
      const int missing = isolated->processes - static_cast<int>(executor_.processes().idle_workers(name));
      if (const std::string why = executor_.processes().Prestart(*plugin, isolated->settings_msgpack, missing); !why.empty()) {
        spdlog::error("plugin {}: {}; its tasks will try to start a worker again", name, why);
      }
    }
  }

  static TaskRecord TimelineRecord(const RunningTask& running) {
    TaskRecord record;
    record.id = running.task.message.id;
    record.plugin = running.task.message.plugin;
    record.started_at = UnixNow();
    record.queued_ms = running.queued_ms;
    const Allocation& a = running.allocation;
    record.cpu_cores = a.cpu_cores.ToDouble();
    record.cpu_threads = a.cpu_threads;
    record.memory_mb = a.memory_mb;
    record.cpu_ids = a.cpu_ids;
    record.gpu_ids = a.gpu_ids;
    record.gpu_share = a.gpu_share.ToDouble();
    return record;
  }

  void HandleMail() {
    for (Mail& mail : executor_.TakeAll()) {
      if (auto* progress = std::get_if<Progress>(&mail)) {
        const auto found = running_.find(progress->key);
        if (found != running_.end()) PublishProgress(*found->second, *progress);
      } else {
        Complete(std::get<Finished>(mail));
      }
    }
  }

  void Complete(const Finished& finished) {
    std::unique_ptr<UMI_Error> error(finished.error);
    const auto found = running_.find(finished.key);
    if (found == running_.end()) return;  // already answered after an abandoned drain
    std::unique_ptr<RunningTask> running = std::move(found->second);
    running_.erase(found);
    deadlines_.Remove(finished.key);
    pool_.Release(finished.key);
    // Before the result leaves: whoever reads it, then scrapes, sees the release.
    UpdateLoad();

    RunOutcome outcome;
    outcome.cancel_requested = running->cancel_requested;
    outcome.timed_out = running->timed_out;
    outcome.drain_cancelled = running->context->cancelled();
    outcome.crashed = finished.crashed;
    outcome.killed = finished.killed;
    if (error) {
      outcome.error_code = error->code.empty() ? "plugin_error" : error->code;
      outcome.error_message = error->message;
    }
    outcome.output_msgpack = std::move(running->context->output_msgpack);
    outcome.queued_ms = running->queued_ms;
    outcome.run_ms = finished.run_ms;
    outcome.started_at = finished.started_at;
    outcome.finished_at = finished.finished_at;
    const TaskResult result = CompleteRun(running->task.message, running->allocation, std::move(outcome));
    Reply(result, running->task.reply, finished.key);
  }

  void CheckDeadlines() {
    const auto now = Clock::now();
    for (const uint64_t key : deadlines_.Expired(now)) {
      if (const auto found = running_.find(key); found != running_.end()) {
        found->second->timed_out = true;
        found->second->context->Cancel();
      }
    }
    switch (lifecycle_.Tick(now)) {
      case Lifecycle::Due::kNothing:
        break;
      case Lifecycle::Due::kCancelRunning:
        if (!running_.empty()) {
          spdlog::warn("drain timeout: cancelling {} running task(s)", running_.size());
          for (auto& [key, running] : running_) running->context->Cancel();
        }
        break;
      case Lifecycle::Due::kAbandon:
        if (!running_.empty()) AbandonRunningTasks("the plugin ignored cancellation at shutdown");
        break;
    }
  }

  // Milliseconds until the loop must look at the clock again; -1: never.
  std::chrono::milliseconds NextWakeup() const {
    std::optional<Clock::time_point> next;
    auto consider = [&next](Clock::time_point t) {
      if (!next || t < *next) next = t;
    };
    if (const auto deadline = deadlines_.Next()) consider(*deadline);
    if (const auto deadline = lifecycle_.NextDeadline()) consider(*deadline);
    if (outbox_.replies_waiting() > 0) consider(Clock::now() + kRpcRetryInterval);
    consider(Clock::now() + kHeartbeatInterval);
    return std::max(std::chrono::ceil<std::chrono::milliseconds>(*next - Clock::now()),
                    std::chrono::milliseconds(0));
  }

  // ---- answering -----------------------------------------------------------

  // Ends an accepted task. `key`: its key if it started (for the
  // timeline), else 0.
  void Reply(const TaskResult& result, const ReplyRoute& route, uint64_t key = 0) {
    uint64_t fingerprint = 0;
    if (result.id) {
      if (const auto active = active_ids_.find(*result.id); active != active_ids_.end()) {
        fingerprint = active->second.fingerprint;
        active_ids_.erase(active);
      }
    }
    Answer(result, route, key, fingerprint);
  }

  // Answers a message that was never accepted: a task with the id of one
  // still queued or running must leave that one's bookkeeping alone.
  void Refuse(const TaskResult& result, const ReplyRoute& route) { Answer(result, route, 0, 0); }

  void Answer(const TaskResult& result, const ReplyRoute& route, uint64_t key, uint64_t fingerprint) {
    telemetry_.TaskFinished(key, result);
    if (result.status != TaskStatus::kOk && result.status != TaskStatus::kRejected) {
      spdlog::info("task '{}' ({}) ended {}: {}: {}", result.id.value_or(""), result.plugin,
                   ToString(result.status), result.error_code, result.error_message);
    }
    std::string body = EncodeResult(result, options_.name);
    if (result.id && result.status != TaskStatus::kRejected) {
      if (subscriptions_ > 0) Publish("task.finished", body);
      finished_.Remember(*result.id, body, fingerprint, Clock::now());
    }
    Send(std::move(body), route);
  }

  void Send(std::string body, const ReplyRoute& route) { outbox_.Send(std::move(body), route.envelope); }

  // ---- dedup window and timing samples -------------------------------------

  // Also the loop's heartbeat (/healthz).
  void UpdateLoad() {
    telemetry_.SetLoad(scheduler_.size(), running_.size(), outbox_.waiting(), pool_.Usage());
  }

  std::set<std::string> LoadedNames() const {
    std::set<std::string> names;
    for (const auto& [name, plugin] : plugins_.plugins()) names.insert(name);
    return names;
  }

  void Publish(const char* topic, const std::string& id, const std::string& plugin) {
    if (subscriptions_ > 0) Publish(topic, EncodeTaskEvent(id, plugin));
  }

  // XPUB tells us about (un)subscriptions; with nobody listening, events
  // are not even encoded.
  void ReadSubscriptions() {
    zmq::message_t message;
    while (events_.recv(message, zmq::recv_flags::dontwait)) {
      if (message.size() == 0) continue;
      const uint8_t kind = *static_cast<const uint8_t*>(message.data());
      if (kind == 1) ++subscriptions_;
      if (kind == 0 && subscriptions_ > 0) --subscriptions_;
    }
  }

  void Publish(const char* topic, const std::string& body) {
    std::array<zmq::const_buffer, 2> frames = {zmq::buffer(std::string_view(topic)), zmq::buffer(body)};
    zmq::send_multipart(events_, frames, zmq::send_flags::dontwait);
  }

  void PublishProgress(const RunningTask& running, const Progress& progress) {
    if (subscriptions_ == 0) return;
    Publish("task.progress", EncodeProgressEvent(running.task.message.id, running.task.message.plugin,
                                                 progress.fraction, progress.message));
  }

  // ---- control and shutdown ------------------------------------------------

  void HandleControl(const ControlRequest& request, const ReplyRoute& route) {
    // Start what fits first, so a control request sees every task that
    // arrived before it either running or queued for want of resources.
    Dispatch();
    outbox_.Send(controls_.Handle(request), route.envelope);
  }

  ControlHandler MakeControls() {
    ControlHandler controls;
    controls.Add("health", [this](const ControlRequest&) {
      return EncodeHealthReply(!lifecycle_.serving(), options_.name, plugins_.plugins().size());
    });
    controls.Add("stats", [this](const ControlRequest&) { return StatsReply(); });
    controls.Add("cancel", [this](const ControlRequest& request) { return Cancel(request.id); });
    controls.Add("drain", [this](const ControlRequest&) {
      BeginDrain("drain request");
      return EncodeControlOk();
    });
    controls.Add("reload", [this](const ControlRequest&) {
      const ReloadOutcome outcome = Reload("reload request");
      return outcome.error.empty() ? EncodeReloadReply(outcome.loaded, outcome.refused, outcome.restart_needed)
                                   : EncodeControlError("invalid_config", outcome.error);
    });
    return controls;
  }

  // A queued task ends `cancelled` now; a running one is asked to stop and
  // ends `cancelled` when its plugin returns.
  std::string Cancel(const std::string& id) {
    const auto active = active_ids_.find(id);
    const uint64_t key = active == active_ids_.end() ? 0 : active->second.key;
    if (const auto running = running_.find(key); running != running_.end()) {
      running->second->cancel_requested = true;
      running->second->context->Cancel();
      return EncodeCancelReply("running");
    }
    if (std::optional<QueuedTask> queued = scheduler_.Remove(key)) {
      TaskResult result = TaskResult::Rejected(queued->message.id, queued->message.plugin, "cancelled",
                                               "cancelled by request before it started");
      result.status = TaskStatus::kCancelled;
      result.queued_ms = Millis(Clock::now() - queued->enqueued_at);
      Reply(result, queued->reply);
      return EncodeCancelReply("queued");
    }
    return EncodeControlError("not_found", "no queued or running task has id '" + id + "'");
  }

  std::string StatsReply() {
    UpdateLoad();
    nlohmann::json stats = telemetry_.Stats();
    stats["ok"] = true;
    const std::vector<uint8_t> bytes = nlohmann::json::to_msgpack(stats);
    return std::string(bytes.begin(), bytes.end());
  }

  void HandleSignal(int signal_fd) {
    signalfd_siginfo info{};
    if (read(signal_fd, &info, sizeof(info)) != sizeof(info)) return;
    if (info.ssi_signo == SIGHUP) {
      Reload("SIGHUP");
      return;
    }
    if (info.ssi_signo == SIGCHLD) {
      if (const size_t dead = executor_.processes().ReapDeadIdle(); dead > 0) {
        spdlog::warn("{} idle worker process(es) died; starting replacements", dead);
        if (lifecycle_.serving()) PrestartWorkers(plugins_.plugins());
      }
      return;
    }
    if (!lifecycle_.serving()) {  // a second stop request: the operator will not wait
      for (auto& [key, running] : running_) running->context->Cancel();
      AbandonRunningTasks(std::string("a second ") + strsignal(static_cast<int>(info.ssi_signo)) +
                          " during the drain");
    }
    BeginDrain(strsignal(static_cast<int>(info.ssi_signo)));
  }

  struct ReloadOutcome {
    std::string error;  // empty: applied
    std::vector<std::string> loaded;         // plugins loaded by this reload
    std::vector<std::string> refused;        // libraries refused by this reload: "path: why"
    std::vector<std::string> restart_needed;  // changed keys that only a restart applies
  };

  ReloadOutcome Reload(const std::string& reason) {
    NotifyService("RELOADING=1\nSTATUS=reloading");
    ReloadOutcome outcome = ApplyReload();
    telemetry_.CountReload(outcome.error.empty());
    if (outcome.error.empty()) {
      spdlog::info("reload ({}): applied; {} plugin(s) loaded{}", reason, outcome.loaded.size(),
                   outcome.restart_needed.empty() ? "" : "; needs a restart to apply: " + Join(outcome.restart_needed));
    } else {
      spdlog::error("reload ({}) refused, the running config stays: {}", reason, outcome.error);
    }
    NotifyService(lifecycle_.serving() ? "READY=1\nSTATUS=serving" : "STOPPING=1");
    return outcome;
  }

  static std::string Join(const std::vector<std::string>& items) {
    std::string out;
    for (const std::string& item : items) out += (out.empty() ? "" : ", ") + item;
    return out;
  }

  ReloadOutcome ApplyReload() {
    ReloadOutcome outcome;
    if (!lifecycle_.serving()) {
      outcome.error = "the host is draining";
      return outcome;
    }
    if (!options_.reload_config) {
      outcome.error = "this host was started without a config file to reload";
      return outcome;
    }
    StatusOr<HardwareConfig> loaded = options_.reload_config();
    if (!loaded.ok()) {
      outcome.error = loaded.error();
      return outcome;
    }
    HardwareConfig& next = loaded.value();
    // Check everything before changing anything: key files, the pool against
    // running tasks, then every plugin's requirement against the new pool.
    if (!next.curve_secret_key_file.empty()) {
      // Key files named by the new config must be usable before anything is
      // said about them; they take effect at the next start.
      if (auto keys = ReadCurveKeyPair(next.curve_secret_key_file); !keys.ok()) {
        outcome.error = "security.curve.secret_key_file: " + keys.error();
        return outcome;
      }
      if (auto authorized = ReadCurvePublicKeys(next.curve_authorized_keys_file); !authorized.ok()) {
        outcome.error = "security.curve.authorized_keys_file: " + authorized.error();
        return outcome;
      }
    }
    if (std::string why = ResourcePool(pool_).Reconfigure(MakeCapacity(options_, next, plugins_)); !why.empty()) {
      outcome.error = std::move(why);
      return outcome;
    }
    if (std::string why = plugins_.Reconfigure(next); !why.empty()) {
      outcome.error = std::move(why);
      return outcome;
    }
    std::vector<std::string> instances;
    for (const auto& [name, plugin] : plugins_.plugins()) instances.push_back(name);
    outcome.restart_needed = PlanReload(config_, next, instances).restart_needed;
    config_ = std::move(next);

    const uint64_t refusals_before = plugins_.refusals_total();
    for (const auto& dir : options_.plugin_dirs) {
      for (std::string& name : plugins_.LoadDirectory(dir)) outcome.loaded.push_back(std::move(name));
    }
    // This reload's refusals are the newest entries.
    const auto& refused = plugins_.refused();
    const size_t added = static_cast<size_t>(plugins_.refusals_total() - refusals_before);
    for (auto it = refused.end() - static_cast<long>(std::min(added, refused.size())); it != refused.end(); ++it) {
      outcome.refused.push_back(it->path.string() + ": " + it->reason);
    }
    telemetry_.SetPluginLoadFailures(plugins_.refusals_total());
    telemetry_.SetKnownPlugins(LoadedNames());
    pool_.Reconfigure(MakeCapacity(options_, config_, plugins_));
    PrestartWorkers(plugins_.plugins());
    scheduler_.set_reserve_after(std::chrono::milliseconds(config_.reserve_after_ms));
    finished_.SetLimits(DedupWindow(config_), static_cast<size_t>(config_.dedup_max_entries));

    // Tasks not yet started take the new requirements, in their old order.
    for (QueuedTask& task : scheduler_.TakeAll()) {
      auto demand = MakeDemand(*task.plugin, task.message, config_.allow_task_overrides, pool_);
      if (const auto* no = std::get_if<Refused>(&demand)) {
        spdlog::info("rejected task '{}' ({}) after reload: {}", task.message.id, no->code, no->message);
        Reply(TaskResult::Rejected(task.message.id, task.message.plugin, no->code,
                                   "after a config reload: " + no->message),
              task.reply);
        continue;
      }
      task.demand = std::get<Demand>(std::move(demand));
      scheduler_.Enqueue(std::move(task));
    }
    return outcome;
  }

  void BeginDrain(const std::string& reason) {
    if (!lifecycle_.BeginDrain(Clock::now(), std::chrono::duration_cast<Clock::duration>(
                                                  std::chrono::duration<double>(config_.drain_timeout_s)))) {
      return;
    }
    telemetry_.SetDraining(true);
    NotifyService("STOPPING=1\nSTATUS=draining");
    const std::vector<QueuedTask> queued = scheduler_.TakeAll();
    spdlog::info("draining ({}): {} running task(s) to finish, {} queued task(s) answered shutting_down",
                 reason, running_.size(), queued.size());
    for (const QueuedTask& task : queued) {
      Reply(TaskResult::Rejected(task.message.id, task.message.plugin, "shutting_down",
                                 "the host shut down before the task started"),
            task.reply);
    }
  }

  // Running tasks cannot be stopped in-process (a plugin that ignores
  // cancellation, or an operator who will not wait): answer them
  // `cancelled` with `why`, flush, and exit without joining their threads.
  [[noreturn]] void AbandonRunningTasks(const std::string& why) {
    spdlog::error("exiting without waiting for {} running task(s): {}", running_.size(), why);
    std::vector<uint64_t> keys;
    for (const auto& [key, running] : running_) keys.push_back(key);
    for (uint64_t key : keys) {
      const RunningTask& running = *running_.at(key);
      TaskResult result = TaskResult::Rejected(running.task.message.id, running.task.message.plugin,
                                               "cancelled", why);
      result.status = TaskStatus::kCancelled;
      result.queued_ms = running.queued_ms;
      result.allocation = running.allocation;
      Reply(result, running.task.reply, key);
    }
    FinishDrain();
    results_.close();
    rpc_.close();
    events_.close();
    tasks_.close();
    context_.close();  // waits out the linger, delivering what is queued
    spdlog::shutdown();
    std::_Exit(0);
  }

  int FinishDrain() {
    const auto flush_deadline = Clock::now() + kFlushTimeout;
    while (outbox_.waiting() > 0 && Clock::now() < flush_deadline) {
      zmq::pollitem_t item{results_.handle(), 0, static_cast<short>(outbox_.results_waiting() == 0 ? 0 : ZMQ_POLLOUT), 0};
      zmq::poll(&item, 1, outbox_.replies_waiting() > 0 ? kRpcRetryInterval : std::chrono::milliseconds(100));
      outbox_.FlushResults();
      outbox_.FlushReplies();
    }
    if (outbox_.waiting() > 0) {
      telemetry_.CountDroppedReply(outbox_.waiting());
      spdlog::error("{} result(s) and {} rpc repl(ies) undelivered: nobody took them within {} s",
                    outbox_.results_waiting(), outbox_.replies_waiting(), kFlushTimeout.count());
    }
    // Give connected peers time to receive what ZeroMQ has queued.
    results_.set(zmq::sockopt::linger, 5000);
    rpc_.set(zmq::sockopt::linger, 5000);
    http_.Stop();
    spdlog::info("stopped");
    return 0;
  }

 private:
  HostOptions options_;
  HardwareConfig config_;  // replaced by a reload
  PluginRegistry& plugins_;
  ResourcePool pool_;
  Scheduler scheduler_;
  zmq::context_t context_;
  zmq::socket_t tasks_, results_, rpc_, events_;
  std::unique_ptr<ZapHandler> zap_;  // with security.curve; destroyed before the sockets and the context
  std::map<std::string, std::string> endpoints_;
  std::unordered_map<uint64_t, std::unique_ptr<RunningTask>> running_;
  std::unordered_map<std::string, ActiveTask> active_ids_;  // queued or running, by id
  int subscriptions_ = 0;  // on the events XPUB socket
  ResultCache finished_{DedupWindow(config_), static_cast<size_t>(config_.dedup_max_entries)};
  uint64_t last_key_ = 0;
  Lifecycle lifecycle_{kCancelGrace};
  Deadlines deadlines_;  // of running tasks with a timeout_ms
  ControlHandler controls_ = MakeControls();  // its handlers use the fields above
  Telemetry telemetry_{options_.name};
  Outbox outbox_{results_, rpc_, [this] { telemetry_.CountDroppedReply(); }};
  HttpServer http_{telemetry_};  // reads telemetry_: declared after it
  // Declared last: destroyed first, so its threads finish before anything
  // they might reach goes away.
  Executor executor_{options_.self_binary, kWorkerKillGrace};
};

Host::Host(HostOptions options, const HardwareConfig& config, PluginRegistry& plugins)
    : loop_(std::make_unique<Loop>(std::move(options), config, plugins)) {}
Host::~Host() = default;
std::string Host::Open() { return loop_->Open(); }
std::map<std::string, std::string> Host::endpoints() const { return loop_->endpoints(); }
int Host::Run(int signal_fd) { return loop_->Run(signal_fd); }

}  // namespace umi
