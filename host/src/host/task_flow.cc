#include "host/task_flow.h"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "common/log_format.h"

#include "host/admission.h"
#include "host/completion.h"
#include "transport/protocol.h"

namespace umi {
namespace {

double Millis(Clock::Duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

Clock::Duration Seconds(double seconds) {
  return std::chrono::duration_cast<Clock::Duration>(std::chrono::duration<double>(seconds));
}

// Another farm host's answer, as this host's own dedup window holds one.
ResultCache::Entry ElsewhereEntry(const AnsweredElsewhere& answered, Clock::TimePoint now) {
  return {answered.body, now, answered.fingerprint};
}

}  // namespace

TaskFlow::TaskFlow(TaskFlowOptions options, const Clock& clock, PluginRegistry& plugins, Telemetry& telemetry,
                   EventSink& events, std::function<void()> on_release)
    : options_(std::move(options)),
      clock_(clock),
      plugins_(plugins),
      telemetry_(telemetry),
      events_(events),
      on_release_(std::move(on_release)),
      pool_(Capacity(plugins.config())),
      scheduler_(pool_, std::chrono::milliseconds(plugins.config().scheduler.reserve_after_ms)),
      ledger_(options_.host, clock, telemetry, events, Seconds(plugins.config().dedup.window_s),
              static_cast<size_t>(plugins.config().dedup.max_entries)),
      plugin_retries_(AnyPluginRetries(plugins.config())),
      executor_(options_.self_binary, options_.worker_kill_grace) {}

PoolCapacity TaskFlow::Capacity(const HardwareConfig& config) const {
  PoolCapacity capacity = PoolCapacity::FromConfig(config, options_.machine_cores);
  for (const auto& [name, plugin] : plugins_.plugins()) {
    if (!plugin->allow_concurrent) capacity.plugin_caps[name] = 1;
  }
  return capacity;
}

void TaskFlow::Accept(TaskMessage task, ReplyRoute route, bool serving) {
  const Clock::TimePoint now = clock_.Now();
  AdmissionFacts facts;
  facts.serving = serving;
  facts.from_rpc = route.rpc;
  facts.id_active = ledger_.active(task.id);
  facts.finished = ledger_.finished(task.id, now);
  std::optional<ResultCache::Entry> elsewhere;  // another host of the farm answered the id
  if (!facts.finished && route.answered) facts.finished = &elsewhere.emplace(ElsewhereEntry(*route.answered, now));
  facts.plugin = plugins_.Find(task.plugin);
  if (!facts.plugin) facts.plugin_refusal = plugins_.RefusalOf(task.plugin);
  facts.queued = scheduler_.size();
  facts.max_queued = config().scheduler.max_queued;
  facts.allow_task_overrides = config().allow_task_overrides;
  Admission admission = Admit(task, facts, pool_);
  if (const auto* refused = std::get_if<Status>(&admission)) {
    const std::string status = "rejected", code(WireCode(refused->code()));
    LogTaskScope scope(task.plugin, task.id, status, code);
    spdlog::info("rejected task '{}' ({}): {}", task.id, code, refused->message());
    return ledger_.Refuse(RejectedResult(task.id, task.plugin, *refused), route);
  }
  if (const auto* retry = std::get_if<Retry>(&admission)) {
    telemetry_.CountDeduplicated();
    return SendOn(route, *retry->result, &facts.finished->fingerprint);  // the same task: kept again as it was
  }
  Admitted& admitted = std::get<Admitted>(admission);
  QueuedTask queued;
  queued.key = ++last_key_;
  queued.demand = std::move(admitted.demand);
  queued.plugin = facts.plugin;
  route.answered = nullptr;  // read: the queue need not hold it
  queued.reply = std::move(route);
  queued.enqueued_at = now;
  queued.message = std::move(task);
  ledger_.Accepted(queued.message.id, queued.key, admitted.fingerprint);
  Publish("task.queued", queued.message);
  // A run_inline task that the pool grants now runs at once: it gives its
  // grant back before the next message is read. With nothing queued, or
  // with only tasks the last pass found blocked (GPU tasks behind a busy
  // GPU) and none of its own plugin, it passes no task that could start.
  const bool passes_no_one =
      scheduler_.size() == 0 || (queue_settled_ && !scheduler_.has_queued(queued.message.plugin));
  if (queued.plugin->run_inline && passes_no_one && !IsolatedConfig(*queued.plugin)) {
    if (std::optional<Allocation> allocation = pool_.TryAllocate(queued.key, queued.demand)) {
      if (Executor::RunsInline(*queued.plugin, false, *allocation)) {
        if (ResultSink* sink = queued.reply.sink) {
          sink->Starting(queued.reply);
          sink->FlushStarting();
        }
        Start(std::move(queued), std::move(*allocation), now);
        return;
      }
      pool_.Release(queued.key);
    }
  }
  scheduler_.Enqueue(std::move(queued));
  queue_settled_ = false;
}

void TaskFlow::AcceptFlow(FlowMessage flow, ReplyRoute route, bool serving) {
  FlowFacts facts;
  facts.serving = serving;
  facts.id_active = ledger_.active(flow.id);
  facts.finished = ledger_.finished(flow.id, clock_.Now());
  std::optional<ResultCache::Entry> elsewhere;
  if (!facts.finished && route.answered) facts.finished = &elsewhere.emplace(ElsewhereEntry(*route.answered, clock_.Now()));
  facts.find_plugin = [this](const std::string& name) { return plugins_.Find(name); };
  facts.plugin_refusal = [this](const std::string& name) { return plugins_.RefusalOf(name); };
  if (route.sink && route.sink->SpreadsFlows()) {
    facts.served_elsewhere = [&route](const std::string& name) { return route.sink->ServedElsewhere(name); };
  }
  facts.allow_task_overrides = config().allow_task_overrides;
  FlowAdmission admission = AdmitFlow(flow, facts, pool_);
  if (const auto* refused = std::get_if<Status>(&admission)) {
    const std::string status = "rejected", code(WireCode(refused->code()));
    LogTaskScope scope("flow", flow.id, status, code);
    spdlog::info("rejected flow '{}' ({}): {}", flow.id, code, refused->message());
    return ledger_.Refuse(RejectedResult(flow.id, "flow", *refused), route);
  }
  if (const auto* retry = std::get_if<Retry>(&admission)) {
    telemetry_.CountDeduplicated();
    return SendOn(route, *retry->result, &facts.finished->fingerprint);  // the same task: kept again as it was
  }
  if (route.sink && route.sink->TakeFlow(flow, route, std::get<AdmittedFlow>(admission).fingerprint)) {
    spdlog::debug("flow '{}' ({} step(s)) handed to the farm: its steps run on any host", flow.id, flow.steps.size());
    return;
  }
  const uint64_t key = ++last_key_;
  ledger_.Accepted(flow.id, key, std::get<AdmittedFlow>(admission).fingerprint);
  spdlog::debug("flow '{}' accepted: {} step(s)", flow.id, flow.steps.size());
  flows_.Start(std::move(flow), std::move(route), key);
}

void TaskFlow::PumpFlows(bool serving) {
  if (!flows_.has_work()) return;
  flows_.Pump([this, serving](TaskMessage step, ReplyRoute route) { Accept(std::move(step), std::move(route), serving); },
              [this](const TaskResult& result, const ReplyRoute& route, uint64_t) { ledger_.EndFlow(result, route); },
              serving);
}

bool TaskFlow::StartRunnable() {
  // Inline tasks give their grants back as they end, within this call, and
  // no mail will wake the loop for them: the queue is taken again while
  // they do, up to a budget, so other work is not held up for long either.
  size_t started = 0;
  while (true) {
    PumpFlows(true);  // steps a flow released since the last pass join the queue first
    const Clock::TimePoint now = clock_.Now();
    std::vector<std::pair<QueuedTask, Allocation>> runnable = scheduler_.TakeRunnable(now);
    AnnounceStarts(runnable);
    size_t ended = 0;
    for (auto& [task, allocation] : runnable) ended += Start(std::move(task), std::move(allocation), now) ? 1 : 0;
    started += runnable.size();
    // An inline step that ended may have released more steps: another pass.
    if (!flows_.has_work() && (ended == 0 || scheduler_.size() == 0)) {
      queue_settled_ = true;  // what is queued now waits for a release
      return false;
    }
    if (started >= kMaxStartsPerCall) return true;
  }
}

void TaskFlow::AnnounceStarts(const std::vector<std::pair<QueuedTask, Allocation>>& runnable) {
  // Tasks that run inside this process (a crash there ends the host) are
  // told to their transport together, before the first of them runs.
  std::vector<ResultSink*> sinks;
  for (const auto& [task, allocation] : runnable) {
    if (!task.reply.sink || IsolatedConfig(*task.plugin)) continue;
    task.reply.sink->Starting(task.reply);
    if (std::find(sinks.begin(), sinks.end(), task.reply.sink) == sinks.end()) sinks.push_back(task.reply.sink);
  }
  for (ResultSink* sink : sinks) sink->FlushStarting();
}

bool TaskFlow::MayHoldStarving(const std::string& name) const {
  const LoadedPlugin* plugin = plugins_.Find(name);
  if (!plugin || scheduler_.queued_by_plugin().count(name)) return false;
  return pool_.CheckFeasible(Demand{plugin->requirement, plugin->task_group, plugin->name}).ok();
}

bool TaskFlow::RunsOnArrival(const std::string& name) const {
  const LoadedPlugin* plugin = plugins_.Find(name);
  return plugin && plugin->run_inline && !IsolatedConfig(*plugin);
}

bool TaskFlow::Start(QueuedTask task, Allocation allocation, Clock::TimePoint now) {
  const uint64_t key = task.key;
  const LoadedPlugin& plugin = *task.plugin;
  const PluginConfig* isolated = IsolatedConfig(plugin);
  // An inline task ends before this returns: it never enters running_, so
  // it lives here, on the stack.
  const bool inline_run = Executor::RunsInline(plugin, isolated != nullptr, allocation);
  RunningTask on_stack;
  std::optional<UMI_Context> context_on_stack;
  std::unique_ptr<RunningTask> owned;
  RunningTask& running = inline_run ? on_stack : *(owned = std::make_unique<RunningTask>());
  running.queued_ms = Millis(now - task.enqueued_at);
  if (inline_run) {
    context_on_stack.emplace(task.message.id, task.message.plugin, std::move(task.message.input_msgpack), allocation);
    running.context = std::shared_ptr<UMI_Context>(std::shared_ptr<UMI_Context>(), &*context_on_stack);  // not owned
    running.context->on_progress = [this, &running](double fraction, std::string_view message) {
      PublishProgress(running, fraction, message);
    };
  } else {
    running.context = std::make_shared<UMI_Context>(task.message.id, task.message.plugin,
                                                    std::move(task.message.input_msgpack), allocation);
    running.context->on_progress = executor_.ProgressReporter(key);
  }
  running.task = std::move(task);
  running.allocation = std::move(allocation);
  Publish("task.started", running.task.message);
  if (inline_run) {
    // One telemetry call when it has ended, not two: nobody can watch it run.
    const Finished finished = executor_.RunInline(key, *running.context, plugin);
    TaskRecord record = running.Record(finished.started_at);
    Finish(key, running, finished, &record);
    return true;
  }
  telemetry_.TaskStarted(key, running.Record(clock_.UnixSeconds()));

  std::optional<Clock::TimePoint> deadline;
  if (running.task.message.timeout_ms > 0) deadline = now + std::chrono::milliseconds(running.task.message.timeout_ms);
  RunningTask& started = running_.Add(key, std::move(owned), deadline);
  executor_.Run(key, started.context, plugin, started.allocation, isolated ? IsolatedSpec(plugin) : nullptr);
  return false;
}

void TaskFlow::HandleMail() {
  for (Mail& mail : executor_.TakeAll()) {
    if (auto* progress = std::get_if<Progress>(&mail)) {
      if (RunningTask* running = running_.Find(progress->key)) {
        PublishProgress(*running, progress->fraction, progress->message);
      }
    } else {
      Complete(std::move(std::get<Finished>(mail)));
    }
  }
}

void TaskFlow::PublishProgress(RunningTask& running, double fraction, std::string_view message) {
  if (!events_.listening()) return;
  // Coalesced: a plugin may report per frame; watchers need a few a second.
  const auto now = clock_.Now();
  const bool done = fraction >= 1.0;
  if (!done && running.progress_published && now - *running.progress_published < kProgressInterval) return;
  running.progress_published = now;
  events_.Publish("task.progress",
                  EncodeProgressEvent(running.task.message.id, running.task.message.plugin, fraction, message));
}

void TaskFlow::Complete(Finished finished) {
  std::unique_ptr<RunningTask> running = running_.Take(finished.key);
  if (!running) return;  // already answered after an abandoned drain
  Finish(finished.key, *running, finished);
  queue_settled_ = false;  // its grant may let a queued task start
}

void TaskFlow::Finish(uint64_t key, RunningTask& running, const Finished& finished, TaskRecord* ran) {
  const OwnedError& error = finished.error;
  pool_.Release(key);
  on_release_();

  if (running.timed_out) {
    LogTaskScope scope(running.task.message.plugin, running.task.message.id);
    const double overran_ms = finished.run_ms - static_cast<double>(running.task.message.timeout_ms);
    spdlog::warn("task '{}' ({}) overran its timeout_ms={} by {:.0f} ms{}", running.task.message.id,
                 running.task.message.plugin, running.task.message.timeout_ms, overran_ms,
                 finished.killed ? ": it ignored cancellation and its worker process was killed"
                                 : " before it stopped");
  }
  RunOutcome outcome;
  outcome.cancel_requested = running.cancel_requested;
  outcome.timed_out = running.timed_out;
  outcome.drain_cancelled = running.context->cancelled();
  outcome.crashed = finished.crashed;
  outcome.killed = finished.killed;
  if (error) {
    outcome.error_code = error->code.empty() ? std::string(WireCode(ErrorCode::kPluginError)) : error->code;
    outcome.error_message = error->message;
    outcome.error_detail = error->detail;
  }
  outcome.output_msgpack = std::move(running.context->output_msgpack);
  outcome.queued_ms = running.queued_ms;
  outcome.run_ms = finished.run_ms;
  auto [mean, first] = mean_run_ms_.try_emplace(running.task.message.plugin, finished.run_ms);
  if (!first) mean->second += (finished.run_ms - mean->second) / 16;
  outcome.started_at = finished.started_at;
  outcome.finished_at = finished.finished_at;
  TaskResult result = CompleteRun(running.task.message, std::move(running.allocation), std::move(outcome));
  if (const RetryPolicy* policy = RetryPolicyOf(running.task.message)) {
    result.attempts = running.task.runs + 1;
    if (const std::optional<std::chrono::milliseconds> wait = RetryWaitFor(*policy, result)) {
      telemetry_.RunRetried(key, result, ran);
      WaitToRetry(std::move(running.task), running.context->input_msgpack, result, *policy, *wait);
      return;
    }
  }
  ledger_.End(result, running.task.reply, key, ran);
}

TaskFlow::CancelState TaskFlow::Cancel(const std::string& id) {
  if (flows_.has(id)) {  // its steps that were released are cancelled as tasks
    for (const std::string& step : flows_.Cancel(id)) Cancel(step);
    return CancelState::kRunning;
  }
  const uint64_t key = ledger_.KeyOf(id);
  if (RunningTask* running = running_.Find(key)) {
    running->cancel_requested = true;
    running->context->Cancel();
    return CancelState::kRunning;
  }
  if (std::optional<QueuedTask> queued = scheduler_.Remove(key)) {
    queue_settled_ = false;  // it may have been the reserved one
    TaskResult result = EndedResult(queued->message.id, queued->message.plugin, TaskStatus::kCancelled,
                                    Status(ErrorCode::kCancelled, "cancelled by request before it started"));
    result.queued_ms = Millis(clock_.Now() - queued->enqueued_at);
    ledger_.End(result, queued->reply);
    return CancelState::kQueued;
  }
  if (std::optional<RetryWaits::Waiting> waiting = retry_waits_.Take(key)) {
    TaskResult result =
        EndedResult(waiting->task.message.id, waiting->task.message.plugin, TaskStatus::kCancelled,
                    Status(ErrorCode::kCancelled, "cancelled by request while it waited to run again (run " +
                                                      std::to_string(waiting->task.runs) + " ended " +
                                                      waiting->last_failure + ")"));
    result.attempts = waiting->task.runs;
    ledger_.End(result, waiting->task.reply);
    return CancelState::kQueued;
  }
  return CancelState::kNotFound;
}

TaskFlow::Lookup TaskFlow::Find(const std::string& id) {
  if (flows_.has(id)) return {Lookup::State::kRunning, {}};
  if (const uint64_t key = ledger_.KeyOf(id)) {
    return {running_.Find(key) ? Lookup::State::kRunning : Lookup::State::kQueued, {}};
  }
  if (const ResultCache::Entry* stored = ledger_.finished(id, clock_.Now())) {
    return {Lookup::State::kFinished, stored->body};
  }
  return {};
}

size_t TaskFlow::RejectQueued(const Status& why) {
  size_t answered = 0;
  // A task waiting to run again is answered (or given back) as a queued one,
  // and from now on what fails is answered, not retried.
  retries_closed_ = true;
  std::vector<QueuedTask> queued = scheduler_.TakeAll();
  for (QueuedTask& waiting : retry_waits_.TakeAll()) queued.push_back(std::move(waiting));
  for (const QueuedTask& task : queued) {
    if (task.reply.sink && task.reply.sink->GiveBack(task.reply)) {
      ledger_.Forget(task.message.id);
      continue;
    }
    ledger_.End(RejectedResult(task.message.id, task.message.plugin, why), task.reply);
    ++answered;
  }
  return answered;
}

size_t TaskFlow::Room(const std::string& name) const {
  // At most this many at once: enough to fill a large pool in one read.
  constexpr size_t kMaxRoom = 256;
  const LoadedPlugin* plugin = plugins_.Find(name);
  if (!plugin) return 0;
  const Demand demand{plugin->requirement, plugin->task_group, plugin->name};
  // The Redis transport asks on every turn while a read waits: answer "no
  // room" without copying the pool, which is the common case when full.
  if (!pool_.CanAllocate(demand)) return 0;
  ResourcePool trial(pool_);
  size_t fits = 0;
  while (fits < kMaxRoom && trial.TryAllocate(UINT64_MAX - fits, demand)) ++fits;
  // Only this plugin's queued tasks take its room first: the queue of
  // another plugin holds no resources until it starts, and the pass that
  // just ran started whatever of it could start.
  const auto queued = scheduler_.queued_by_plugin().find(name);
  const size_t waiting = queued == scheduler_.queued_by_plugin().end() ? 0 : queued->second;
  return fits > waiting ? fits - waiting : 0;
}

size_t TaskFlow::ReadAhead(const std::string& plugin, size_t room) const {
  const auto mean = mean_run_ms_.find(plugin);
  if (mean == mean_run_ms_.end() || room == 0) return 0;
  const double finished_in_window = static_cast<double>(room) * kReadAheadWindowMs / std::max(mean->second, 1e-3);
  return static_cast<size_t>(std::min(finished_in_window, static_cast<double>(kMaxReadAhead)));
}

void TaskFlow::AbandonRunning(const std::string& why) {
  for (const uint64_t key : running_.keys()) {
    std::unique_ptr<RunningTask> running = running_.Take(key);
    TaskResult result = EndedResult(running->task.message.id, running->task.message.plugin, TaskStatus::kCancelled,
                                    Status(ErrorCode::kCancelled, why));
    result.queued_ms = running->queued_ms;
    result.allocation = running->allocation;
    ledger_.End(result, running->task.reply, key);
  }
}

Status TaskFlow::PrepareReconfigure(const PluginRegistry::ConfigVersion& next) const {
  return ResourcePool(pool_).Reconfigure(Capacity(*next.config));  // a copy: nothing changes
}

void TaskFlow::Reconfigure() {
  worker_specs_.clear();
  (void)pool_.Reconfigure(Capacity(config()));  // PrepareReconfigure tried it on a copy
  queue_settled_ = false;
  scheduler_.set_reserve_after(std::chrono::milliseconds(config().scheduler.reserve_after_ms));
  ledger_.SetDedupLimits(Seconds(config().dedup.window_s), static_cast<size_t>(config().dedup.max_entries));
  plugin_retries_ = AnyPluginRetries(config());
  PrestartWorkers(WorkerStart::kInBackground);
  for (QueuedTask& task : scheduler_.TakeAll()) {
    StatusOr<Demand> demand = MakeDemand(*task.plugin, task.message, config().allow_task_overrides, pool_);
    if (!demand.ok()) {
      const std::string status = "rejected", code(WireCode(demand.status().code()));
      LogTaskScope scope(task.message.plugin, task.message.id, status, code);
      spdlog::info("rejected task '{}' after reload: {}", task.message.id, demand.error());
      ledger_.End(RejectedResult(task.message.id, task.message.plugin, demand.status().Prefixed("after a config reload")),
                  task.reply);
      continue;
    }
    task.demand = std::move(demand).value();
    scheduler_.Enqueue(std::move(task));
  }
}

void TaskFlow::Publish(std::string_view topic, const TaskMessage& task) {
  if (events_.listening()) events_.Publish(topic, EncodeTaskEvent(task.id, task.plugin, task.flow));
}

}  // namespace umi
