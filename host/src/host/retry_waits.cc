#include "host/retry_waits.h"

namespace umi {

void RetryWaits::Add(Clock::TimePoint due, QueuedTask task, std::string last_failure) {
  waiting_.emplace(due, Waiting{std::move(task), std::move(last_failure)});
}

std::optional<Clock::TimePoint> RetryWaits::NextDue() const {
  if (waiting_.empty()) return std::nullopt;
  return waiting_.begin()->first;
}

std::vector<QueuedTask> RetryWaits::TakeDue(Clock::TimePoint now) {
  std::vector<QueuedTask> due;
  while (!waiting_.empty() && waiting_.begin()->first <= now) {
    due.push_back(std::move(waiting_.begin()->second.task));
    waiting_.erase(waiting_.begin());
  }
  return due;
}

std::optional<RetryWaits::Waiting> RetryWaits::Take(uint64_t key) {
  for (auto wait = waiting_.begin(); wait != waiting_.end(); ++wait) {
    if (wait->second.task.key != key) continue;
    Waiting taken = std::move(wait->second);
    waiting_.erase(wait);
    return taken;
  }
  return std::nullopt;
}

std::vector<QueuedTask> RetryWaits::TakeAll() {
  std::vector<QueuedTask> all;
  for (auto& [due, waiting] : waiting_) all.push_back(std::move(waiting.task));
  waiting_.clear();
  return all;
}

}  // namespace umi
