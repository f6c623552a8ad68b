// Scheduling through the real host: head-of-line blocking, priorities,
// starvation, cancellation, backpressure and drain.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <sstream>

#include "support/host_process.h"
#include "support/wire.h"

namespace umi::testing {
namespace {

std::string SmallPool(const std::string& extra = "") {
  return R"(hardware:
  cpu: {cores: 4, threads: 4, max_concurrent_tasks: 4}
  memory: {total_gb: 8}
allow_task_overrides: true
)" + extra;
}

std::map<std::string, std::string> AsMap(const std::string& reply) {
  const auto handle = msgpack::unpack(reply.data(), reply.size());
  std::map<std::string, std::string> out;
  for (const auto& [key, value] : handle.get().as<std::map<std::string, msgpack::object>>()) {
    if (value.type == msgpack::type::STR) out[key] = value.as<std::string>();
    if (value.type == msgpack::type::BOOLEAN) out[key] = value.as<bool>() ? "true" : "false";
  }
  return out;
}

// Sends on one DEALER and waits for the health reply that follows: one
// connection is ordered, so every task before it has been accepted. Task
// results that arrive meanwhile are returned.
std::vector<Result> Fence(RpcClient& rpc) {
  rpc.Send(PackControl("health"));
  std::vector<Result> early;
  while (true) {
    Result r = ParseResult(rpc.Receive());
    if (!r.id) return early;
    early.push_back(std::move(r));
  }
}

TEST(SchedulingE2E, ASmallTaskOvertakesABlockedBigOne) {
  HostProcess host({.config_yaml = SmallPool()});
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  rpc.Send(PackTask({.id = "hog", .plugin = "sleep", .input = {{"ms", 600000}}, .resources = {{"cpu_threads", 3}}}));
  rpc.Send(PackTask({.id = "blocked", .plugin = "sleep", .input = {{"ms", 1}}, .resources = {{"cpu_threads", 4}}}));
  rpc.Send(PackTask({.id = "small", .plugin = "sleep", .input = {{"ms", 1}}, .resources = {{"cpu_threads", 1}}}));
  // "small" finishes while "hog" holds 3 of 4 threads and "blocked" waits.
  const Result small = ParseResult(rpc.Receive());
  EXPECT_EQ(small.id, "small");
  EXPECT_EQ(small.status, "ok");
  rpc.Send(PackControl("cancel", "hog"));
  std::map<std::string, Result> rest;
  while (rest.size() < 2) {
    Result r = ParseResult(rpc.Receive());
    if (r.id) rest[*r.id] = r;
  }
  EXPECT_EQ(rest["hog"].status, "cancelled");
  EXPECT_EQ(rest["blocked"].status, "ok");
  EXPECT_LT(*small.finished_at, *rest["blocked"].started_at);
}

TEST(SchedulingE2E, HigherPriorityStartsFirst) {
  // One task at a time, so the order results arrive in is the order tasks started.
  HostProcess host({.config_yaml = R"(hardware:
  cpu: {cores: 4, threads: 4, max_concurrent_tasks: 1}
  memory: {total_gb: 8}
allow_task_overrides: true
)"});
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  rpc.Send(PackTask({.id = "hog", .plugin = "sleep", .input = {{"ms", 600000}}, .resources = {{"cpu_threads", 4}}}));
  ASSERT_TRUE(Fence(rpc).empty());  // "hog" runs before the others arrive
  rpc.Send(PackTask({.id = "low", .plugin = "noop", .priority = 0}));
  rpc.Send(PackTask({.id = "high", .plugin = "noop", .priority = 10}));
  rpc.Send(PackTask({.id = "low2", .plugin = "noop", .priority = 0}));
  ASSERT_TRUE(Fence(rpc).empty());
  rpc.Send(PackControl("cancel", "hog"));
  EXPECT_EQ(AsMap(rpc.Receive())["state"], "running");
  std::vector<std::string> order;
  while (order.size() < 4) {
    const Result r = ParseResult(rpc.Receive());
    if (r.id) order.push_back(*r.id);
  }
  EXPECT_EQ(order, (std::vector<std::string>{"hog", "high", "low", "low2"}));
}

TEST(SchedulingE2E, CancelEndsQueuedAndRunningTasks) {
  HostProcess host({.config_yaml = SmallPool()});
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  rpc.Send(PackTask({.id = "run", .plugin = "sleep", .input = {{"ms", 600000}}, .resources = {{"cpu_threads", 4}}}));
  rpc.Send(PackTask({.id = "wait", .plugin = "sleep", .input = {{"ms", 1}}, .resources = {{"cpu_threads", 4}}}));
  ASSERT_TRUE(Fence(rpc).empty());

  rpc.Send(PackControl("cancel", "wait"));
  const Result queued = ParseResult(rpc.Receive());  // the task's result comes first
  EXPECT_EQ(queued.id, "wait");
  EXPECT_EQ(queued.status, "cancelled");
  EXPECT_FALSE(queued.started_at.has_value());
  EXPECT_EQ(AsMap(rpc.Receive())["state"], "queued");

  rpc.Send(PackControl("cancel", "run"));
  EXPECT_EQ(AsMap(rpc.Receive())["state"], "running");
  const Result running = ParseResult(rpc.Receive());
  EXPECT_EQ(running.id, "run");
  EXPECT_EQ(running.status, "cancelled");
  EXPECT_TRUE(running.started_at.has_value());

  rpc.Send(PackControl("cancel", "nope"));
  const std::string missing = rpc.Receive();
  EXPECT_EQ(AsMap(missing)["ok"], "false");
  EXPECT_NE(missing.find("not_found"), std::string::npos);
}

TEST(SchedulingE2E, AResultRequestFindsATaskQueuedRunningFinishedOrUnknown) {
  HostProcess host({.config_yaml = SmallPool()});
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  rpc.Send(PackTask({.id = "done", .plugin = "noop"}));
  const std::string sent_result = rpc.Receive();
  rpc.Send(PackTask({.id = "run", .plugin = "sleep", .input = {{"ms", 600000}}, .resources = {{"cpu_threads", 4}}}));
  rpc.Send(PackTask({.id = "wait", .plugin = "sleep", .input = {{"ms", 1}}, .resources = {{"cpu_threads", 4}}}));
  ASSERT_TRUE(Fence(rpc).empty());

  auto lookup = [&](const std::string& id) {
    rpc.Send(PackControl("result", id));
    return rpc.Receive();
  };
  EXPECT_EQ(AsMap(lookup("run"))["state"], "running");
  EXPECT_EQ(AsMap(lookup("wait"))["state"], "queued");
  EXPECT_EQ(AsMap(lookup("never-sent"))["state"], "unknown");
  const std::string finished = lookup("done");
  EXPECT_EQ(AsMap(finished)["state"], "finished");
  EXPECT_EQ(AsMap(finished)["task"], "done");
  // The stored result is the one that was sent, byte for byte, as a map value.
  const auto handle = msgpack::unpack(finished.data(), finished.size());
  const auto fields = handle.get().as<std::map<std::string, msgpack::object>>();
  ASSERT_EQ(fields.at("result").type, msgpack::type::MAP);
  std::stringstream repacked;
  msgpack::pack(repacked, fields.at("result"));
  EXPECT_EQ(repacked.str(), sent_result);
  EXPECT_EQ(ParseResult(repacked.str()).status, "ok");

  rpc.Send(PackControl("result"));
  const std::string no_id = rpc.Receive();
  EXPECT_EQ(AsMap(no_id)["ok"], "false");
  EXPECT_NE(no_id.find("needs the task's id"), std::string::npos);
}

TEST(SchedulingE2E, ABigTaskIsNotStarvedByAnEndlessStreamOfSmallOnes) {
  HostProcess host({.config_yaml = SmallPool("scheduler: {reserve_after_ms: 200}\n")});
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  int sent = 0;
  auto send_small = [&] {
    rpc.Send(PackTask({.id = "s" + std::to_string(sent++), .plugin = "sleep", .input = {{"ms", 50}},
                       .resources = {{"cpu_threads", 1}}}));
  };
  for (int i = 0; i < 8; ++i) send_small();  // 4 run, 4 wait: the pool never drains by itself
  rpc.Send(PackTask({.id = "big", .plugin = "sleep", .input = {{"ms", 1}}, .resources = {{"cpu_threads", 4}}}));
  // Replace every finished small task; without a reservation "big" would never start.
  std::optional<Result> big;
  for (int finished = 0; !big; ++finished) {
    ASSERT_LT(finished, 2000) << "the 4-thread task was starved";
    Result r = ParseResult(rpc.Receive());
    if (r.id == "big") {
      big = r;
    } else {
      send_small();
    }
  }
  EXPECT_EQ(big->status, "ok");
}

TEST(SchedulingE2E, AFullQueuePushesBackWithoutLosingTasks) {
  HostProcess host({.config_yaml = SmallPool("scheduler: {max_queued: 2}\n")});
  for (int i = 0; i < 40; ++i) {
    host.Send(PackTask({.id = "t" + std::to_string(i), .plugin = "sleep", .input = {{"ms", 5}},
                        .resources = {{"cpu_threads", 4}}}));
  }
  std::set<std::string> ok;
  for (const Result& r : host.Results(40)) {
    EXPECT_EQ(r.status, "ok") << r.error_message;
    ok.insert(r.id.value_or(""));
  }
  EXPECT_EQ(ok.size(), 40u);
}

TEST(SchedulingE2E, DrainRequestFinishesRunningAndAnswersQueued) {
  HostProcess host({.config_yaml = SmallPool()});
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  rpc.Send(PackTask({.id = "run", .plugin = "sleep", .input = {{"ms", 500}}, .resources = {{"cpu_threads", 4}}}));
  rpc.Send(PackTask({.id = "q1", .plugin = "noop"}));
  rpc.Send(PackTask({.id = "q2", .plugin = "noop"}));
  // noop needs a thread too: both wait behind "run".
  ASSERT_TRUE(Fence(rpc).empty());
  rpc.Send(PackControl("drain"));
  std::map<std::string, Result> results;
  bool drain_acknowledged = false;
  while (results.size() < 3 || !drain_acknowledged) {
    Result r = ParseResult(rpc.Receive());
    if (r.id) {
      results[*r.id] = r;
    } else {
      drain_acknowledged = true;
    }
  }
  EXPECT_EQ(results["run"].status, "ok") << results["run"].error_code << ": " << results["run"].error_message;
  EXPECT_EQ(results["q1"].error_code, "shutting_down");
  EXPECT_EQ(results["q2"].error_code, "shutting_down");
  EXPECT_EQ(host.Stop(), 0);
}

}  // namespace
}  // namespace umi::testing
