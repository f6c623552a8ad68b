#include "common/status.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "common/status_or.h"
#include "transport/protocol.h"

namespace umi {
namespace {

TEST(Status, DefaultIsSuccessAndPrefixKeepsTheCode) {
  EXPECT_TRUE(Status().ok());
  const Status failed(ErrorCode::kIoError, "cannot bind");
  EXPECT_FALSE(failed.ok());
  const Status prefixed = failed.Prefixed("tasks socket");
  EXPECT_EQ(prefixed.code(), ErrorCode::kIoError);
  EXPECT_EQ(prefixed.message(), "tasks socket: cannot bind");
  EXPECT_TRUE(Status().Prefixed("x").ok());
}

TEST(Status, StatusOrCarriesAValueOrTheStatus) {
  StatusOr<int> value = 3;
  ASSERT_TRUE(value.ok());
  EXPECT_EQ(value.value(), 3);
  StatusOr<int> error = Status(ErrorCode::kInvalidConfig, "bad key");
  ASSERT_FALSE(error.ok());
  EXPECT_EQ(error.status().code(), ErrorCode::kInvalidConfig);
  EXPECT_EQ(error.error(), "bad key");
}

// Reading an error's value is a bug said at once, with the status; before,
// it read an empty optional (undefined behaviour).
TEST(StatusDeathTest, TheValueOfAnErrorAbortsWithTheStatus) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // re-executes: safe beside sanitizer threads
  const StatusOr<std::string> error = Status(ErrorCode::kInvalidConfig, "bad key");
  EXPECT_DEATH((void)error.value(), "StatusOr::value\\(\\) on an error: bad key");
}

// The one table between codes and the protocol: every code has a word, and
// the words a producer branches on are the documented ones.
TEST(Status, EveryCodeHasOneWireWord) {
  std::set<std::string> words;
  for (int code = 0; code <= static_cast<int>(ErrorCode::kInternal); ++code) {
    const auto word = std::string(WireCode(static_cast<ErrorCode>(code)));
    EXPECT_FALSE(word.empty()) << ErrorCodeName(static_cast<ErrorCode>(code));
    EXPECT_STRNE(ErrorCodeName(static_cast<ErrorCode>(code)), "Unknown");
    words.insert(word);
  }
  for (const char* documented : {"bad_request", "unsupported_version", "unknown_plugin", "infeasible", "queue_full",
                                 "shutting_down", "duplicate_id", "id_conflict", "cancelled", "timeout", "crashed",
                                 "plugin_error", "not_found", "unknown_op", "invalid_config", "max_deliveries"}) {
    EXPECT_EQ(words.count(documented), 1u) << documented;
  }
  EXPECT_EQ(WireCode(ErrorCode::kQueueFull), "queue_full");
}

TEST(Status, ARejectionCarriesTheWireWordAndTheMessage) {
  const TaskResult result = RejectedResult("t1", "probe", Status(ErrorCode::kUnknownPlugin, "no plugin named 'probe'"));
  EXPECT_EQ(result.status, TaskStatus::kRejected);
  EXPECT_EQ(result.error_code, "unknown_plugin");
  EXPECT_EQ(result.error_message, "no plugin named 'probe'");
  EXPECT_EQ(result.id, "t1");
}

}  // namespace
}  // namespace umi
