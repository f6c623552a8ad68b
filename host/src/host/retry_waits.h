// RetryWaits: the tasks that failed and wait to run again (their retry
// policy, common/retry_policy.h), each until its backoff has passed. A
// waiting task holds no grant and sits in no queue; TaskFlow queues it
// again when it is due (TakeDue, from a Poller timer), or ends it when it
// is cancelled (Take) or the host drains (TakeAll).
//
// Thread safety: none; the event loop owns it.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "scheduling/scheduler.h"

namespace umi {

class RetryWaits {
 public:
  struct Waiting {
    QueuedTask task;
    std::string last_failure;  // "timeout/timeout", "error/busy": for a cancel's or a drain's answer
  };

  void Add(Clock::TimePoint due, QueuedTask task, std::string last_failure);
  // When the earliest is due; none when nothing waits.
  std::optional<Clock::TimePoint> NextDue() const;
  // Every task due at `now`, earliest first.
  std::vector<QueuedTask> TakeDue(Clock::TimePoint now);
  // The task with this key, if it waits here.
  std::optional<Waiting> Take(uint64_t key);
  std::vector<QueuedTask> TakeAll();
  size_t size() const { return waiting_.size(); }

 private:
  std::multimap<Clock::TimePoint, Waiting> waiting_;  // by when each is due
};

}  // namespace umi
