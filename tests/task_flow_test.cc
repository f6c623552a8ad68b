// TaskFlow on a virtual clock with real worker threads: a task goes from
// Accept to exactly one answer on its route, timeouts fire when the clock
// says so, and a drain answers what waits.
#include "host/task_flow.h"

#include <gtest/gtest.h>
#include <poll.h>

#include <msgpack.hpp>

#include "support/recording_sink.h"
#include "transport/protocol.h"

namespace umi {
namespace {

using std::chrono::milliseconds;

// Runs until cancelled: only the flow's timeout or cancel ends it.
UMI_Error* WaitForCancel(UMI_Context* context) {
  context->WaitCancelled(60000);
  return nullptr;
}
UMI_Error* Noop(UMI_Context*) { return nullptr; }

std::map<std::string, msgpack::object> Decoded(const std::string& bytes, msgpack::object_handle& handle) {
  handle = msgpack::unpack(bytes.data(), bytes.size());
  return handle.get().as<std::map<std::string, msgpack::object>>();
}

class TaskFlowTest : public ::testing::Test {
 protected:
  static HardwareConfig Config() {
    HardwareConfig config;
    config.hardware.cpu.cores = 2;
    config.hardware.cpu.threads = 2;
    config.hardware.cpu.max_concurrent_tasks = 1;
    return config;
  }

  void SetUp() override {
    for (auto [name, execute] : {std::pair{"noop", &Noop}, std::pair{"wait", &WaitForCancel}}) {
      auto plugin = std::make_unique<LoadedPlugin>();
      plugin->name = name;
      plugin->declared.cpu_cores = Quantity::Whole(1);
      plugin->declared.cpu_threads = 1;
      plugin->execute = execute;
      ASSERT_TRUE(plugins_.Register(std::move(plugin)).ok());
    }
  }

  TaskMessage Task(const std::string& id, const std::string& plugin, int64_t timeout_ms = 0) {
    TaskMessage task;
    task.id = id;
    task.plugin = plugin;
    task.input_msgpack = std::string("\x80", 1);
    task.timeout_ms = timeout_ms;
    return task;
  }

  // Waits for the Executor's mail (a real event) and hands it to the flow.
  void AwaitAnswers(size_t count) {
    while (sink_.sent.size() < count) {
      pollfd mail{flow_.mail_fd(), POLLIN, 0};
      ASSERT_EQ(poll(&mail, 1, 60000), 1) << "no mail within a minute";
      flow_.HandleMail();
      flow_.StartRunnable();
    }
  }

  std::string StatusOf(size_t answer) {
    msgpack::object_handle handle;
    return Decoded(sink_.sent.at(answer), handle).at("status").as<std::string>();
  }

  ManualClock clock_;
  RecordingSink sink_;
  ReplyRoute route_{&sink_, false, {}};
  Telemetry telemetry_{"h"};
  HardwareConfig config_ = Config();
  PluginRegistry plugins_{config_};
  TaskFlow flow_{TaskFlowOptions{"h", {}, milliseconds(100), {}}, clock_, plugins_, telemetry_, sink_, [] {}};
};

TEST_F(TaskFlowTest, AnAcceptedTaskRunsAndIsAnsweredOnceOnItsRoute) {
  flow_.Accept(Task("a", "noop"), route_, /*serving=*/true);
  EXPECT_EQ(flow_.queued(), 1u);
  flow_.StartRunnable();
  EXPECT_EQ(flow_.running(), 1u);
  AwaitAnswers(1);
  EXPECT_EQ(StatusOf(0), "ok");
  EXPECT_EQ(flow_.running(), 0u);
  EXPECT_EQ(flow_.usage().cpu_tasks_running, 0) << "the grant is released";
  flow_.Accept(Task("a", "noop"), route_, true);
  EXPECT_EQ(sink_.sent.size(), 2u);
  EXPECT_EQ(sink_.sent[1], sink_.sent[0]) << "a retry within the window gets the same bytes, not a second run";
  EXPECT_EQ(flow_.queued(), 0u);
}

TEST_F(TaskFlowTest, ATimeoutFiresWhenTheVirtualClockPassesIt) {
  flow_.Accept(Task("slow", "wait", /*timeout_ms=*/500), route_, true);
  flow_.StartRunnable();
  clock_.Advance(milliseconds(499));
  flow_.ExpireDeadlines();
  pollfd mail{flow_.mail_fd(), POLLIN, 0};
  EXPECT_EQ(poll(&mail, 1, 0), 0) << "still running before its deadline";
  clock_.Advance(milliseconds(1));
  flow_.ExpireDeadlines();
  AwaitAnswers(1);
  EXPECT_EQ(StatusOf(0), "timeout");
}

TEST_F(TaskFlowTest, ADrainAnswersQueuedTasksAndCancelFindsEachState) {
  flow_.Accept(Task("running", "wait"), route_, true);
  flow_.Accept(Task("queued-1", "noop"), route_, true);  // max_concurrent_tasks: 1, so these wait
  flow_.Accept(Task("queued-2", "noop"), route_, true);
  flow_.StartRunnable();
  EXPECT_EQ(flow_.Cancel("queued-1"), TaskFlow::CancelState::kQueued);
  EXPECT_EQ(StatusOf(0), "cancelled");
  EXPECT_EQ(flow_.Cancel("nobody"), TaskFlow::CancelState::kNotFound);
  EXPECT_EQ(flow_.RejectQueued(Status(ErrorCode::kShuttingDown, "draining")), 1u);
  EXPECT_EQ(StatusOf(1), "rejected");
  flow_.Accept(Task("late", "noop"), route_, /*serving=*/false);
  EXPECT_EQ(StatusOf(2), "rejected") << "a draining host takes nothing new";
  EXPECT_EQ(flow_.Cancel("running"), TaskFlow::CancelState::kRunning);
  AwaitAnswers(4);
  EXPECT_EQ(StatusOf(3), "cancelled");
}

// What a pulling transport may take: what can start now, less what waits.
TEST_F(TaskFlowTest, RoomIsWhatCanStartNowBesideTheQueue) {
  EXPECT_EQ(flow_.Room("noop"), 1u) << "max_concurrent_tasks: 1";
  EXPECT_EQ(flow_.Room("missing"), 0u);
  flow_.Accept(Task("q", "noop"), route_, true);
  EXPECT_EQ(flow_.Room("noop"), 0u) << "the queued task takes the one slot";
  flow_.StartRunnable();
  EXPECT_EQ(flow_.Room("noop"), 0u) << "running now";
  AwaitAnswers(1);
  EXPECT_EQ(flow_.Room("wait"), 1u) << "free again once it ended";
}

// Read-ahead: nothing for a plugin that never ran here (its tasks may be
// long: the pull stays fair); for a no-op plugin, what its slots finish in
// the window, capped.
TEST_F(TaskFlowTest, ReadAheadFollowsThePluginsRecentRunTime) {
  EXPECT_EQ(flow_.ReadAhead("noop", 8), 0u) << "not timed yet";
  flow_.Accept(Task("timed", "noop"), route_, true);
  flow_.StartRunnable();
  AwaitAnswers(1);
  EXPECT_GE(flow_.ReadAhead("noop", 8), 8u) << "a no-op task takes far less than the 2 ms window";
  EXPECT_LE(flow_.ReadAhead("noop", 8), TaskFlow::kMaxReadAhead);
  EXPECT_EQ(flow_.ReadAhead("noop", 0), 0u) << "no room, no read";
  EXPECT_EQ(flow_.ReadAhead("wait", 8), 0u) << "another plugin's time says nothing of this one";
}

}  // namespace
}  // namespace umi
