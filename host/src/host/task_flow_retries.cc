// TaskFlow's retries (task_flow.h, common/retry_policy.h): whether a failed
// run runs again, its wait (RetryWaits), and its return to the queue.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/log_format.h"
#include "host/task_flow.h"
#include "transport/protocol.h"

namespace umi {

bool TaskFlow::AnyPluginRetries(const HardwareConfig& config) {
  return std::any_of(config.plugins.begin(), config.plugins.end(),
                     [](const auto& plugin) { return plugin.second.retry.has_value(); });
}

const RetryPolicy* TaskFlow::RetryPolicyOf(const TaskMessage& task) const {
  if (task.retry) return &*task.retry;
  if (!plugin_retries_) return nullptr;  // the common case: no lookup per task
  const auto plugin = config().plugins.find(task.plugin);
  return plugin != config().plugins.end() && plugin->second.retry ? &*plugin->second.retry : nullptr;
}

std::optional<std::chrono::milliseconds> TaskFlow::RetryWaitFor(const RetryPolicy& policy, const TaskResult& result) {
  if (retries_closed_) return std::nullopt;  // draining: what fails now is answered
  if (result.status != TaskStatus::kError && result.status != TaskStatus::kTimeout &&
      result.status != TaskStatus::kCrashed) {
    return std::nullopt;
  }
  return NextRetry(policy, result.error_code, result.attempts, jitter_(random_));
}

void TaskFlow::WaitToRetry(QueuedTask task, const std::string& input, const TaskResult& failed,
                           const RetryPolicy& policy, std::chrono::milliseconds wait) {
  ++task.runs;
  task.message.input_msgpack = input;  // the run took it; the next one gets the same
  LogTaskScope scope(task.message.plugin, task.message.id, ToString(failed.status), failed.error_code);
  spdlog::info("task '{}' ({}) ended {}: {}: {}; run {} of {} in {} ms", task.message.id, task.message.plugin,
               ToString(failed.status), failed.error_code, failed.error_message, task.runs + 1, policy.attempts,
               wait.count());
  if (events_.listening()) {
    events_.Publish("task.retrying", EncodeRetryEvent(task.message.id, task.message.plugin, task.runs, wait.count(),
                                                      failed.error_code, failed.error_message));
  }
  std::string last_failure = std::string(ToString(failed.status)) + "/" + failed.error_code;
  retry_waits_.Add(clock_.Now() + wait, std::move(task), std::move(last_failure));
}

std::optional<Clock::TimePoint> TaskFlow::NextRetryDue() const { return retry_waits_.NextDue(); }

void TaskFlow::ReleaseDueRetries() {
  const Clock::TimePoint now = clock_.Now();
  for (QueuedTask& task : retry_waits_.TakeDue(now)) {
    // Queued again as a new arrival: behind what came while it waited.
    task.key = ++last_key_;
    ledger_.Rekey(task.message.id, task.key);
    task.enqueued_at = now;
    Publish("task.queued", task.message);
    scheduler_.Enqueue(std::move(task));
    queue_settled_ = false;
  }
}

}  // namespace umi
