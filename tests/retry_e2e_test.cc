// Retries with backoff through the real host: a task's own `retry`, a
// plugin's from the config, the codes that retry and those that never do,
// the queue moving on while a task waits, cancel during the wait, a run
// queued again as a new arrival.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>

#include "support/host_process.h"
#include "support/redis_server.h"
#include "support/wire.h"

namespace umi::testing {
namespace {

using Clock = std::chrono::steady_clock;

std::string OneAtATime(const std::string& plugins = "") {
  return R"(hardware:
  cpu: {cores: 4, threads: 4, max_concurrent_tasks: 1}
  memory: {total_gb: 8}
)" + (plugins.empty() ? "" : "plugins:\n" + plugins);
}

// The test plugins (faulty) and the diag ones (noop).
HostProcess::Options Options(const std::string& yaml) {
  return {.config_yaml = yaml, .plugin_dirs = {UMI_TEST_INSPECT_PLUGIN_DIR, UMI_TEST_PLUGIN_DIR}};
}

TaskSpec Flaky(const std::string& id, const TempDir& dir, int64_t fail_times) {
  return {.id = id, .plugin = "faulty", .input = {{"fail_times", fail_times}},
          .string_input = {{"mode", "flaky"}, {"runs_file", (dir.path() / id).string()}}};
}

int64_t Runs(const TempDir& dir, const std::string& id) {
  return static_cast<int64_t>(std::filesystem::file_size(dir.path() / id));
}

TEST(RetryE2E, AFlakyTaskRunsAgainAfterItsBackoffUntilOk) {
  HostProcess host(Options(OneAtATime()));
  TempDir dir;
  TaskSpec task = Flaky("flaky", dir, 2);
  task.retry = {{"attempts", 3}, {"backoff_ms", 200}};
  task.retry_on = {"busy"};
  const auto sent = Clock::now();
  host.Send(PackTask(task));
  const Result result = host.NextResult();
  const auto elapsed = Clock::now() - sent;
  EXPECT_EQ(result.status, "ok") << result.error_message;
  EXPECT_EQ(result.attempts, 3);
  EXPECT_EQ(Runs(dir, "flaky"), 3);
  // Run 2 waits at least 100 ms (half of 200), run 3 at least 200 (half of 400).
  EXPECT_GE(elapsed, std::chrono::milliseconds(300));
}

TEST(RetryE2E, TheLastFailureComesBackWhenEveryAttemptFails) {
  HostProcess host(Options(OneAtATime()));
  TempDir dir;
  TaskSpec task = Flaky("hopeless", dir, 100);
  task.retry = {{"attempts", 3}, {"backoff_ms", 10}};
  task.retry_on = {"busy"};
  host.Send(PackTask(task));
  const Result result = host.NextResult();
  EXPECT_EQ(result.status, "error");
  EXPECT_EQ(result.error_code, "busy");
  EXPECT_EQ(result.error_message, "flaky run 3");
  EXPECT_EQ(result.attempts, 3);
  EXPECT_EQ(Runs(dir, "hopeless"), 3);
}

TEST(RetryE2E, ACodeNotListedAndBadInputAreAnsweredAtOnce) {
  HostProcess host(Options(OneAtATime()));
  TempDir dir;
  TaskSpec other_code = Flaky("other", dir, 5);
  other_code.retry = {{"attempts", 5}, {"backoff_ms", 10}};  // on: the default, timeout and crashed
  TaskSpec bad_input = Flaky("bad", dir, 5);
  bad_input.string_input["code"] = "bad_input";
  bad_input.retry = {{"attempts", 5}, {"backoff_ms", 10}};
  bad_input.retry_on = {"busy"};
  host.Send(PackTask(other_code));
  host.Send(PackTask(bad_input));
  for (const Result& result : host.Results(2)) {
    EXPECT_EQ(result.status, "error");
    EXPECT_EQ(result.attempts, 1) << *result.id;
  }
  EXPECT_EQ(Runs(dir, "other"), 1);
  EXPECT_EQ(Runs(dir, "bad"), 1);
}

TEST(RetryE2E, APluginsRetryFromTheConfigRunsACrashedTaskOnAFreshWorker) {
  HostProcess host(Options(OneAtATime(R"(  faulty:
    isolation: process
    sandbox: false  # it counts its runs in the test's directory
    retry: {attempts: 2, backoff_ms: 20}
)")));
  TempDir dir;
  TaskSpec task = Flaky("crashy", dir, 1);
  task.string_input["how"] = "segv";
  host.Send(PackTask(task));
  const Result result = host.NextResult();
  EXPECT_EQ(result.status, "ok") << result.error_message;
  EXPECT_EQ(result.attempts, 2);
  // A task of another plugin has no policy: no attempts in its result.
  host.Send(PackTask({.id = "plain", .plugin = "noop"}));
  EXPECT_FALSE(host.NextResult().attempts.has_value());
}

TEST(RetryE2E, TheQueueMovesOnWhileATaskWaitsToRunAgain) {
  HostProcess host(Options(OneAtATime()));
  TempDir dir;
  TaskSpec flaky = Flaky("waits", dir, 1);
  flaky.retry = {{"attempts", 2}, {"backoff_ms", 2000}};
  flaky.retry_on = {"busy"};
  host.Send(PackTask(flaky));
  host.Send(PackTask({.id = "next", .plugin = "noop"}));
  // One task at a time: "next" can only run while "waits" holds no slot.
  const Result first = host.NextResult();
  const Result second = host.NextResult();
  EXPECT_EQ(first.id, "next");
  EXPECT_EQ(second.id, "waits");
  EXPECT_EQ(second.status, "ok");
  EXPECT_LT(*first.finished_at, *second.started_at);
}

TEST(RetryE2E, ACancelDuringTheWaitEndsTheTaskAndARetryingEventSaysWhen) {
  HostProcess host(Options(OneAtATime()));
  EventsClient events(host.context(), host.endpoint("events"));
  AwaitSubscription(host, events);
  TempDir dir;
  TaskSpec task = Flaky("cancelled", dir, 5);
  task.retry = {{"attempts", 5}, {"backoff_ms", 60000}};
  task.retry_on = {"busy"};
  host.Send(PackTask(task));
  while (true) {
    const auto [topic, event] = events.Next();
    if (topic != "task.retrying") continue;
    EXPECT_EQ(event.id, "cancelled");
    EXPECT_EQ(event.error_code, "busy");
    break;
  }
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  rpc.Send(PackControl("result", "cancelled"));
  EXPECT_NE(rpc.Receive().find("queued"), std::string::npos) << "waiting to run again counts as queued";
  rpc.Send(PackControl("cancel", "cancelled"));
  EXPECT_NE(rpc.Receive().find("queued"), std::string::npos);
  const Result result = host.NextResult();
  EXPECT_EQ(result.status, "cancelled");
  EXPECT_EQ(result.attempts, 1);
  EXPECT_NE(result.error_message.find("while it waited to run again (run 1 ended error/busy)"), std::string::npos)
      << result.error_message;
  EXPECT_EQ(Runs(dir, "cancelled"), 1);
}

// A run that waited its backoff while the only slot was taken: it is queued
// again as a new arrival. Returns once it is queued behind `behind`, with
// `holder` (a long sleep) in the slot.
void RequeueBehind(HostProcess& host, EventsClient& events, const TempDir& dir) {
  TaskSpec again = Flaky("again", dir, 1);
  again.retry = {{"attempts", 2}, {"backoff_ms", 200}};
  again.retry_on = {"busy"};
  host.Send(PackTask(again));
  auto await = [&](const std::string& topic, const std::string& id) {
    while (true) {
      const auto [got, event] = events.Next();
      if (got == topic && event.id == id) return;
    }
  };
  await("task.retrying", "again");
  host.Send(PackTask({.id = "holder", .plugin = "sleep", .input = {{"ms", 600000}}}));
  await("task.started", "holder");
  host.Send(PackTask({.id = "behind", .plugin = "noop"}));
  await("task.queued", "behind");
  await("task.queued", "again");
}

// A host where "again" is queued again behind "behind", "holder" running.
class RequeuedRun : public ::testing::Test {
 protected:
  RequeuedRun() {
    AwaitSubscription(host, events);
    RequeueBehind(host, events, dir);
  }
  HostProcess host{Options(OneAtATime())};
  EventsClient events{host.context(), host.endpoint("events")};
  TempDir dir;
  RpcClient rpc{host.context(), host.endpoint("rpc")};
};

// Before: the run kept its first arrival's place and went ahead of "behind".
TEST_F(RequeuedRun, ARunQueuedAgainAfterItsBackoffGoesBehindWhatCameMeanwhile) {
  rpc.Send(PackControl("cancel", "holder"));
  EXPECT_NE(rpc.Receive().find("running"), std::string::npos);
  EXPECT_EQ(host.NextResult().id, "holder");
  const Result first = host.NextResult();
  const Result second = host.NextResult();
  EXPECT_EQ(first.id, "behind");
  EXPECT_EQ(second.id, "again");
  EXPECT_EQ(second.status, "ok");
  EXPECT_EQ(second.attempts, 2);
}

// The queued run is found by its id (its ledger entry follows its new place).
TEST_F(RequeuedRun, ARunQueuedAgainIsCancelledWhereItWaits) {
  rpc.Send(PackControl("cancel", "again"));
  EXPECT_NE(rpc.Receive().find("queued"), std::string::npos);
  const Result cancelled = host.NextResult();
  EXPECT_EQ(cancelled.id, "again");
  EXPECT_EQ(cancelled.status, "cancelled");
  EXPECT_EQ(Runs(dir, "again"), 1);
  rpc.Send(PackControl("cancel", "holder"));
  EXPECT_NE(rpc.Receive().find("running"), std::string::npos);
  EXPECT_EQ(host.NextResult().id, "holder");
  EXPECT_EQ(host.NextResult().id, "behind");
}

TEST(RetryE2E, ABadRetryIsRefusedNamingTheField) {
  HostProcess host(Options(OneAtATime()));
  TaskSpec task{.id = "bad-retry", .plugin = "noop"};
  task.retry = {{"attempts", 3}, {"backof_ms", 10}};
  host.Send(PackTask(task));
  const Result unknown_key = host.NextResult();
  EXPECT_EQ(unknown_key.error_code, "bad_request");
  EXPECT_EQ(unknown_key.error_message,
            "'retry.backof_ms' is not a retry setting (known: attempts, backoff_ms, max_backoff_ms, on)");
  task.id = "bad-on";
  task.retry = {{"attempts", 3}};
  task.retry_on = {"bad_input"};
  host.Send(PackTask(task));
  EXPECT_EQ(host.NextResult().error_message,
            "retry.on: bad_input never retries (the same input fails the same way)");
}

}  // namespace
}  // namespace umi::testing
