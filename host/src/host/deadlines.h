// Deadlines: when each running task with a timeout_ms must be stopped.
// Ordered by time, so the loop finds what expired, and when to wake next,
// without looking at every running task on every turn.
//
// Time is passed in: tests use a virtual clock.
//
// Thread safety: none; the event loop owns it.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <set>
#include <unordered_map>
#include <utility>
#include <vector>

namespace umi {

class Deadlines {
 public:
  using Clock = std::chrono::steady_clock;

  void Add(uint64_t key, Clock::time_point at) {
    Remove(key);
    by_time_.emplace(at, key);
    by_key_.emplace(key, at);
  }

  // The task ended first (or was cancelled): nothing to expire.
  void Remove(uint64_t key) {
    const auto found = by_key_.find(key);
    if (found == by_key_.end()) return;
    by_time_.erase({found->second, key});
    by_key_.erase(found);
  }

  // The tasks whose deadline is at or before `now`, each reported once.
  std::vector<uint64_t> Expired(Clock::time_point now) {
    std::vector<uint64_t> expired;
    while (!by_time_.empty() && by_time_.begin()->first <= now) {
      expired.push_back(by_time_.begin()->second);
      by_key_.erase(by_time_.begin()->second);
      by_time_.erase(by_time_.begin());
    }
    return expired;
  }

  std::optional<Clock::time_point> Next() const {
    if (by_time_.empty()) return std::nullopt;
    return by_time_.begin()->first;
  }

  size_t size() const { return by_key_.size(); }

 private:
  std::set<std::pair<Clock::time_point, uint64_t>> by_time_;
  std::unordered_map<uint64_t, Clock::time_point> by_key_;
};

}  // namespace umi
