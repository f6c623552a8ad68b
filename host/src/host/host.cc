#include "host/host.h"

#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <optional>
#include <set>
#include <unordered_map>
#include <variant>

#include "host/admission.h"
#include "host/completion.h"
#include "host/control_handler.h"
#include "host/lifecycle.h"
#include "host/running_tasks.h"
#include "host/task_ledger.h"
#include "runtime/executor.h"
#include "scheduling/resource_pool.h"
#include "scheduling/scheduler.h"
#include "config/reload_plan.h"
#include "telemetry/http_server.h"
#include "telemetry/service_notify.h"
#include "telemetry/telemetry.h"
#include "transport/curve_auth.h"
#include "transport/poller.h"
#include "transport/protocol.h"
#include "transport/zmq_transport.h"

namespace umi {
namespace {

// How long a drained host waits for a collector to take its last results.
constexpr auto kFlushTimeout = std::chrono::seconds(10);
// How long a process-isolated task may run on after it is cancelled (timeout,
// cancel, drain) before its worker is SIGKILLed.
constexpr auto kWorkerKillGrace = std::chrono::milliseconds(2000);
// After the drain deadline, how long cancelled tasks get to return.
constexpr auto kCancelGrace = std::chrono::seconds(5);
// An idle loop still wakes this often, so its heartbeat shows it is alive.
constexpr auto kHeartbeatInterval = std::chrono::milliseconds(1000);

Clock::Duration Seconds(double seconds) {
  return std::chrono::duration_cast<Clock::Duration>(std::chrono::duration<double>(seconds));
}

double Millis(Clock::Duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

std::string Join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

ZmqTransportOptions TransportOptions(const HostOptions& options, const HardwareConfig& config) {
  ZmqTransportOptions zmq;
  zmq.tasks_endpoint = options.tasks_endpoint;
  zmq.results_endpoint = options.results_endpoint;
  zmq.rpc_endpoint = options.rpc_endpoint;
  zmq.events_endpoint = options.events_endpoint;
  zmq.curve_secret_key_file = config.security.curve.secret_key_file;
  zmq.curve_authorized_keys_file = config.security.curve.authorized_keys_file;
  zmq.tasks_hwm = config.transport.tasks_hwm;
  zmq.max_message_bytes = config.transport.max_message_bytes;
  zmq.max_pending_results = config.transport.max_pending_results;
  return zmq;
}

PoolCapacity MakeCapacity(const HostOptions& options, const HardwareConfig& config, const PluginRegistry& plugins) {
  PoolCapacity capacity = PoolCapacity::FromConfig(config, options.machine_cores);
  for (const auto& [name, plugin] : plugins.plugins()) {
    if (!plugin->allow_concurrent) capacity.plugin_caps[name] = 1;
  }
  return capacity;
}

}  // namespace

class Host::Loop final : public Inbox {
 public:
  Loop(HostOptions options, const HardwareConfig& config, PluginRegistry& plugins)
      : options_(std::move(options)),
        clock_(options_.clock ? *options_.clock : SystemClock::Instance()),
        config_(config),
        plugins_(plugins),
        pool_(MakeCapacity(options_, config, plugins)),
        scheduler_(pool_, std::chrono::milliseconds(config.scheduler.reserve_after_ms)),
        transport_(TransportOptions(options_, config), [this](size_t n) { telemetry_.CountDroppedReply(n); }) {}

  Status Open() {
    poller_.Add(executor_.fd(), [] { return static_cast<short>(ZMQ_POLLIN); }, [this](short) { HandleMail(); });
    if (Status opened = transport_.Open(poller_, *this); !opened.ok()) return opened;
    if (!options_.http_listen.empty()) {
      if (Status started = http_.Start(options_.http_listen); !started.ok()) return started;
    }
    telemetry_.SetPluginLoadFailures(plugins_.refusals_total());
    telemetry_.SetKnownPlugins(LoadedNames());
    telemetry_.SetConfigFallback(options_.config_fallback);
    PrestartWorkers();
    UpdateLoad();
    telemetry_.SetReady(true);
    return {};
  }

  std::map<std::string, std::string> endpoints() const {
    std::map<std::string, std::string> endpoints = transport_.endpoints();
    if (!http_.url().empty()) endpoints["http"] = http_.url();
    return endpoints;
  }

  int Run(int signal_fd) {
    poller_.Add(signal_fd, [] { return static_cast<short>(ZMQ_POLLIN); },
                [this, signal_fd](short) { HandleSignal(signal_fd); });
    NotifyService("READY=1\nSTATUS=serving");
    while (true) {
      poller_.PollOnce(NextWakeup());
      transport_.AfterPoll();
      CheckDeadlines();
      Dispatch();
      UpdateLoad();
      if (!lifecycle_.serving() && running_.empty()) return FinishDrain();
    }
  }

  // ---- Inbox: what the transport reads ---------------------------------------

  bool accepting_tasks() const override {
    return lifecycle_.serving() && scheduler_.size() < static_cast<size_t>(config_.scheduler.max_queued);
  }

  void Deliver(std::string_view bytes, ReplyRoute route) override {
    Message message = DecodeMessage(bytes);
    if (auto* bad = std::get_if<BadMessage>(&message)) {
      telemetry_.CountMalformed();
      spdlog::warn("rejected message{}: {}", bad->id ? " '" + *bad->id + "'" : "", bad->status.message());
      return ledger_.Refuse(RejectedResult(bad->id, bad->plugin, bad->status), route);
    }
    if (auto* control = std::get_if<ControlRequest>(&message)) {
      if (!route.rpc) {
        return ledger_.Refuse(RejectedResult(std::nullopt, "",
                                             Status(ErrorCode::kBadRequest, "control requests go to the rpc socket")),
                              route);
      }
      // Start what fits first, so a control request sees every task that
      // arrived before it either running or queued for want of resources.
      Dispatch();
      return SendOn(route, controls_.Handle(*control));
    }
    Accept(std::get<TaskMessage>(std::move(message)), std::move(route));
  }

 private:
  void Accept(TaskMessage task, ReplyRoute route) {
    AdmissionFacts facts;
    facts.serving = lifecycle_.serving();
    facts.from_rpc = route.rpc;
    facts.id_active = ledger_.active(task.id);
    facts.finished = ledger_.finished(task.id);
    facts.plugin = plugins_.Find(task.plugin);
    if (!facts.plugin) facts.plugin_refusal = plugins_.RefusalOf(task.plugin);
    facts.queued = scheduler_.size();
    facts.max_queued = config_.scheduler.max_queued;
    facts.allow_task_overrides = config_.allow_task_overrides;
    Admission admission = Admit(task, facts, pool_);
    if (const auto* refused = std::get_if<Status>(&admission)) {
      spdlog::info("rejected task '{}' ({}): {}", task.id, WireCode(refused->code()), refused->message());
      return ledger_.Refuse(RejectedResult(task.id, task.plugin, *refused), route);
    }
    if (const auto* retry = std::get_if<Retry>(&admission)) {
      telemetry_.CountDeduplicated();
      return SendOn(route, *retry->result);
    }
    Admitted& admitted = std::get<Admitted>(admission);
    QueuedTask queued;
    queued.key = ++last_key_;
    queued.demand = std::move(admitted.demand);
    queued.plugin = facts.plugin;
    queued.reply = std::move(route);
    queued.enqueued_at = clock_.Now();
    queued.message = std::move(task);
    ledger_.Accepted(queued.message.id, queued.key, admitted.fingerprint);
    Publish("task.queued", queued.message);
    scheduler_.Enqueue(std::move(queued));
  }

  // ---- running -------------------------------------------------------------

  void Dispatch() {
    if (!lifecycle_.serving()) return;
    const Clock::TimePoint now = clock_.Now();
    for (auto& [task, allocation] : scheduler_.TakeRunnable(now)) {
      auto running = std::make_unique<RunningTask>();
      running->queued_ms = Millis(now - task.enqueued_at);
      running->context = std::make_shared<UMI_Context>(task.message.id, task.message.plugin,
                                                       task.message.input_msgpack, allocation);
      const uint64_t key = task.key;
      running->context->on_progress = executor_.ProgressReporter(key);
      std::optional<Clock::TimePoint> deadline;
      if (task.message.timeout_ms > 0) deadline = now + std::chrono::milliseconds(task.message.timeout_ms);
      running->task = std::move(task);
      running->allocation = std::move(allocation);
      RunningTask& started = running_.Add(key, std::move(running), deadline);
      Publish("task.started", started.task.message);
      telemetry_.TaskStarted(key, started.Record(clock_.UnixSeconds()));
      const PluginConfig* isolated = IsolatedConfig(started.task.plugin->name);
      executor_.Run(key, started.context, *started.task.plugin, started.allocation,
                    isolated ? std::optional<std::string>(isolated->settings_msgpack) : std::nullopt);
    }
  }

  // The plugin's config when it runs in worker processes, else null.
  const PluginConfig* IsolatedConfig(const std::string& plugin) const {
    const auto found = config_.plugins.find(plugin);
    return found != config_.plugins.end() && found->second.isolate_process ? &found->second : nullptr;
  }

  // Tops up every isolated plugin's idle worker processes to `processes`.
  void PrestartWorkers() {
    for (const auto& [name, plugin] : plugins_.plugins()) {
      const PluginConfig* isolated = IsolatedConfig(name);
      const int idle = isolated ? static_cast<int>(executor_.processes().idle_workers(name)) : 0;
      if (!isolated || idle >= isolated->processes) continue;
      if (Status started = executor_.processes().Prestart(*plugin, isolated->settings_msgpack, isolated->processes - idle);
          !started.ok()) {
        spdlog::error("plugin {}: {}; its tasks will try to start a worker again", name, started.message());
      }
    }
  }

  void HandleMail() {
    for (Mail& mail : executor_.TakeAll()) {
      if (auto* progress = std::get_if<Progress>(&mail)) {
        const RunningTask* running = running_.Find(progress->key);
        if (running && transport_.listening()) {
          transport_.Publish("task.progress", EncodeProgressEvent(running->task.message.id, running->task.message.plugin,
                                                                  progress->fraction, progress->message));
        }
      } else {
        Complete(std::get<Finished>(mail));
      }
    }
  }

  void Complete(const Finished& finished) {
    std::unique_ptr<UMI_Error> error(finished.error);
    std::unique_ptr<RunningTask> running = running_.Take(finished.key);
    if (!running) return;  // already answered after an abandoned drain
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
      outcome.error_code = error->code.empty() ? std::string(WireCode(ErrorCode::kPluginError)) : error->code;
      outcome.error_message = error->message;
    }
    outcome.output_msgpack = std::move(running->context->output_msgpack);
    outcome.queued_ms = running->queued_ms;
    outcome.run_ms = finished.run_ms;
    outcome.started_at = finished.started_at;
    outcome.finished_at = finished.finished_at;
    ledger_.End(CompleteRun(running->task.message, running->allocation, std::move(outcome)), running->task.reply,
                finished.key);
  }

  void CheckDeadlines() {
    const Clock::TimePoint now = clock_.Now();
    running_.ExpireDeadlines(now);
    switch (lifecycle_.Tick(now)) {
      case Lifecycle::Due::kNothing:
        break;
      case Lifecycle::Due::kCancelRunning:
        if (!running_.empty()) spdlog::warn("drain timeout: cancelling {} running task(s)", running_.size());
        running_.CancelAll();
        break;
      case Lifecycle::Due::kAbandon:
        if (!running_.empty()) AbandonRunningTasks("the plugin ignored cancellation at shutdown");
        break;
    }
  }

  // How long the loop may wait for an event before it must look at the clock.
  std::chrono::milliseconds NextWakeup() const {
    const Clock::TimePoint now = clock_.Now();
    Clock::TimePoint next = now + kHeartbeatInterval;
    if (const auto deadline = running_.NextDeadline()) next = std::min(next, *deadline);
    if (const auto deadline = lifecycle_.NextDeadline()) next = std::min(next, *deadline);
    if (const auto retry = transport_.RetryIn()) next = std::min(next, now + *retry);
    return std::max(std::chrono::ceil<std::chrono::milliseconds>(next - now), std::chrono::milliseconds(0));
  }

  // ---- answering and events -------------------------------------------------

  void Publish(std::string_view topic, const TaskMessage& task) {
    if (transport_.listening()) transport_.Publish(topic, EncodeTaskEvent(task.id, task.plugin));
  }

  // Also the loop's heartbeat (/healthz).
  void UpdateLoad() { telemetry_.SetLoad(scheduler_.size(), running_.size(), transport_.waiting(), pool_.Usage()); }

  std::set<std::string> LoadedNames() const {
    std::set<std::string> names;
    for (const auto& [name, plugin] : plugins_.plugins()) names.insert(name);
    return names;
  }

  // ---- control -------------------------------------------------------------

  ControlHandler MakeControls() {
    ControlHandler controls;
    controls.Add("health", [this](const ControlRequest&) {
      return EncodeHealthReply(!lifecycle_.serving(), options_.name, plugins_.plugins().size());
    });
    controls.Add("stats", [this](const ControlRequest&) {
      UpdateLoad();
      return EncodeStatsReply(telemetry_.Stats());
    });
    controls.Add("cancel", [this](const ControlRequest& request) { return Cancel(request.id); });
    controls.Add("drain", [this](const ControlRequest&) {
      BeginDrain("drain request");
      return EncodeControlOk();
    });
    controls.Add("reload", [this](const ControlRequest&) {
      const StatusOr<ReloadOutcome> outcome = Reload("reload request");
      return outcome.ok() ? EncodeReloadReply(outcome->loaded, outcome->refused, outcome->plan.restart_needed,
                                              outcome->plan.applied)
                          : EncodeControlError(outcome.status());
    });
    return controls;
  }

  // A queued task ends `cancelled` now; a running one is asked to stop and
  // ends `cancelled` when its plugin returns.
  std::string Cancel(const std::string& id) {
    const uint64_t key = ledger_.KeyOf(id);
    if (RunningTask* running = running_.Find(key)) {
      running->cancel_requested = true;
      running->context->Cancel();
      return EncodeCancelReply("running");
    }
    if (std::optional<QueuedTask> queued = scheduler_.Remove(key)) {
      TaskResult result = EndedResult(queued->message.id, queued->message.plugin, TaskStatus::kCancelled,
                                      Status(ErrorCode::kCancelled, "cancelled by request before it started"));
      result.queued_ms = Millis(clock_.Now() - queued->enqueued_at);
      ledger_.End(result, queued->reply);
      return EncodeCancelReply("queued");
    }
    return EncodeControlError(Status(ErrorCode::kNotFound, "no queued or running task has id '" + id + "'"));
  }

  void HandleSignal(int signal_fd) {
    signalfd_siginfo info{};
    if (read(signal_fd, &info, sizeof(info)) != sizeof(info)) return;
    const int signal = static_cast<int>(info.ssi_signo);
    if (signal == SIGHUP) {
      (void)Reload("SIGHUP");  // the outcome is logged
    } else if (signal == SIGCHLD) {
      if (const size_t dead = executor_.processes().ReapDeadIdle(); dead > 0) {
        spdlog::warn("{} idle worker process(es) died; starting replacements", dead);
        if (lifecycle_.serving()) PrestartWorkers();
      }
    } else {
      if (!lifecycle_.serving()) {  // a second stop request: the operator will not wait
        running_.CancelAll();
        AbandonRunningTasks(std::string("a second ") + strsignal(signal) + " during the drain");
      }
      BeginDrain(strsignal(signal));
    }
  }

  // ---- reload --------------------------------------------------------------

  struct ReloadOutcome {
    ReloadPlan plan;
    std::vector<std::string> loaded;   // plugins loaded by this reload
    std::vector<std::string> refused;  // libraries refused by this reload: "path: why"
  };

  StatusOr<ReloadOutcome> Reload(const std::string& reason) {
    NotifyService("RELOADING=1\nSTATUS=reloading");
    StatusOr<ReloadOutcome> outcome = ApplyReload();
    telemetry_.CountReload(outcome.ok());
    if (outcome.ok()) {
      spdlog::info("reload ({}): applied {}; {} plugin(s) loaded{}", reason,
                   outcome->plan.applied.empty() ? "no changes" : Join(outcome->plan.applied), outcome->loaded.size(),
                   outcome->plan.restart_needed.empty()
                       ? ""
                       : "; needs a restart to apply: " + Join(outcome->plan.restart_needed));
    } else {
      spdlog::error("reload ({}) refused, the running config stays: {}", reason, outcome.error());
    }
    NotifyService(lifecycle_.serving() ? "READY=1\nSTATUS=serving" : "STOPPING=1");
    return outcome;
  }

  // Phase one checks everything the new config needs and changes nothing;
  // phase two applies the live keys (config/reload_plan.h).
  StatusOr<ReloadOutcome> ApplyReload() {
    if (!lifecycle_.serving()) return Status(ErrorCode::kInvalidConfig, "the host is draining");
    if (!options_.reload_config) {
      return Status(ErrorCode::kInvalidConfig, "this host was started without a config file to reload");
    }
    StatusOr<HardwareConfig> loaded = options_.reload_config();
    if (!loaded.ok()) return Status(ErrorCode::kInvalidConfig, loaded.error());
    HardwareConfig& next = loaded.value();
    ReloadOutcome outcome;
    const std::set<std::string> instances = LoadedNames();
    outcome.plan = PlanReload(config_, next, std::vector<std::string>(instances.begin(), instances.end()));
    if (outcome.plan.check_curve_keys) {
      // Key files named by the new config must be usable before anything is
      // said about them; they take effect at the next start.
      if (auto keys = ReadCurveKeyPair(next.security.curve.secret_key_file); !keys.ok()) {
        return Status(ErrorCode::kInvalidConfig, keys.status().Prefixed("security.curve.secret_key_file").message());
      }
      if (auto authorized = ReadCurvePublicKeys(next.security.curve.authorized_keys_file); !authorized.ok()) {
        return Status(ErrorCode::kInvalidConfig,
                      authorized.status().Prefixed("security.curve.authorized_keys_file").message());
      }
    }
    if (Status fits = ResourcePool(pool_).Reconfigure(MakeCapacity(options_, next, plugins_)); !fits.ok()) return fits;
    if (Status resolved = plugins_.Reconfigure(next); !resolved.ok()) return resolved;

    config_ = std::move(next);
    PluginRegistry::LoadReport libraries = plugins_.LoadDirectories(options_.plugin_dirs);
    outcome.loaded = std::move(libraries.loaded);
    outcome.refused = std::move(libraries.refused);
    telemetry_.SetPluginLoadFailures(plugins_.refusals_total());
    telemetry_.SetKnownPlugins(LoadedNames());
    (void)pool_.Reconfigure(MakeCapacity(options_, config_, plugins_));  // checked above on a copy
    PrestartWorkers();
    scheduler_.set_reserve_after(std::chrono::milliseconds(config_.scheduler.reserve_after_ms));
    ledger_.SetDedupLimits(Seconds(config_.dedup.window_s), static_cast<size_t>(config_.dedup.max_entries));
    transport_.set_max_pending_results(config_.transport.max_pending_results);

    // Tasks not yet started take the new requirements, in their old order.
    for (QueuedTask& task : scheduler_.TakeAll()) {
      StatusOr<Demand> demand = MakeDemand(*task.plugin, task.message, config_.allow_task_overrides, pool_);
      if (!demand.ok()) {
        spdlog::info("rejected task '{}' after reload: {}", task.message.id, demand.error());
        ledger_.End(RejectedResult(task.message.id, task.message.plugin,
                                   demand.status().Prefixed("after a config reload")),
                    task.reply);
        continue;
      }
      task.demand = std::move(demand).value();
      scheduler_.Enqueue(std::move(task));
    }
    return outcome;
  }

  // ---- shutdown ------------------------------------------------------------

  void BeginDrain(const std::string& reason) {
    if (!lifecycle_.BeginDrain(clock_.Now(), Seconds(config_.shutdown.drain_timeout_s))) return;
    telemetry_.SetDraining(true);
    NotifyService("STOPPING=1\nSTATUS=draining");
    const std::vector<QueuedTask> queued = scheduler_.TakeAll();
    spdlog::info("draining ({}): {} running task(s) to finish, {} queued task(s) answered shutting_down", reason,
                 running_.size(), queued.size());
    for (const QueuedTask& task : queued) {
      ledger_.End(RejectedResult(task.message.id, task.message.plugin,
                                 Status(ErrorCode::kShuttingDown, "the host shut down before the task started")),
                  task.reply);
    }
  }

  // Running tasks cannot be stopped in-process (a plugin that ignores
  // cancellation, or an operator who will not wait): answer them
  // `cancelled` with `why`, flush, and exit without joining their threads.
  [[noreturn]] void AbandonRunningTasks(const std::string& why) {
    spdlog::error("exiting without waiting for {} running task(s): {}", running_.size(), why);
    for (const uint64_t key : running_.keys()) {
      const RunningTask& running = *running_.Find(key);
      TaskResult result = EndedResult(running.task.message.id, running.task.message.plugin, TaskStatus::kCancelled,
                                      Status(ErrorCode::kCancelled, why));
      result.queued_ms = running.queued_ms;
      result.allocation = running.allocation;
      ledger_.End(result, running.task.reply, key);
    }
    FinishDrain();
    transport_.Close();
    spdlog::shutdown();
    std::_Exit(0);
  }

  int FinishDrain() {
    transport_.Flush(std::chrono::steady_clock::now() + kFlushTimeout);
    http_.Stop();
    spdlog::info("stopped");
    return 0;
  }

  HostOptions options_;
  const Clock& clock_;
  HardwareConfig config_;  // replaced by a reload
  PluginRegistry& plugins_;
  ResourcePool pool_;
  Scheduler scheduler_;
  Poller poller_;
  ZmqTransport transport_;
  RunningTasks running_;
  uint64_t last_key_ = 0;
  Lifecycle lifecycle_{kCancelGrace};
  ControlHandler controls_ = MakeControls();  // its handlers use the fields above
  Telemetry telemetry_{options_.name};
  TaskLedger ledger_{options_.name, clock_, telemetry_, transport_, Seconds(config_.dedup.window_s),
                     static_cast<size_t>(config_.dedup.max_entries)};
  HttpServer http_{telemetry_};  // reads telemetry_: declared after it
  // Declared last: destroyed first, so its threads finish before anything
  // they might reach goes away.
  Executor executor_{options_.self_binary, kWorkerKillGrace};
};

Host::Host(HostOptions options, const HardwareConfig& config, PluginRegistry& plugins)
    : loop_(std::make_unique<Loop>(std::move(options), config, plugins)) {}
Host::~Host() = default;
Status Host::Open() { return loop_->Open(); }
std::map<std::string, std::string> Host::endpoints() const { return loop_->endpoints(); }
int Host::Run(int signal_fd) { return loop_->Run(signal_fd); }

}  // namespace umi
