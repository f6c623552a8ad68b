// FlowRunner and CheckFlowGraph without a host: steps released in order
// with their upstream outputs, failures skipping dependents, cancel, the
// drain, and the graph checks.
#include "host/flow_runner.h"

#include <gtest/gtest.h>

#include <msgpack.hpp>

#include <map>

#include "support/recording_sink.h"
#include "transport/protocol.h"

namespace umi {
namespace {

FlowMessage Flow(const std::string& id, const std::vector<std::pair<std::string, std::vector<std::string>>>& steps) {
  FlowMessage flow;
  flow.id = id;
  for (const auto& [name, after] : steps) {
    FlowStep step;
    step.name = name;
    step.after = after;
    step.task.id = id + "/" + name;
    step.task.plugin = "p";
    step.task.input_msgpack = std::string("\x80", 1);
    step.task.flow = id;
    flow.steps.push_back(std::move(step));
  }
  return flow;
}

std::map<std::string, msgpack::object> Map(const std::string& bytes, msgpack::object_handle& handle) {
  handle = msgpack::unpack(bytes.data(), bytes.size());
  return handle.get().as<std::map<std::string, msgpack::object>>();
}

class FlowRunnerTest : public ::testing::Test {
 protected:
  // Pumps; records what was submitted (step id -> input) and the route to answer it on.
  void Pump(bool serving = true) {
    runner_.Pump(
        [this](TaskMessage step, ReplyRoute route) {
          submitted_.push_back(step.id);
          inputs_[step.id] = step.input_msgpack;
          routes_[step.id] = std::move(route);
        },
        [this](const TaskResult& result, const ReplyRoute&, uint64_t) { results_.push_back(result); }, serving);
  }
  // The step's answer, as the ledger would send it.
  void Answer(const std::string& id, TaskStatus status, const std::string& output = "\x81\xa1x\x01") {
    TaskResult result;
    result.id = id;
    result.plugin = "p";
    result.status = status;
    result.output_msgpack = output;
    if (status != TaskStatus::kOk) result.error_code = "boom";
    const ReplyRoute& route = routes_.at(id);
    route.sink->Send(EncodeResult(result, "h"), route, nullptr);
  }

  ManualClock clock_;
  FlowRunner runner_{clock_};
  RecordingSink client_;
  std::vector<std::string> submitted_;
  std::map<std::string, std::string> inputs_;
  std::map<std::string, ReplyRoute> routes_;
  std::vector<TaskResult> results_;
};

TEST_F(FlowRunnerTest, ADiamondReleasesEachStepWhenItsUpstreamEndedOk) {
  runner_.Start(Flow("f", {{"a", {}}, {"b", {"a"}}, {"c", {"a"}}, {"d", {"b", "c"}}}), {&client_, false, {}}, 7);
  Pump();
  EXPECT_EQ(submitted_, (std::vector<std::string>{"f/a"}));
  Answer("f/a", TaskStatus::kOk);
  Pump();
  EXPECT_EQ(submitted_, (std::vector<std::string>{"f/a", "f/b", "f/c"}));
  Answer("f/b", TaskStatus::kOk);
  Pump();
  EXPECT_EQ(submitted_.size(), 3u) << "d waits for c too";
  Answer("f/c", TaskStatus::kOk);
  Pump();
  ASSERT_EQ(submitted_.back(), "f/d");
  msgpack::object_handle handle;
  const auto input = Map(inputs_["f/d"], handle);
  const auto upstream = input.at("upstream").as<std::map<std::string, std::map<std::string, int>>>();
  EXPECT_EQ(upstream.at("b").at("x"), 1);
  EXPECT_EQ(upstream.at("c").at("x"), 1);
  EXPECT_TRUE(results_.empty());
  Answer("f/d", TaskStatus::kOk);
  Pump();
  ASSERT_EQ(results_.size(), 1u);
  EXPECT_EQ(results_[0].status, TaskStatus::kOk);
  EXPECT_FALSE(runner_.has("f"));
}

TEST_F(FlowRunnerTest, AFailureSkipsEveryDependentButNotAnIndependentStep) {
  runner_.Start(Flow("f", {{"a", {}}, {"b", {"a"}}, {"c", {"b"}}, {"d", {}}}), {&client_, false, {}}, 7);
  Pump();
  Answer("f/a", TaskStatus::kError);
  Pump();
  EXPECT_TRUE(results_.empty()) << "d still runs";
  Answer("f/d", TaskStatus::kOk);
  Pump();
  ASSERT_EQ(results_.size(), 1u);
  EXPECT_EQ(results_[0].status, TaskStatus::kError);
  EXPECT_EQ(results_[0].error_code, "step_failed");
  EXPECT_EQ(submitted_, (std::vector<std::string>{"f/a", "f/d"}));
  msgpack::object_handle handle;
  const auto steps = Map(results_[0].output_msgpack, handle).at("steps").as<std::map<std::string, msgpack::object>>();
  const auto skipped = steps.at("c").as<std::map<std::string, msgpack::object>>();
  EXPECT_EQ(skipped.at("status").as<std::string>(), "skipped");
}

TEST_F(FlowRunnerTest, CancelSkipsWhatWaitsAndNamesWhatRuns) {
  runner_.Start(Flow("f", {{"a", {}}, {"b", {"a"}}}), {&client_, false, {}}, 7);
  Pump();
  EXPECT_EQ(runner_.Cancel("f"), (std::vector<std::string>{"f/a"}));
  EXPECT_TRUE(runner_.Cancel("nope").empty());
  Answer("f/a", TaskStatus::kCancelled);
  Pump();
  ASSERT_EQ(results_.size(), 1u);
  EXPECT_EQ(results_[0].status, TaskStatus::kCancelled);
  EXPECT_EQ(submitted_.size(), 1u);
}

TEST_F(FlowRunnerTest, DrainingReleasesNothingAndEndsTheFlow) {
  runner_.Start(Flow("f", {{"a", {}}, {"b", {"a"}}}), {&client_, false, {}}, 7);
  Pump();
  Answer("f/a", TaskStatus::kOk);
  Pump(/*serving=*/false);
  ASSERT_EQ(results_.size(), 1u);
  EXPECT_EQ(results_[0].status, TaskStatus::kError);
  EXPECT_EQ(submitted_.size(), 1u);
}

TEST(CheckFlowGraph, UnknownNamesSelfReferencesAndCyclesAreNamed) {
  EXPECT_TRUE(CheckFlowGraph(Flow("f", {{"a", {}}, {"b", {"a"}}})).ok());
  EXPECT_EQ(CheckFlowGraph(Flow("f", {{"a", {"a"}}})).message(), "flow step 'a' names itself in 'after'");
  EXPECT_EQ(CheckFlowGraph(Flow("f", {{"a", {"z"}}})).message(),
            "flow step 'a' comes after 'z', which is not a step of the flow");
  EXPECT_EQ(CheckFlowGraph(Flow("f", {{"a", {}}, {"b", {"a", "c"}}, {"c", {"b"}}})).message(),
            "flow steps form a cycle (each waits for the next): b -> c -> b");
}

TEST(CheckFlowGraph, ALongChainNeedsNoDeepStack) {
  std::vector<std::pair<std::string, std::vector<std::string>>> chain = {{"s0", {}}};
  for (int i = 1; i < 10000; ++i) chain.push_back({"s" + std::to_string(i), {"s" + std::to_string(i - 1)}});
  EXPECT_TRUE(CheckFlowGraph(Flow("f", chain)).ok());
}

}  // namespace
}  // namespace umi
