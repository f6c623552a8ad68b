#include "host/host.h"

#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <set>
#include <variant>

#include "host/config_reload.h"
#include "host/control_handler.h"
#include "host/lifecycle.h"
#include "host/task_flow.h"
#include "runtime/sandbox.h"
#include "telemetry/http_server.h"
#include "telemetry/service_notify.h"
#include "telemetry/telemetry.h"
#include "transport/poller.h"
#include "transport/protocol.h"

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

std::string Join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

TaskFlowOptions FlowOptions(const HostOptions& options) {
  return {options.name, options.self_binary, kWorkerKillGrace, options.machine_cores};
}

// Events go nowhere when no transport carries them.
class NoEvents final : public EventSink {
 public:
  bool listening() const override { return false; }
  void Publish(std::string_view, std::string_view) override {}
};

}  // namespace

// Polls and routes: the transports deliver messages (Inbox), TaskFlow runs
// tasks, Lifecycle says when to drain, cancel and give up, ControlHandler
// answers ops, ApplyReload (config_reload.h) puts a reloaded config in
// force; the config in force is the registry's (PluginRegistry::config).
class Host::Loop final : public Inbox {
 public:
  Loop(HostOptions options, PluginRegistry& plugins, HostTransports transports)
      : options_(std::move(options)),
        clock_(options_.clock ? *options_.clock : SystemClock::Instance()),
        plugins_(plugins),
        transports_(std::move(transports.transports)),
        events_(transports.events ? *transports.events : no_events_),
        cluster_view_(std::move(transports.cluster_view)) {}

  Status Open() {
    // What the workers' sandbox lacks on this kernel is said, never skipped silently.
    const SandboxSupport& sandbox = SandboxSupport::Get();
    const auto mechanisms = sandbox.Mechanisms();
    const bool complete =
        std::all_of(mechanisms.begin(), mechanisms.end(), [](const auto& mechanism) { return mechanism.second; });
    spdlog::log(complete ? spdlog::level::info : spdlog::level::warn, "sandbox of isolated plugins' workers: {}",
                sandbox.Summary());
    // Workers set up before any task can come (and before a farm counts on
    // this host's heartbeat).
    flow_.PrestartWorkers(TaskFlow::WorkerStart::kWait);
    poller_.Add(flow_.mail_fd(), [] { return static_cast<short>(ZMQ_POLLIN); }, [this](short) { flow_.HandleMail(); });
    poller_.Add(flow_.exchange_fd(), [] { return static_cast<short>(ZMQ_POLLIN); }, [this](short) { flow_.HandleMail(); });
    poller_.AddTimer([this] { return flow_.mail_due_in(); }, [this] { flow_.HandleMail(); });
    AddTimers();
    for (const auto& transport : transports_) {
      transport->SetPlugins(LoadedNames());
      if (Status opened = transport->Open(poller_, *this); !opened.ok()) return opened;
    }
    if (cluster_view_) http_.SetClusterSource(cluster_view_);
    if (!options_.http_listen.empty()) {
      if (Status started = http_.Start(options_.http_listen); !started.ok()) return started;
    }
    telemetry_.SetPlugins(plugins_.refusals_total(), static_cast<int64_t>(plugins_.plugins().size()),
                          static_cast<int64_t>(plugins_.refused().size()));
    telemetry_.SetKnownPlugins(LoadedNames());
    telemetry_.SetConfigFallback(options_.config_fallback);
    telemetry_.SetSandbox(sandbox.Mechanisms(), sandbox.Summary());
    UpdateLoad();
    telemetry_.SetReady(true);
    return {};
  }

  std::map<std::string, std::string> endpoints() const {
    std::map<std::string, std::string> endpoints;
    for (const auto& transport : transports_) endpoints.merge(transport->endpoints());
    if (!http_.url().empty()) endpoints["http"] = http_.url();
    return endpoints;
  }

  int Run(int signal_fd) {
    poller_.Add(signal_fd, [] { return static_cast<short>(ZMQ_POLLIN); },
                [this, signal_fd](short) { HandleSignal(signal_fd); });
    NotifyService("READY=1\nSTATUS=serving");
    while (true) {
      // Runnable tasks left from the last turn: look, do not wait. An idle
      // loop still turns each kHeartbeatInterval (its heartbeat).
      poller_.PollOnce(start_more_ ? std::chrono::milliseconds(0) : kHeartbeatInterval);
      for (const auto& transport : transports_) transport->BeforeTasks();
      if (lifecycle_.serving()) {
        start_more_ = flow_.StartRunnable();
      } else {
        flow_.PumpFlows(/*serving=*/false);  // flows whose steps ended in the drain are answered
        start_more_ = false;
      }
      UpdateLoad();
      // Last: this turn's results leave in one batch, after the load they
      // leave behind is published.
      for (const auto& transport : transports_) transport->AfterPoll();
      if (!lifecycle_.serving() && flow_.running() == 0) return FinishDrain();
    }
  }

  size_t ReadAhead(const std::string& plugin, size_t room) const override { return flow_.ReadAhead(plugin, room); }
  bool RunsOnArrival(const std::string& plugin) const override { return flow_.RunsOnArrival(plugin); }
  bool MayHoldStarving(const std::string& plugin) const override {
    return lifecycle_.serving() && flow_.MayHoldStarving(plugin);
  }
  size_t Room(const std::string& plugin) const override {
    return lifecycle_.serving() ? flow_.Room(plugin) : 0;
  }

  bool accepting_tasks() const override {
    return lifecycle_.serving() && flow_.queued() < static_cast<size_t>(config().scheduler.max_queued);
  }

  void Deliver(std::string_view bytes, ReplyRoute route) override {
    Message message = DecodeMessage(bytes);
    if (auto* bad = std::get_if<BadMessage>(&message)) {
      telemetry_.CountMalformed();
      spdlog::warn("rejected message{}: {}", bad->id ? " '" + *bad->id + "'" : "", bad->status.message());
      return flow_.Refuse(RejectedResult(bad->id, bad->plugin, bad->status), route);
    }
    if (auto* control = std::get_if<ControlRequest>(&message)) {
      if (!route.rpc) {
        return flow_.Refuse(
            RejectedResult(std::nullopt, "", Status(ErrorCode::kBadRequest, "control requests go to the rpc socket")),
            route);
      }
      // Start what fits first, so a control request sees every task that
      // arrived before it either running or queued for want of resources.
      if (lifecycle_.serving()) flow_.StartRunnable();
      return SendOn(route, controls_.Handle(*control));
    }
    // A farm task read just as the drain began (the read was under way) is
    // another host's to run: back to its stream, not answered shutting_down.
    if (!lifecycle_.serving() && route.sink && route.sink->GiveBack(route)) return;
    if (auto* flow = std::get_if<FlowMessage>(&message)) {
      return flow_.AcceptFlow(std::move(*flow), std::move(route), lifecycle_.serving());
    }
    flow_.Accept(std::get<TaskMessage>(std::move(message)), std::move(route), lifecycle_.serving());
  }

  void RepliesDropped(size_t n) override { telemetry_.CountDroppedReply(n); }
  void ReadyChanged(bool ready) override { telemetry_.SetReady(ready); }
  void FarmReported(const FarmReport& report) override { telemetry_.SetFarm(report); }
  HostLoad load() const override {
    const PoolUsage pool = flow_.usage();
    HostLoad load{.running = flow_.running(), .queued = flow_.queued(), .draining = !lifecycle_.serving(),
                  .cpu_threads_used = pool.cpu_threads_used, .cpu_threads_total = pool.cpu_threads_total,
                  .memory_mb_used = pool.memory_mb_used, .memory_mb_total = pool.memory_mb_total,
                  .gpus_total = static_cast<int>(pool.gpu_used.size())};
    for (const Quantity& used : pool.gpu_used) load.gpus_busy += used > Quantity() ? 1 : 0;
    return load;
  }

 private:
  void OnDrainDeadline() {
    switch (lifecycle_.Tick(clock_.Now())) {
      case Lifecycle::Due::kNothing:
        break;
      case Lifecycle::Due::kCancelRunning:
        if (flow_.running() > 0) spdlog::warn("drain timeout: cancelling {} running task(s)", flow_.running());
        flow_.CancelRunning();
        break;
      case Lifecycle::Due::kAbandon:
        if (flow_.running() > 0) AbandonRunningTasks("the plugin ignored cancellation at shutdown");
        break;
    }
  }

  // WATCHDOG=1 from the loop itself: a loop stuck anywhere stops it, and
  // systemd restarts the host (WatchdogSec= in the unit).
  void PetWatchdog() {
    const Clock::TimePoint now = clock_.Now();
    NotifyService("WATCHDOG=1");
    next_watchdog_ping_ = now + std::chrono::duration_cast<Clock::Duration>(*watchdog_ / 2);
  }

  // What happens at a time registers with the poller, which waits no longer
  // than the earliest.
  void AddTimers() {
    poller_.AddTimer([this] { return DueIn(flow_.NextDeadline()); }, [this] { flow_.ExpireDeadlines(); });
    poller_.AddTimer([this] { return DueIn(flow_.NextRetryDue()); }, [this] { flow_.ReleaseDueRetries(); });
    poller_.AddTimer([this] { return DueIn(lifecycle_.NextDeadline()); }, [this] { OnDrainDeadline(); });
    if (watchdog_) poller_.AddTimer([this] { return DueIn(next_watchdog_ping_); }, [this] { PetWatchdog(); });
  }

  std::optional<std::chrono::milliseconds> DueIn(std::optional<Clock::TimePoint> at) const {
    if (!at) return std::nullopt;
    return std::chrono::ceil<std::chrono::milliseconds>(*at - clock_.Now());
  }

  // After each release (whoever reads a task's answer and then scrapes sees
  // the grant given back) and, as the loop's heartbeat (/healthz), each turn.
  void PublishLoad(bool heartbeat = false) {
    size_t unsent = 0;
    for (const auto& transport : transports_) unsent += transport->waiting();
    flow_.FillUsage(usage_);
    telemetry_.SetLoad(flow_.queued(), flow_.running(), unsent, usage_, heartbeat);
    // Worker processes change rarely (a start, a death): pushed when they do.
    if (const uint64_t generation = flow_.processes().counts_generation(); generation != workers_generation_) {
      workers_generation_ = generation;
      std::map<std::string, Telemetry::WorkerProcesses> workers;
      for (const auto& [plugin, counts] : flow_.processes().worker_counts()) {
        workers[plugin] = {counts.live, counts.ended, counts.late_frames, counts.sandbox_kills};
      }
      telemetry_.SetWorkerProcesses(std::move(workers));
    }
  }

  // Once per turn.
  void UpdateLoad() {
    PublishLoad(/*heartbeat=*/true);
    // The queue's shape changes every turn under load: sampled.
    const Clock::TimePoint now = clock_.Now();
    if (now < next_queue_sample_) return;
    next_queue_sample_ = now + kQueueSampleInterval;
    telemetry_.SetQueue(flow_.scheduler().queued_by_plugin(), flow_.scheduler().oldest_enqueued_at(),
                        accepting_tasks() && !Backlogged());
  }

  // The config in force (a reload installs a new one in the registry).
  const HardwareConfig& config() const { return plugins_.config(); }

  bool Backlogged() const {
    return std::any_of(transports_.begin(), transports_.end(),
                       [](const auto& transport) { return transport->backlogged(); });
  }

  std::set<std::string> LoadedNames() const {
    std::set<std::string> names;
    for (const auto& [name, plugin] : plugins_.plugins()) names.insert(name);
    return names;
  }

  ControlHandler MakeControls() {
    ControlHandler controls;
    controls.Add("health", [this](const ControlRequest&) {
      return EncodeHealthReply(!lifecycle_.serving(), options_.name, plugins_.plugins().size());
    });
    controls.Add("stats", [this](const ControlRequest&) {
      UpdateLoad();
      return EncodeStatsReply(telemetry_.Stats());
    });
    controls.Add("cancel", [this](const ControlRequest& request) {
      switch (flow_.Cancel(request.id)) {
        case TaskFlow::CancelState::kQueued: return EncodeCancelReply("queued");
        case TaskFlow::CancelState::kRunning: return EncodeCancelReply("running");
        case TaskFlow::CancelState::kNotFound: break;
      }
      for (const auto& transport : transports_) {  // a flow spread over a farm
        if (transport->CancelFlow(request.id)) return EncodeCancelReply("running");
      }
      return EncodeControlError(Status(ErrorCode::kNotFound, "no queued or running task has id '" + request.id + "'"));
    });
    controls.Add("result", [this](const ControlRequest& request) {
      if (request.id.empty()) return EncodeControlError(Status(ErrorCode::kBadRequest, "op result needs the task's id"));
      const TaskFlow::Lookup found = flow_.Find(request.id);
      switch (found.state) {
        case TaskFlow::Lookup::State::kQueued: return EncodeResultReply("queued");
        case TaskFlow::Lookup::State::kRunning: return EncodeResultReply("running");
        case TaskFlow::Lookup::State::kFinished: return EncodeResultReply("finished", found.result);
        case TaskFlow::Lookup::State::kUnknown: break;
      }
      return EncodeResultReply("unknown");
    });
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

  void HandleSignal(int signal_fd) {
    signalfd_siginfo info{};
    if (read(signal_fd, &info, sizeof(info)) != sizeof(info)) return;
    const int signal = static_cast<int>(info.ssi_signo);
    if (signal == SIGHUP) {
      (void)Reload("SIGHUP");  // the outcome is logged
    } else if (signal == SIGCHLD) {
      flow_.ReplaceDeadWorkers(/*restart=*/lifecycle_.serving());
    } else {
      if (!lifecycle_.serving()) {  // a second stop request: the operator will not wait
        flow_.CancelRunning();
        AbandonRunningTasks(std::string("a second ") + strsignal(signal) + " during the drain");
      }
      BeginDrain(strsignal(signal));
    }
  }

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

  // The reload itself is ApplyReload's (config_reload.h): two phases, the
  // first changing nothing.
  StatusOr<ReloadOutcome> ApplyReload() {
    if (!lifecycle_.serving()) return Status(ErrorCode::kInvalidConfig, "the host is draining");
    if (!options_.reload_config) {
      return Status(ErrorCode::kInvalidConfig, "this host was started without a config file to reload");
    }
    StatusOr<HardwareConfig> loaded = options_.reload_config();
    if (!loaded.ok()) return Status(ErrorCode::kInvalidConfig, loaded.error());
    return umi::ApplyReload(std::move(loaded).value(), {plugins_, flow_, telemetry_, transports_, options_.plugin_dirs});
  }

  void BeginDrain(const std::string& reason) {
    const auto timeout = std::chrono::duration_cast<Clock::Duration>(
        std::chrono::duration<double>(config().shutdown.drain_timeout_s));
    if (!lifecycle_.BeginDrain(clock_.Now(), timeout)) return;
    telemetry_.SetDraining(true);
    NotifyService("STOPPING=1\nSTATUS=draining");
    for (const auto& transport : transports_) transport->StopReading();
    const size_t running = flow_.running();
    const size_t queued =
        flow_.RejectQueued(Status(ErrorCode::kShuttingDown, "the host shut down before the task started"));
    spdlog::info("draining ({}): {} running task(s) to finish, {} queued task(s) answered shutting_down", reason,
                 running, queued);
  }

  // Running tasks cannot be stopped in-process (a plugin that ignores
  // cancellation, or an operator who will not wait): answer them
  // `cancelled` with `why`, flush, and exit without joining their threads.
  [[noreturn]] void AbandonRunningTasks(const std::string& why) {
    spdlog::error("exiting without waiting for {} running task(s): {}", flow_.running(), why);
    flow_.AbandonRunning(why);
    FinishDrain();
    for (const auto& transport : transports_) transport->Close();
    spdlog::shutdown();
    std::_Exit(0);
  }

  int FinishDrain() {
    const auto deadline = std::chrono::steady_clock::now() + kFlushTimeout;
    // The farm's results first: their entries wait, pending, until written.
    for (auto transport = transports_.rbegin(); transport != transports_.rend(); ++transport) {
      (*transport)->Flush(deadline);
    }
    http_.Stop();
    spdlog::info("stopped");
    return 0;
  }

  HostOptions options_;
  const Clock& clock_;
  PluginRegistry& plugins_;
  Poller poller_;
  std::vector<std::unique_ptr<Transport>> transports_;
  NoEvents no_events_;
  EventSink& events_;
  std::function<StatusOr<std::string>()> cluster_view_;  // /api/cluster; empty: no farm
  Lifecycle lifecycle_{kCancelGrace};
  const std::optional<std::chrono::microseconds> watchdog_ = WatchdogInterval();
  Clock::TimePoint next_watchdog_ping_{};
  uint64_t workers_generation_ = ~uint64_t{0};
  Clock::TimePoint next_queue_sample_{};
  static constexpr auto kQueueSampleInterval = std::chrono::milliseconds(250);
  ControlHandler controls_ = MakeControls();  // its handlers use the fields above
  Telemetry telemetry_{options_.name, 1000, config().http.histogram_buckets_s};
  HttpServer http_{telemetry_};  // reads telemetry_: declared after it
  // Declared last: destroyed first, so its threads finish before what they reach goes away.
  PoolUsage usage_;  // PublishLoad's, kept for its vectors
  bool start_more_ = false;  // StartRunnable stopped at its budget
  TaskFlow flow_{FlowOptions(options_), clock_, plugins_, telemetry_, events_, [this] { PublishLoad(); }};
};

Host::Host(HostOptions options, PluginRegistry& plugins, HostTransports transports)
    : loop_(std::make_unique<Loop>(std::move(options), plugins, std::move(transports))) {}
Host::~Host() = default;
Status Host::Open() { return loop_->Open(); }
std::map<std::string, std::string> Host::endpoints() const { return loop_->endpoints(); }
int Host::Run(int signal_fd) { return loop_->Run(signal_fd); }

}  // namespace umi
