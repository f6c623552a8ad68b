// RunningTasks: the tasks that hold a grant and run on the Executor, by key,
// with their timeouts. The loop adds a task when it starts it and takes it
// out when its run is reported finished; in between it may mark it
// cancelled (the `cancel` op), timed out (ExpireDeadlines) or ask all of
// them to stop (a drain past its timeout).
//
// Time is passed in: tests use a virtual clock.
//
// Thread safety: none; the event loop owns it. Cancel() on a task's context
// is the one call that reaches the task's thread (task_context.h).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "host/deadlines.h"
#include "runtime/task_context.h"
#include "scheduling/scheduler.h"
#include "telemetry/telemetry.h"

namespace umi {

struct RunningTask {
  QueuedTask task;
  Allocation allocation;
  std::shared_ptr<UMI_Context> context;
  double queued_ms = 0;
  bool timed_out = false;
  bool cancel_requested = false;
  // When its last task.progress event went out (TaskFlow coalesces them).
  std::optional<std::chrono::steady_clock::time_point> progress_published;

  // Its line in the telemetry timeline, started at `unix_seconds`.
  TaskRecord Record(double unix_seconds) const;
};

class RunningTasks {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  // `deadline`: when it times out; none: never.
  RunningTask& Add(uint64_t key, std::unique_ptr<RunningTask> task, std::optional<TimePoint> deadline);
  RunningTask* Find(uint64_t key);
  // Removes the task (and its deadline); null if `key` is not running.
  std::unique_ptr<RunningTask> Take(uint64_t key);

  // Marks every task whose deadline is at or before `now` timed out and
  // asks it to stop; returns how many.
  size_t ExpireDeadlines(TimePoint now);
  std::optional<TimePoint> NextDeadline() const { return deadlines_.Next(); }
  // Asks every running task to stop (a drain past its timeout, a second signal).
  void CancelAll();

  std::vector<uint64_t> keys() const;
  size_t size() const { return tasks_.size(); }
  bool empty() const { return tasks_.empty(); }

 private:
  std::unordered_map<uint64_t, std::unique_ptr<RunningTask>> tasks_;
  Deadlines deadlines_;
};

}  // namespace umi
