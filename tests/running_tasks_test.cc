#include "host/running_tasks.h"

#include <gtest/gtest.h>

#include "common/clock.h"

namespace umi {
namespace {

using std::chrono::milliseconds;

std::unique_ptr<RunningTask> Task(const std::string& id) {
  auto task = std::make_unique<RunningTask>();
  task->task.message.id = id;
  task->context = std::make_shared<UMI_Context>(id, "noop", std::string("\x80", 1), Allocation{});
  return task;
}

TEST(RunningTasks, ATimeoutCancelsOnlyAtItsDeadlineOnAVirtualClock) {
  ManualClock clock;
  RunningTasks running;
  running.Add(1, Task("a"), clock.Now() + milliseconds(500));
  running.Add(2, Task("b"), std::nullopt);
  EXPECT_EQ(running.NextDeadline(), clock.Now() + milliseconds(500));

  clock.Advance(milliseconds(499));
  EXPECT_EQ(running.ExpireDeadlines(clock.Now()), 0u);
  EXPECT_FALSE(running.Find(1)->context->cancelled());

  clock.Advance(milliseconds(1));
  EXPECT_EQ(running.ExpireDeadlines(clock.Now()), 1u);
  EXPECT_TRUE(running.Find(1)->timed_out);
  EXPECT_TRUE(running.Find(1)->context->cancelled());
  EXPECT_FALSE(running.Find(2)->timed_out);
  EXPECT_FALSE(running.Find(2)->context->cancelled()) << "a task without timeout_ms runs on";
  EXPECT_EQ(running.ExpireDeadlines(clock.Now() + std::chrono::hours(1)), 0u) << "each deadline fires once";
}

TEST(RunningTasks, ATaskThatEndsFirstTakesItsDeadlineWithIt) {
  ManualClock clock;
  RunningTasks running;
  running.Add(7, Task("a"), clock.Now() + milliseconds(100));
  std::unique_ptr<RunningTask> ended = running.Take(7);
  ASSERT_NE(ended, nullptr);
  EXPECT_EQ(ended->task.message.id, "a");
  EXPECT_TRUE(running.empty());
  EXPECT_FALSE(running.NextDeadline());
  clock.Advance(milliseconds(200));
  EXPECT_EQ(running.ExpireDeadlines(clock.Now()), 0u);
  EXPECT_FALSE(ended->context->cancelled());
  EXPECT_EQ(running.Take(7), nullptr) << "answered once";
}

TEST(RunningTasks, CancelAllAsksEveryTaskToStop) {
  RunningTasks running;
  running.Add(1, Task("a"), std::nullopt);
  running.Add(2, Task("b"), std::nullopt);
  running.CancelAll();
  for (const uint64_t key : running.keys()) EXPECT_TRUE(running.Find(key)->context->cancelled()) << key;
  EXPECT_EQ(running.size(), 2u) << "cancelled tasks stay until their run reports back";
}

}  // namespace
}  // namespace umi
