#include "host/running_tasks.h"

namespace umi {

TaskRecord RunningTask::Record(double unix_seconds) const {
  TaskRecord record;
  record.id = task.message.id;
  record.plugin = task.message.plugin;
  record.started_at = unix_seconds;
  record.queued_ms = queued_ms;
  record.cpu_cores = allocation.cpu_cores.ToDouble();
  record.cpu_threads = allocation.cpu_threads;
  record.memory_mb = allocation.memory_mb;
  record.cpu_ids = allocation.cpu_ids;
  record.gpu_ids = allocation.gpu_ids;
  record.gpu_share = allocation.gpu_share.ToDouble();
  return record;
}

RunningTask& RunningTasks::Add(uint64_t key, std::unique_ptr<RunningTask> task, std::optional<TimePoint> deadline) {
  if (deadline) deadlines_.Add(key, *deadline);
  return *tasks_.insert_or_assign(key, std::move(task)).first->second;
}

RunningTask* RunningTasks::Find(uint64_t key) {
  const auto found = tasks_.find(key);
  return found == tasks_.end() ? nullptr : found->second.get();
}

std::unique_ptr<RunningTask> RunningTasks::Take(uint64_t key) {
  const auto found = tasks_.find(key);
  if (found == tasks_.end()) return nullptr;
  std::unique_ptr<RunningTask> task = std::move(found->second);
  tasks_.erase(found);
  deadlines_.Remove(key);
  return task;
}

size_t RunningTasks::ExpireDeadlines(TimePoint now) {
  size_t expired = 0;
  for (const uint64_t key : deadlines_.Expired(now)) {
    if (RunningTask* task = Find(key)) {
      task->timed_out = true;
      task->context->Cancel();
      ++expired;
    }
  }
  return expired;
}

void RunningTasks::CancelAll() {
  for (auto& [key, task] : tasks_) task->context->Cancel();
}

std::vector<uint64_t> RunningTasks::keys() const {
  std::vector<uint64_t> keys;
  keys.reserve(tasks_.size());
  for (const auto& [key, task] : tasks_) keys.push_back(key);
  return keys;
}

}  // namespace umi
