// RetryPolicy: whether a task that failed runs again, and after how long.
//
// A task's own `retry` (protocol v1, optional) or else its plugin's
// (`plugins.<name>.retry` in the config) applies. A run that ended `error`,
// `timeout` or `crashed` with a code listed in `on` runs again, up to
// `attempts` runs in all, after an exponential backoff with jitter: run n
// (n >= 2) waits a uniform draw in [b/2, b], b = min(backoff_ms x 2^(n-2),
// max_backoff_ms), so retries of many tasks that failed together spread out.
// `bad_input` never retries: the same input fails the same way.
//
// Thread safety: a value type; the functions are pure.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace umi {

inline constexpr int kMaxRetryAttempts = 100;
inline constexpr int64_t kMaxBackoffMs = 86'400'000;  // a day

struct RetryPolicy {
  int attempts = 1;                // runs in all, the first included (1: no retry); 1..100
  int64_t backoff_ms = 1000;       // the wait before the second run; doubles for each run after
  int64_t max_backoff_ms = 60000;  // where the doubling stops
  std::vector<std::string> on = {"timeout", "crashed"};  // the codes that retry
  friend bool operator==(const RetryPolicy&, const RetryPolicy&) = default;

  // kBadRequest naming the field when a value is out of range, `on` is
  // empty or names bad_input.
  Status Validate() const;
};

// The wait before the next run of a task whose run number `runs` (1 for the
// first) just ended with `code`, or none when it does not run again.
// `jitter` is a uniform draw in [0, 1).
std::optional<std::chrono::milliseconds> NextRetry(const RetryPolicy& policy, std::string_view code, int runs,
                                                   double jitter);

}  // namespace umi
