// ResultCache: the dedup window. The encoded result of each finished task
// is kept by id for `window` (at most `max_entries`, oldest out first), with
// the task's fingerprint, so a retry is answered with the same bytes and
// another task under the same id is told apart (docs/protocol.md).
//
// Time is passed in: tests run it on a virtual clock.
//
// Thread safety: none; the event loop owns it.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <string>
#include <unordered_map>

namespace umi {

class ResultCache {
 public:
  using Clock = std::chrono::steady_clock;
  struct Entry {
    std::string body;  // the encoded result
    Clock::time_point at;
    uint64_t fingerprint = 0;
  };

  // A window of 0 or max_entries of 0 keeps nothing.
  ResultCache(Clock::duration window, size_t max_entries) { SetLimits(window, max_entries); }
  // A config reload may change them; they apply from the next call.
  void SetLimits(Clock::duration window, size_t max_entries) {
    window_ = window;
    max_entries_ = max_entries;
    // Buckets for a full window up front: at 100k tasks/s the table is full
    // within a second, and growing it rehashes every entry each time.
    entries_.reserve(std::min<size_t>(max_entries, size_t{1} << 20));
  }

  void Remember(const std::string& id, std::string body, uint64_t fingerprint, Clock::time_point now);
  // The entry for `id` if it finished within the window, else null (valid
  // until the next call).
  const Entry* Find(const std::string& id, Clock::time_point now);
  size_t size() const { return entries_.size(); }

 private:
  void Expire(Clock::time_point now);

  Clock::duration window_{};
  size_t max_entries_ = 0;
  std::unordered_map<std::string, Entry> entries_;
  std::deque<std::pair<Clock::time_point, std::string>> order_;  // oldest first; stale pairs skipped
};

}  // namespace umi
