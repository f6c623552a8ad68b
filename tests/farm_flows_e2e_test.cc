// Flows in a farm of real umi-host processes on a real redis-server: a
// flow's steps run on whichever host has room for them, in order, each with
// its upstream steps' outputs; a failure skips its dependents across hosts;
// a host killed mid-flow costs only the step it was running; a second copy
// of a running flow is refused; each flow gets exactly one result, and its
// state leaves Redis with it.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <map>

#include <umi/redis_client.hpp>

#include "support/flow_checks.h"
#include "support/host_process.h"
#include "support/redis_server.h"
#include "support/wire.h"

namespace umi::testing {
namespace {

HostProcess::Options FlowHost(const RedisServer& redis, const std::string& name, int slots) {
  HostProcess::Options options = FarmHost(redis, name, R"(hardware:
  cpu: {cores: 4, threads: 4, max_concurrent_tasks: )" + std::to_string(slots) + R"(}
  memory: {total_gb: 8}
)");
  options.plugin_dirs = {UMI_TEST_INSPECT_PLUGIN_DIR, UMI_TEST_PLUGIN_DIR};
  return options;
}

// The flow has its one result and nothing of it is left in Redis.
void ExpectEndedOnce(RedisClient& producer, const std::string& flow_id) {
  EXPECT_EQ(producer.Command({"EXISTS", "umi:flow:" + flow_id})->integer, 0) << "the flow's state left with it";
  EXPECT_EQ(producer.Command({"XLEN", "umi:results"})->integer, 1) << "one result for the flow, nothing for its steps";
  EXPECT_EQ(producer.Pending("umi:tasks:faulty"), 0);
}

}  // namespace

TEST(FarmFlows, ADiamondsStepsRunOnSeveralHostsInOrderWithTheirUpstreamOutputs) {
  RedisServer redis;
  // One task at a time per host: the two middle steps, released together,
  // can only run side by side on two hosts.
  HostProcess a(FlowHost(redis, "host-a", 1));
  HostProcess b(FlowHost(redis, "host-b", 1));
  HostProcess c(FlowHost(redis, "host-c", 1));
  RedisClient producer(redis.url());
  producer.Submit("faulty", PackFlow("spread", {{"probe", {{"mode", "echo"}, {"tag", "p"}}},
                                                {"thumb", {{"mode", "echo"}, {"tag", "t"}}, {"probe"}, "faulty",
                                                 {{"sleep_ms", 400}}},
                                                {"scenes", {{"mode", "echo"}, {"tag", "s"}}, {"probe"}, "faulty",
                                                 {{"sleep_ms", 400}}},
                                                {"report", {{"mode", "echo"}, {"tag", "r"}}, {"thumb", "scenes"}}}));
  const Result flow = producer.Results(1).at(0);
  std::map<std::string, Result> steps = ExpectDiamondInOrder(flow, "spread");
  ASSERT_EQ(steps.size(), 4u);
  // The flow's own times hold its steps (the result is put together in Redis).
  ASSERT_TRUE(flow.started_at && flow.finished_at);
  EXPECT_LE(*flow.started_at, *steps["probe"].started_at);
  EXPECT_GE(*flow.finished_at, *steps["report"].finished_at);
  EXPECT_GE(flow.run_ms, 400) << "two levels of the diamond slept 400 ms side by side";
  EXPECT_FALSE(flow.host.empty());
  EXPECT_NE(steps["thumb"].host, steps["scenes"].host);
  EXPECT_TRUE(Overlap(steps["thumb"], steps["scenes"]));
  EXPECT_EQ(EchoedUpstream(steps["thumb"], "probe", "tag"), "p");
  EXPECT_EQ(EchoedUpstream(steps["scenes"], "probe", "tag"), "p");
  EXPECT_EQ(EchoedUpstream(steps["report"], "thumb", "tag"), "t");
  EXPECT_EQ(EchoedUpstream(steps["report"], "scenes", "tag"), "s");
  ExpectEndedOnce(producer, "spread");
  EXPECT_EQ(producer.Command({"EXISTS", "umi:result:spread"})->integer, 1) << "kept for lookups by id";
  EXPECT_EQ(producer.Command({"EXISTS", "umi:result:spread/thumb"})->integer, 1) << "and each step, as any task";
}

TEST(FarmFlows, AFailedStepSkipsItsDependentsWhileAnIndependentBranchRunsOn) {
  RedisServer redis;
  HostProcess a(FlowHost(redis, "host-a", 2));
  HostProcess b(FlowHost(redis, "host-b", 2));
  RedisClient producer(redis.url());
  producer.Submit("faulty", PackFlow("f", {{"a", {{"mode", "echo"}, {"fail", "yes"}}},
                                           {"b", {{"mode", "echo"}}, {"a"}},
                                           {"c", {{"mode", "echo"}}, {"b"}},
                                           {"d", {{"mode", "echo"}}}}));
  const Result flow = producer.Results(1).at(0);
  EXPECT_EQ(flow.status, "error");
  EXPECT_EQ(flow.error_code, "step_failed");
  EXPECT_EQ(flow.error_message, "step 'a' ended error: asked_to_fail: failed as asked");
  std::map<std::string, Result> steps = FlowSteps(flow);
  EXPECT_EQ(steps["a"].status, "error");
  EXPECT_EQ(steps["b"].status, "skipped");
  EXPECT_EQ(steps["b"].error_code, "upstream_failed");
  EXPECT_EQ(steps["c"].status, "skipped");
  EXPECT_EQ(steps["d"].status, "ok");
  EXPECT_FALSE(steps["b"].started_at.has_value()) << "a skipped step never ran";
  ExpectEndedOnce(producer, "f");
}

TEST(FarmFlows, AHostKilledMidFlowCostsOnlyTheStepItWasRunning) {
  RedisServer redis;
  RedisClient producer(redis.url());
  auto doomed = std::make_unique<HostProcess>(FlowHost(redis, "doomed", 4));
  EventsClient events(doomed->context(), doomed->endpoint("events"));
  AwaitSubscription(*doomed, events);
  producer.Submit("sleep", PackFlow("survives", {{"a", {{"mode", "echo"}}, {}, "faulty"},
                                                 {"b", {}, {"a"}, "sleep", {{"ms", 1500}}},
                                                 {"c", {{"mode", "echo"}}, {"b"}, "faulty"}}));
  AwaitStarted(events, 1, "survives/b");  // "a" ended, "b" runs: the host dies mid-flow
  kill(doomed->pid(), SIGKILL);
  waitpid(doomed->pid(), nullptr, 0);

  HostProcess survivor(FlowHost(redis, "survivor", 4));
  const Result flow = producer.Results(1).at(0);
  EXPECT_EQ(flow.id, "survives");
  EXPECT_EQ(flow.status, "ok") << flow.error_message;
  std::map<std::string, Result> steps = FlowSteps(flow);
  ASSERT_EQ(steps.size(), 3u);
  EXPECT_EQ(steps["a"].host, "doomed") << "a step that ended is not run again";
  EXPECT_EQ(steps["b"].host, "survivor") << "the step the dead host held is claimed as any task";
  EXPECT_EQ(steps["c"].host, "survivor");
  ExpectEndedOnce(producer, "survives");
  EXPECT_EQ(producer.Pending("umi:tasks:sleep"), 0);
}

TEST(FarmFlows, ASecondCopyOfARunningFlowIsRefusedAndTheFirstEndsOnce) {
  RedisServer redis;
  HostProcess host(FlowHost(redis, "host", 2));
  RedisClient producer(redis.url());
  const std::string flow = PackFlow("twice", {{"slow", {{"mode", "echo"}}, {}, "faulty", {{"sleep_ms", 500}}}});
  producer.Submit("faulty", flow);
  producer.Submit("faulty", flow);
  std::map<std::string, Result> by_status;
  for (const Result& result : producer.Results(2)) by_status[result.status] = result;
  ASSERT_EQ(by_status.size(), 2u);
  EXPECT_EQ(by_status["rejected"].error_code, "duplicate_id");
  EXPECT_EQ(by_status["rejected"].error_message, "a flow with id 'twice' is already running in the farm");
  EXPECT_EQ(by_status["ok"].id, "twice");
  EXPECT_EQ(producer.Command({"EXISTS", "umi:flow:twice"})->integer, 0);
}

TEST(FarmFlows, AFlowIdAnsweredByOneHostIsAnsweredByAnotherFromRedis) {
  RedisServer redis;
  RedisClient producer(redis.url());
  const std::string flow = PackFlow("ingest-7", {{"probe", {{"mode", "echo"}}}, {"report", {{"mode", "echo"}}, {"probe"}}});
  auto first = std::make_unique<HostProcess>(FlowHost(redis, "first", 2));
  producer.Submit("faulty", flow);
  const Result ran = producer.Results(1).at(0);
  ASSERT_EQ(ran.status, "ok") << ran.error_message;
  first.reset();

  HostProcess second(FlowHost(redis, "second", 2));
  producer.Submit("faulty", flow);
  producer.Submit("faulty", PackFlow("ingest-7", {{"probe", {{"mode", "echo"}}}}));
  std::map<std::string, Result> by_status;
  for (const Result& r : producer.Results(2)) by_status[r.status] = r;
  EXPECT_EQ(by_status["ok"].host, "first") << "the stored result, not a second run";
  EXPECT_EQ(by_status["ok"].finished_at, ran.finished_at);
  EXPECT_EQ(by_status["rejected"].error_code, "id_conflict");
}

// A flow spread over the farm is on no one host: cancel on any host's rpc
// socket marks it cancelled in Redis. The running step ends as it ends, the
// steps not yet released end cancelled, and the flow's one result says so.
TEST(FarmFlows, CancellingAFarmFlowOnAnyHostEndsItCancelled) {
  RedisServer redis;
  HostProcess runner(FlowHost(redis, "runner", 2));
  HostProcess other(FarmHost(redis, "other"));  // without the faulty plugin: runs none of the flow
  EventsClient events(runner.context(), runner.endpoint("events"));
  AwaitSubscription(runner, events);
  RedisClient producer(redis.url());
  producer.Submit("faulty", PackFlow("stop-me", {{"a", {{"mode", "echo"}}, {}, "faulty", {{"sleep_ms", 800}}},
                                                 {"b", {{"mode", "echo"}}, {"a"}},
                                                 {"c", {{"mode", "echo"}}, {"b"}}}));
  AwaitStarted(events, 1, "stop-me/a");
  RpcClient rpc(other.context(), other.endpoint("rpc"));
  rpc.Send(PackControl("cancel", "stop-me"));
  EXPECT_NE(rpc.Receive().find("running"), std::string::npos);
  rpc.Send(PackControl("cancel", "no-such-flow"));
  EXPECT_NE(rpc.Receive().find("not_found"), std::string::npos);

  const Result flow = producer.Results(1).at(0);
  EXPECT_EQ(flow.status, "cancelled");
  EXPECT_EQ(flow.error_code, "cancelled");
  std::map<std::string, Result> steps = FlowSteps(flow);
  EXPECT_EQ(steps["a"].status, "ok") << "a running step ends as it ends";
  EXPECT_EQ(steps["b"].status, "skipped");
  EXPECT_EQ(steps["b"].error_code, "cancelled");
  EXPECT_EQ(steps["c"].error_code, "cancelled");
  ExpectEndedOnce(producer, "stop-me");
}

// Hosts with different plugins: a flow read by a host that lacks one of its
// steps' plugins is taken when another live host offers it, and that step
// runs there; a plugin no live host offers is refused at once.
TEST(FarmFlows, AStepOnlyAnotherHostCanRunRunsThere) {
  RedisServer redis;
  HostProcess::Options faulty_only = FarmHost(redis, "faulty-host", TestConfigYaml());
  faulty_only.plugin_dirs = {UMI_TEST_INSPECT_PLUGIN_DIR};  // faulty, no sleep
  HostProcess faulty_host(faulty_only);
  HostProcess sleep_host(FarmHost(redis, "sleep-host"));  // sleep, no faulty: it reads the flow
  RedisClient producer(redis.url());
  producer.Submit("sleep", PackFlow("mixed", {{"nap", {}, {}, "sleep", {{"ms", 1}}},
                                              {"echo", {{"mode", "echo"}}, {"nap"}, "faulty"}}));
  producer.Submit("sleep", PackFlow("nowhere", {{"nap", {}, {}, "sleep", {{"ms", 1}}},
                                                {"ghost", {}, {"nap"}, "no_such_plugin"}}));
  std::map<std::string, Result> by_id;
  for (const Result& r : producer.Results(2)) by_id[r.id.value_or("")] = r;
  ASSERT_EQ(by_id["mixed"].status, "ok") << by_id["mixed"].error_message;
  std::map<std::string, Result> steps = FlowSteps(by_id["mixed"]);
  EXPECT_EQ(steps["nap"].host, "sleep-host");
  EXPECT_EQ(steps["echo"].host, "faulty-host");
  EXPECT_EQ(by_id["nowhere"].status, "rejected");
  EXPECT_EQ(by_id["nowhere"].error_code, "unknown_plugin");
  EXPECT_NE(by_id["nowhere"].error_message.find("no live host of the farm offers it"), std::string::npos)
      << by_id["nowhere"].error_message;
}

}  // namespace umi::testing
