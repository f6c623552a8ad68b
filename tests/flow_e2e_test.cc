// Flows through the real host: a diamond in order with each step's
// upstream outputs, a failure that skips its dependents while an
// independent branch runs, bad flows refused with the reason, a flow id
// sent again, cancel and drain in the middle of a flow.
#include <gtest/gtest.h>
#include <signal.h>

#include <map>

#include "support/flow_checks.h"
#include "support/host_process.h"
#include "support/redis_server.h"
#include "support/wire.h"

namespace umi::testing {
namespace {

HostProcess::Options Options(const std::string& extra = "") {
  return {.config_yaml = R"(hardware:
  cpu: {cores: 4, threads: 4, max_concurrent_tasks: 4}
  memory: {total_gb: 8}
)" + extra,
          .plugin_dirs = {UMI_TEST_INSPECT_PLUGIN_DIR, UMI_TEST_PLUGIN_DIR}};
}

std::vector<FlowStepSpec> Diamond() {
  return {{"probe", {{"mode", "echo"}, {"tag", "p"}}},
          {"thumb", {{"mode", "echo"}, {"tag", "t"}}, {"probe"}},
          {"scenes", {{"mode", "echo"}, {"tag", "s"}}, {"probe"}},
          {"report", {{"mode", "echo"}, {"tag", "r"}}, {"thumb", "scenes"}}};
}

TEST(FlowE2E, ADiamondRunsInOrderAndEachStepGetsItsUpstreamOutputs) {
  HostProcess host(Options());
  EventsClient events(host.context(), host.endpoint("events"));
  AwaitSubscription(host, events);
  host.Send(PackFlow("ingest-42", Diamond()));
  const Result flow = host.NextResult();
  std::map<std::string, Result> steps = ExpectDiamondInOrder(flow, "ingest-42");
  ASSERT_EQ(steps.size(), 4u);
  EXPECT_EQ(EchoedUpstream(steps["thumb"], "probe", "tag"), "p");
  EXPECT_EQ(EchoedUpstream(steps["report"], "thumb", "tag"), "t");
  EXPECT_EQ(EchoedUpstream(steps["report"], "scenes", "tag"), "s");
  // Each step's events name the flow.
  int started = 0;
  while (started < 4) {
    const auto [topic, event] = events.Next();
    if (topic != "task.started" || !event.id || event.id->rfind("ingest-42/", 0) != 0) continue;
    EXPECT_EQ(event.flow, "ingest-42");
    ++started;
  }
}

TEST(FlowE2E, AFailedStepSkipsItsDependentsAndAnIndependentBranchStillRuns) {
  HostProcess host(Options());
  host.Send(PackFlow("f", {{"a", {{"mode", "echo"}, {"fail", "yes"}}},
                           {"b", {{"mode", "echo"}}, {"a"}},
                           {"c", {{"mode", "echo"}}, {"b"}},
                           {"d", {{"mode", "echo"}}}}));
  const Result flow = host.NextResult();
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
}

TEST(FlowE2E, BadFlowsAreRefusedAtOnceWithTheReason) {
  HostProcess host(Options());
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  auto refusal = [&](const std::string& id, const std::vector<FlowStepSpec>& steps) {
    rpc.Send(PackFlow(id, steps));
    const Result result = ParseResult(rpc.Receive());
    EXPECT_EQ(result.id, id);
    EXPECT_EQ(result.status, "rejected");
    return result.error_code + ": " + result.error_message;
  };
  EXPECT_EQ(refusal("cycle", {{"a", {}, {"c"}}, {"b", {}, {"a"}}, {"c", {}, {"b"}}}),
            "bad_request: flow steps form a cycle (each waits for the next): a -> c -> b -> a");
  EXPECT_EQ(refusal("unknown-after", {{"a", {}, {"nope"}}}),
            "bad_request: flow step 'a' comes after 'nope', which is not a step of the flow");
  EXPECT_EQ(refusal("unknown-plugin", {{"a"}, {"b", {}, {"a"}, "no_such_plugin"}}),
            "unknown_plugin: flow step 'b': no plugin named 'no_such_plugin' is loaded");
  EXPECT_EQ(refusal("filled", {{"a", {{"upstream", "mine"}}}}),
            "bad_request: flow step 'a': its input has 'upstream', which the flow fills with the outputs of its "
            "'after' steps");
  std::vector<FlowStepSpec> many;
  for (int i = 0; i <= 10000; ++i) many.push_back({"s" + std::to_string(i)});
  EXPECT_EQ(refusal("huge", many), "bad_request: 'flow' has 10001 steps, at most 10000");
  EXPECT_EQ(refusal("empty", {}), "bad_request: 'flow' has no steps");
}

TEST(FlowE2E, AFlowIdSentAgainGetsTheStoredResultAndOtherStepsAConflict) {
  HostProcess host(Options());
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  rpc.Send(PackFlow("again", Diamond()));
  const std::string first = rpc.Receive();
  ASSERT_EQ(ParseResult(first).status, "ok");
  rpc.Send(PackFlow("again", Diamond()));
  EXPECT_EQ(rpc.Receive(), first) << "the stored result, byte for byte";
  rpc.Send(PackFlow("again", {{"other"}}));
  EXPECT_EQ(ParseResult(rpc.Receive()).error_code, "id_conflict");
  rpc.Send(PackControl("result", "again/report"));
  EXPECT_NE(rpc.Receive().find("finished"), std::string::npos) << "a step is a task: looked up by its id";
}

TEST(FlowE2E, CancellingAFlowCancelsItsRunningStepAndSkipsTheRest) {
  HostProcess host(Options());
  EventsClient events(host.context(), host.endpoint("events"));
  AwaitSubscription(host, events);
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  rpc.Send(PackFlow("stop-me", {{"a", {{"mode", "wait"}}}, {"b", {{"mode", "echo"}}, {"a"}}}));
  while (true) {
    const auto [topic, event] = events.Next();
    if (topic == "task.started" && event.id == "stop-me/a") break;
  }
  rpc.Send(PackControl("result", "stop-me"));
  EXPECT_NE(rpc.Receive().find("running"), std::string::npos);
  rpc.Send(PackControl("cancel", "stop-me"));
  std::optional<Result> flow;
  while (!flow) {  // the cancel's reply and the flow's result, in either order
    const std::string reply = rpc.Receive();
    Result parsed = ParseResult(reply);
    if (parsed.id == "stop-me") flow = parsed;
  }
  EXPECT_EQ(flow->status, "cancelled");
  std::map<std::string, Result> steps = FlowSteps(*flow);
  EXPECT_EQ(steps["a"].status, "cancelled");
  EXPECT_EQ(steps["b"].status, "skipped");
}

TEST(FlowE2E, ADrainLetsTheRunningStepEndAndAnswersTheFlow) {
  HostProcess host(Options("shutdown: {drain_timeout_s: 0.2}\n"));
  EventsClient events(host.context(), host.endpoint("events"));
  AwaitSubscription(host, events);
  host.Send(PackFlow("drained", {{"a", {{"mode", "wait"}}}, {"b", {{"mode", "echo"}}, {"a"}}}));
  while (true) {
    const auto [topic, event] = events.Next();
    if (topic == "task.started" && event.id == "drained/a") break;
  }
  kill(host.pid(), SIGTERM);  // the drain cancels "a" after its timeout; "b" is never released
  const Result flow = host.NextResult();
  EXPECT_EQ(flow.id, "drained");
  EXPECT_EQ(flow.status, "error");
  std::map<std::string, Result> steps = FlowSteps(flow);
  EXPECT_EQ(steps["b"].status, "skipped");
  EXPECT_EQ(host.Stop(), 0);
}

}  // namespace
}  // namespace umi::testing
