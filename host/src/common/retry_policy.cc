#include "common/retry_policy.h"

#include <algorithm>

namespace umi {

Status RetryPolicy::Validate() const {
  auto bad = [](std::string what) { return Status(ErrorCode::kBadRequest, "retry." + std::move(what)); };
  if (attempts < 1 || attempts > kMaxRetryAttempts) {
    return bad("attempts: must be 1.." + std::to_string(kMaxRetryAttempts) + ", got " + std::to_string(attempts));
  }
  if (backoff_ms < 0 || backoff_ms > kMaxBackoffMs) {
    return bad("backoff_ms: must be 0.." + std::to_string(kMaxBackoffMs) + ", got " + std::to_string(backoff_ms));
  }
  if (max_backoff_ms < backoff_ms || max_backoff_ms > kMaxBackoffMs) {
    return bad("max_backoff_ms: must be backoff_ms.." + std::to_string(kMaxBackoffMs) + ", got " +
               std::to_string(max_backoff_ms));
  }
  if (on.empty()) return bad("on: must name at least one code (the default is [timeout, crashed])");
  for (const std::string& code : on) {
    if (code.empty()) return bad("on: a code is empty");
    if (code == "bad_input") return bad("on: bad_input never retries (the same input fails the same way)");
  }
  return {};
}

std::optional<std::chrono::milliseconds> NextRetry(const RetryPolicy& policy, std::string_view code, int runs,
                                                   double jitter) {
  if (runs >= policy.attempts || code == "bad_input") return std::nullopt;
  if (std::find(policy.on.begin(), policy.on.end(), code) == policy.on.end()) return std::nullopt;
  // backoff_ms x 2^(runs-1), capped; doubling stops once past the cap, so no overflow.
  int64_t full = policy.backoff_ms;
  for (int run = 1; run < runs && full < policy.max_backoff_ms; ++run) full *= 2;
  full = std::min(full, policy.max_backoff_ms);
  const double drawn = static_cast<double>(full) * (0.5 + 0.5 * std::clamp(jitter, 0.0, 1.0));
  return std::chrono::milliseconds(static_cast<int64_t>(drawn));
}

}  // namespace umi
