// TaskFlow: an accepted task's way on this host, from the queue to its one
// answer (what Ray calls the local task manager): admission against the
// pool, the queue (Scheduler), starting what fits on the Executor, timeouts,
// cancel, completion (CompleteRun) and the answer (TaskLedger). It knows no
// wire: tasks arrive decoded with their ReplyRoute, answers leave through
// the route's sink, events go to an EventSink. The loop (host.cc) decides
// when: it delivers messages, drains the Executor's mailbox when its fd is
// readable, and drives drains and reloads.
//
// Thread safety: none; the event loop owns it. Plugin threads reach it only
// through the Executor's mailbox, which the loop drains (HandleMail).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>

#include "common/clock.h"
#include "common/status.h"
#include "config/hardware_config.h"
#include "host/flow_runner.h"
#include "host/retry_waits.h"
#include "host/running_tasks.h"
#include "host/task_ledger.h"
#include "runtime/executor.h"
#include "runtime/plugin_registry.h"
#include "scheduling/resource_pool.h"
#include "scheduling/scheduler.h"
#include "telemetry/telemetry.h"
#include "transport/transport.h"

namespace umi {

struct TaskFlowOptions {
  std::string host;                     // the `host` field of results
  std::filesystem::path self_binary;    // umi-host, re-executed for worker processes
  std::chrono::milliseconds worker_kill_grace{2000};  // a cancelled worker process's time before SIGKILL
  std::vector<std::vector<int>> machine_cores;  // logical CPUs per core, for pinning
};

class TaskFlow {
 public:
  enum class CancelState { kQueued, kRunning, kNotFound };

  // `on_release`: called when a grant is released, before the task's answer
  // leaves (whoever reads the answer, then scrapes, sees the release).
  // The config in force is the registry's (PluginRegistry::config).
  TaskFlow(TaskFlowOptions options, const Clock& clock, PluginRegistry& plugins, Telemetry& telemetry,
           EventSink& events, std::function<void()> on_release);

  // Readable when the Executor has mail; then call HandleMail.
  int mail_fd() const { return executor_.fd(); }
  // Readable when a worker process the loop exchanges with wrote; then
  // call HandleMail, as also once mail_due_in() says.
  int exchange_fd() const { return executor_.exchange_fd(); }
  std::optional<std::chrono::milliseconds> mail_due_in() const { return executor_.due_in(); }

  // A decoded task: refused, answered from the dedup window, run at once
  // (a run_inline task that fits, none of its plugin queued) or queued.
  void Accept(TaskMessage task, ReplyRoute route, bool serving);
  // A decoded flow (scheduling/flow.h): refused whole, answered from the
  // dedup window, or accepted; its steps are released as tasks at the next
  // StartRunnable.
  void AcceptFlow(FlowMessage flow, ReplyRoute route, bool serving);
  // Submits the flows' released steps and answers the flows that ended;
  // StartRunnable does it, and the loop while draining (serving false: a
  // released step is skipped, not run).
  void PumpFlows(bool serving);
  // Answers a message that was never accepted.
  void Refuse(const TaskResult& result, const ReplyRoute& route) { ledger_.Refuse(result, route); }
  // Starts every queued task the pool grants now, and again as inline tasks
  // end and give their grants back. True when it stopped at
  // kMaxStartsPerCall with more to start: call again without waiting.
  bool StartRunnable();
  static constexpr size_t kMaxStartsPerCall = 1024;
  // The Executor's Finished and Progress messages.
  void HandleMail();
  // Cancels the running tasks past their timeout_ms.
  void ExpireDeadlines() { running_.ExpireDeadlines(clock_.Now()); }

  // A queued task ends `cancelled` now; a running one is asked to stop.
  CancelState Cancel(const std::string& id);
  // Where the task with this id is: queued, running, finished within the
  // dedup window (with its stored result), or unknown here.
  struct Lookup {
    enum class State { kUnknown, kQueued, kRunning, kFinished } state = State::kUnknown;
    std::string_view result;  // kFinished: the result as it was sent, encoded
  };
  Lookup Find(const std::string& id);
  // How many tasks of `plugin` could start now beside what is queued.
  size_t Room(const std::string& plugin) const;
  // run_inline and not isolated: its tasks run on the loop as they arrive.
  bool RunsOnArrival(const std::string& plugin) const;
  // Its pool could run a task of `plugin` and none of it is queued.
  bool MayHoldStarving(const std::string& plugin) const;
  // The tasks of `plugin` that `room` slots finish within kReadAheadWindow
  // at its recent mean run time, at most kMaxReadAhead; 0 until one ran.
  size_t ReadAhead(const std::string& plugin, size_t room) const;
  static constexpr double kReadAheadWindowMs = 2.0;
  static constexpr size_t kMaxReadAhead = 256;
  // At most one task.progress event per task in this interval; a report of
  // completion (fraction 1) always goes out.
  static constexpr std::chrono::milliseconds kProgressInterval{100};
  // Answers every queued task rejected with `why` (a drain), or gives it
  // back to its transport when that can; returns how many were answered.
  size_t RejectQueued(const Status& why);
  // Asks every running task to stop (a drain past its timeout).
  void CancelRunning() { running_.CancelAll(); }
  // Answers every running task `cancelled` with `why` without waiting for it.
  void AbandonRunning(const std::string& why);

  // A reload, phase one (PluginRegistry::PlanVersion built `next`):
  // whether the pool for it can hold what runs (a held GPU must stay).
  // Changes nothing.
  Status PrepareReconfigure(const PluginRegistry::ConfigVersion& next) const;
  // Phase two, once PluginRegistry::Install put the version in force: the
  // pool takes its capacity, and queued tasks the new requirements in their
  // old order (one that no longer fits ends rejected).
  void Reconfigure();
  // Tops up every isolated plugin's idle worker processes to `processes`:
  // kWait before the loop runs; kInBackground from the loop, which must not
  // wait for a plugin's setup (leases, heartbeats and rpc go on meanwhile).
  enum class WorkerStart { kWait, kInBackground };
  void PrestartWorkers(WorkerStart start);
  // Replaces idle worker processes that died (SIGCHLD); returns how many died.
  size_t ReplaceDeadWorkers(bool restart);

  size_t queued() const { return scheduler_.size(); }
  const Scheduler& scheduler() const { return scheduler_; }
  const ProcessPool& processes() const { return executor_.processes(); }
  size_t running() const { return running_.size(); }
  PoolUsage usage() const { return pool_.Usage(); }
  void FillUsage(PoolUsage& usage) const { pool_.FillUsage(usage); }
  std::optional<Clock::TimePoint> NextDeadline() const { return running_.NextDeadline(); }
  // When the next task that failed and waits to run again is due; then call
  // ReleaseDueRetries, which queues every due one (a Poller timer of the loop's).
  std::optional<Clock::TimePoint> NextRetryDue() const;
  void ReleaseDueRetries();

 private:
  PoolCapacity Capacity(const HardwareConfig& config) const;
  // Runs a granted task on the Executor; true when it ran inline and is
  // complete (answered, its grant given back) on return.
  // Tells transports which of `runnable` run in this process (Starting), in one write each.
  void AnnounceStarts(const std::vector<std::pair<QueuedTask, Allocation>>& runnable);
  bool Start(QueuedTask task, Allocation allocation, Clock::TimePoint now);
  // The plugin's config when it runs in worker processes (isolation:
  // process, or a Python plugin, with defaults when it has no section); null otherwise.
  const PluginConfig* IsolatedConfig(const LoadedPlugin& plugin) const;
  // How `plugin`'s worker processes start (settings, sandbox), made once per
  // config; null when it runs on threads.
  std::shared_ptr<const WorkerSpec> IsolatedSpec(const LoadedPlugin& plugin);
  // A Finished from the mailbox: the task leaves running_ and is finished.
  void Complete(Finished finished);
  // Releases the task's grant and answers it; `ran`: an inline task's
  // timeline record (it never reached Telemetry::TaskStarted).
  void Finish(uint64_t key, RunningTask& running, const Finished& finished, TaskRecord* ran = nullptr);
  void PublishProgress(RunningTask& running, double fraction, std::string_view message);
  // Retries (common/retry_policy.h): a failed run whose policy lets it run
  // again waits in retry_waits_ until its backoff has passed; it then
  // queues again under its key.
  const RetryPolicy* RetryPolicyOf(const TaskMessage& task) const;
  static bool AnyPluginRetries(const HardwareConfig& config);
  // How long until the run that ended with `result` runs again; none: it does not.
  std::optional<std::chrono::milliseconds> RetryWaitFor(const RetryPolicy& policy, const TaskResult& result);
  void WaitToRetry(QueuedTask task, const std::string& input, const TaskResult& failed, const RetryPolicy& policy,
                   std::chrono::milliseconds wait);
  void Publish(std::string_view topic, const TaskMessage& task);

  TaskFlowOptions options_;
  const Clock& clock_;
  const HardwareConfig& config() const { return plugins_.config(); }
  std::map<std::string, std::shared_ptr<const WorkerSpec>> worker_specs_;  // by plugin path; cleared by a reload
  PluginRegistry& plugins_;
  Telemetry& telemetry_;
  EventSink& events_;
  std::function<void()> on_release_;
  ResourcePool pool_;
  Scheduler scheduler_;
  RunningTasks running_;
  TaskLedger ledger_;
  std::unordered_map<std::string, double> mean_run_ms_;  // per plugin, a moving average
  uint64_t last_key_ = 0;
  FlowRunner flows_{clock_};
  RetryWaits retry_waits_;
  bool plugin_retries_ = false;  // some plugins.<name>.retry is set: look a finished task's plugin up
  bool retries_closed_ = false;  // a drain began: failures are answered
  std::mt19937_64 random_{std::random_device{}()};
  std::uniform_real_distribution<double> jitter_{0.0, 1.0};
  // True from a StartRunnable pass that left the queue blocked until a task
  // is queued, a grant is given back or the pool changes: a run_inline task
  // may then run on arrival past what is queued (it takes nothing they could use).
  bool queue_settled_ = true;
  // Declared last: destroyed first, so its threads finish before anything
  // they might reach goes away.
  Executor executor_;
};

}  // namespace umi
