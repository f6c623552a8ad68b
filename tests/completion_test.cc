#include "host/completion.h"

#include <gtest/gtest.h>

namespace umi {
namespace {

TaskMessage Task() {
  TaskMessage task;
  task.id = "t";
  task.plugin = "probe";
  task.timeout_ms = 250;
  return task;
}

TaskResult Complete(RunOutcome outcome) { return CompleteRun(Task(), Allocation{}, std::move(outcome)); }

TEST(Completion, APlainRunIsOkWithItsOutputAndTimes) {
  const TaskResult r = Complete({.output_msgpack = std::string("\x81\xa1x\x01", 4), .queued_ms = 1, .run_ms = 2,
                                 .started_at = 10, .finished_at = 11});
  EXPECT_EQ(r.status, TaskStatus::kOk);
  EXPECT_EQ(r.output_msgpack.size(), 4u);
  EXPECT_EQ(r.id, "t");
  EXPECT_EQ(r.run_ms, 2);
  EXPECT_EQ(r.started_at, 10);
  EXPECT_TRUE(r.allocation.has_value());
}

TEST(Completion, WhatTheHostDidComesBeforeWhatThePluginSaid) {
  EXPECT_EQ(Complete({.cancel_requested = true, .timed_out = true, .error_code = "corrupt"}).error_code, "cancelled");
  const TaskResult timeout = Complete({.timed_out = true, .killed = true, .error_code = "corrupt"});
  EXPECT_EQ(timeout.status, TaskStatus::kTimeout);
  EXPECT_EQ(timeout.error_message, "ran past timeout_ms=250; its worker process was killed after the grace period");
  const TaskResult drained = Complete({.drain_cancelled = true, .crashed = true});
  EXPECT_EQ(drained.status, TaskStatus::kCancelled);
  EXPECT_NE(drained.error_message.find("drain timeout"), std::string::npos);
}

TEST(Completion, CrashesErrorsAndBadOutput) {
  const TaskResult crashed = Complete({.crashed = true, .error_code = "crashed", .error_message = "died of signal 9"});
  EXPECT_EQ(crashed.status, TaskStatus::kCrashed);
  EXPECT_EQ(crashed.error_message, "died of signal 9");
  EXPECT_EQ(Complete({.crashed = true}).error_message, "the plugin's worker process died");
  const TaskResult error = Complete({.error_code = "corrupt", .error_message = "bad file"});
  EXPECT_EQ(error.status, TaskStatus::kError);
  EXPECT_EQ(error.error_code, "corrupt");
  const TaskResult not_a_map = Complete({.output_msgpack = std::string("\x93\x01\x02\x03", 4)});
  EXPECT_EQ(not_a_map.error_code, "plugin_error");
  EXPECT_TRUE(not_a_map.output_msgpack.empty());
}

TEST(Completion, OutputMustBeExactlyOneWholeMap) {
  auto status_of = [](std::string output) { return Complete({.output_msgpack = std::move(output)}).status; };
  EXPECT_EQ(status_of(std::string("\x80", 1)), TaskStatus::kOk);
  EXPECT_EQ(status_of(std::string("\x81\xa1k\x81\xa1n\x92\x01\xc0", 9)), TaskStatus::kOk);  // {k: {n: [1, nil]}}
  EXPECT_EQ(status_of(std::string("\xde\x00\x01\xa1k\x02", 6)), TaskStatus::kOk);               // map16
  EXPECT_EQ(status_of(std::string("\x82\xa1k\x01", 4)), TaskStatus::kError);   // a pair short
  EXPECT_EQ(status_of(std::string("\x80\x80", 2)), TaskStatus::kError);         // trailing bytes
  EXPECT_EQ(status_of(std::string("\x81\xa1k\xc1", 4)), TaskStatus::kError);   // 0xc1 is never valid
  EXPECT_EQ(status_of(std::string("\xa1k", 2)), TaskStatus::kError);             // a string, not a map
}

}  // namespace
}  // namespace umi
