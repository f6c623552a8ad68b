#include "host/task_ledger.h"

#include <gtest/gtest.h>

#include <vector>

#include "support/recording_sink.h"
#include "transport/protocol.h"

namespace umi {
namespace {

using std::chrono::seconds;

class TaskLedgerTest : public ::testing::Test {
 protected:
  TaskResult Ok(const std::string& id) {
    TaskResult result;
    result.id = id;
    result.plugin = "noop";
    result.output_msgpack = std::string("\x80", 1);
    return result;
  }

  ManualClock clock_;
  RecordingSink sink_;
  ReplyRoute route_{&sink_, false, {}};
  Telemetry telemetry_{"h"};
  TaskLedger ledger_{"h", clock_, telemetry_, sink_, seconds(60), 100};
};

TEST_F(TaskLedgerTest, AnEndedTaskIsSentOnceRememberedAndNoLongerActive) {
  ledger_.Accepted("a", 7, {42});
  EXPECT_TRUE(ledger_.active("a"));
  EXPECT_EQ(ledger_.KeyOf("a"), 7u);
  ledger_.End(Ok("a"), route_, 7);
  EXPECT_FALSE(ledger_.active("a"));
  EXPECT_EQ(ledger_.KeyOf("a"), 0u);
  ASSERT_EQ(sink_.sent.size(), 1u);
  const ResultCache::Entry* stored = ledger_.finished("a", clock_.Now());
  ASSERT_NE(stored, nullptr);
  EXPECT_EQ(stored->body, sink_.sent.front()) << "a retry gets the same bytes";
  EXPECT_EQ(stored->fingerprint, (TaskFingerprint{42}));
  clock_.Advance(seconds(61));
  EXPECT_EQ(ledger_.finished("a", clock_.Now()), nullptr) << "the window ends with its time";
}

// The bug the e2e collector test once found: refusing a duplicate of a
// running task erased the running task's entry.
TEST_F(TaskLedgerTest, ARefusalLeavesTheActiveTaskOfThatIdAlone) {
  ledger_.Accepted("a", 7, {42});
  ledger_.Refuse(RejectedResult("a", "noop", Status(ErrorCode::kDuplicateId, "already running")), route_);
  EXPECT_TRUE(ledger_.active("a"));
  EXPECT_EQ(ledger_.finished("a", clock_.Now()), nullptr) << "a rejection is not a stored result";
  EXPECT_EQ(sink_.sent.size(), 1u);
}

TEST_F(TaskLedgerTest, FinishedEventsGoOnlyToListeners) {
  ledger_.Accepted("a", 1, {});
  ledger_.End(Ok("a"), route_, 1);
  EXPECT_TRUE(sink_.published.empty());
  sink_.subscribed = true;
  ledger_.Accepted("b", 2, {});
  ledger_.End(Ok("b"), route_, 2);
  EXPECT_EQ(sink_.published, std::vector<std::string>{"task.finished"});
}

}  // namespace
}  // namespace umi
