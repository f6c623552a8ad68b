#include "common/retry_policy.h"

#include <gtest/gtest.h>

namespace umi {
namespace {

using std::chrono::milliseconds;

RetryPolicy Policy(int attempts, int64_t backoff_ms, int64_t max_backoff_ms, std::vector<std::string> on) {
  RetryPolicy policy;
  policy.attempts = attempts;
  policy.backoff_ms = backoff_ms;
  policy.max_backoff_ms = max_backoff_ms;
  policy.on = std::move(on);
  return policy;
}

TEST(RetryPolicy, TheBackoffDoublesUpToItsCapWithJitterInTheUpperHalf) {
  const RetryPolicy policy = Policy(6, 100, 500, {"timeout"});
  EXPECT_EQ(NextRetry(policy, "timeout", 1, 0.0), milliseconds(50));   // run 2: b = 100, at least b/2
  EXPECT_EQ(NextRetry(policy, "timeout", 1, 0.999), milliseconds(99));
  EXPECT_EQ(NextRetry(policy, "timeout", 2, 0.0), milliseconds(100));  // run 3: b = 200
  EXPECT_EQ(NextRetry(policy, "timeout", 3, 0.0), milliseconds(200));  // run 4: b = 400
  EXPECT_EQ(NextRetry(policy, "timeout", 4, 0.0), milliseconds(250));  // run 5: b = 800, capped at 500
  EXPECT_EQ(NextRetry(policy, "timeout", 5, 0.5), milliseconds(375));
  EXPECT_EQ(NextRetry(policy, "timeout", 6, 0.0), std::nullopt) << "six runs in all";
}

TEST(RetryPolicy, OnlyTheListedCodesRetryAndBadInputNever) {
  const RetryPolicy policy = Policy(3, 10, 10, {"crashed", "busy"});
  EXPECT_TRUE(NextRetry(policy, "busy", 1, 0));
  EXPECT_TRUE(NextRetry(policy, "crashed", 1, 0));
  EXPECT_FALSE(NextRetry(policy, "timeout", 1, 0));
  EXPECT_FALSE(NextRetry(policy, "bad_input", 1, 0));
  EXPECT_FALSE(NextRetry(RetryPolicy{}, "timeout", 1, 0)) << "the default is one run";
}

TEST(RetryPolicy, AHugeRunCountNeitherOverflowsNorPassesTheCap) {
  const RetryPolicy policy = Policy(kMaxRetryAttempts, 1, kMaxBackoffMs, {"timeout"});
  const milliseconds wait = NextRetry(policy, "timeout", kMaxRetryAttempts - 1, 0.999).value();
  EXPECT_GE(wait, milliseconds(kMaxBackoffMs / 2));
  EXPECT_LE(wait, milliseconds(kMaxBackoffMs));
}

TEST(RetryPolicy, ValidateNamesTheField) {
  EXPECT_TRUE(Policy(3, 100, 1000, {"timeout"}).Validate().ok());
  EXPECT_EQ(Policy(0, 100, 1000, {"timeout"}).Validate().message(), "retry.attempts: must be 1..100, got 0");
  EXPECT_EQ(Policy(2, -1, 1000, {"timeout"}).Validate().message(), "retry.backoff_ms: must be 0..86400000, got -1");
  EXPECT_EQ(Policy(2, 100, 50, {"timeout"}).Validate().message(),
            "retry.max_backoff_ms: must be backoff_ms..86400000, got 50");
  EXPECT_EQ(Policy(2, 100, 1000, {}).Validate().message(),
            "retry.on: must name at least one code (the default is [timeout, crashed])");
  EXPECT_EQ(Policy(2, 100, 1000, {"timeout", "bad_input"}).Validate().code(), ErrorCode::kBadRequest);
  EXPECT_NE(Policy(2, 100, 1000, {"bad_input"}).Validate().message().find("bad_input never retries"),
            std::string::npos);
}

}  // namespace
}  // namespace umi
