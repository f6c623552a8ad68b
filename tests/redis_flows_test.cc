#include "transport/redis_flows.h"

#include <gtest/gtest.h>
#include <msgpack.hpp>

#include <map>
#include <variant>

#include "transport/protocol.h"

namespace umi {
namespace {

using Map = std::map<std::string, msgpack::object>;

FlowMessage Decoded(const std::string& bytes) {
  Message message = DecodeMessage(bytes);
  if (auto* bad = std::get_if<BadMessage>(&message)) ADD_FAILURE() << bad->status.message();
  return std::get<FlowMessage>(std::move(message));
}

// {"v": 1, "id": "f", "flow": {"a": {plugin: echo, input: {x: 1}},
//  "b": {plugin: echo, after: [a], priority: 9}}}
std::string TwoSteps() {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> p(buffer);
  p.pack_map(3);
  p.pack("v").pack(1);
  p.pack("id").pack("f");
  p.pack("flow").pack_map(2);
  p.pack("a").pack_map(2);
  p.pack("plugin").pack("echo");
  p.pack("input").pack(std::map<std::string, int>{{"x", 1}});
  p.pack("b").pack_map(3);
  p.pack("plugin").pack("echo");
  p.pack("after").pack(std::vector<std::string>{"a"});
  p.pack("priority").pack(9);
  return std::string(buffer.data(), buffer.size());
}

// kOpenFlow's hash fields by name, and its root steps (stream -> task).
struct Opening {
  std::map<std::string, std::string> fields;
  std::map<std::string, std::string> roots;
};
Opening Read(const std::vector<std::string>& args) {
  Opening opening;
  const size_t pairs = std::stoul(args.at(0));
  for (size_t i = 0; i < pairs; ++i) opening.fields[args[1 + 2 * i]] = args[2 + 2 * i];
  for (size_t i = 1 + 2 * pairs; i + 1 < args.size(); i += 2) opening.roots[args[i]] = args[i + 1];
  return opening;
}

TEST(RedisFlows, OpeningAddsTheStepsThatWaitForNothingAsTasksOfTheFlow) {
  const Opening opening = Read(redis_flows::OpenArgs(Decoded(TwoSteps()), "replies"));
  EXPECT_EQ(opening.fields.at("reply_to"), "replies");
  EXPECT_EQ(opening.fields.at("left"), "2");
  EXPECT_EQ(opening.fields.at("i:b"), "1");
  EXPECT_EQ(opening.fields.at("w:1"), "1");
  EXPECT_EQ(opening.fields.at("n:0"), "1");
  EXPECT_EQ(opening.fields.at("a:1"), "0");
  EXPECT_EQ(opening.fields.at("q:1"), "umi:tasks:echo:p9") << "a step's stream is its own plugin's, at its priority";
  ASSERT_EQ(opening.roots.size(), 1u);
  const Message root = DecodeMessage(opening.roots.at("umi:tasks:echo"));
  const TaskMessage& task = std::get<TaskMessage>(root);
  EXPECT_EQ(task.id, "f/a");
  EXPECT_EQ(task.flow, "f") << "step_of names the flow";
  const Message waiting = DecodeMessage(opening.fields.at("m:1"));
  EXPECT_EQ(std::get<TaskMessage>(waiting).priority, 9);
}

TEST(RedisFlows, UpstreamJoinsAStepsInputAndTheRestStaysAsItWas) {
  const Opening opening = Read(redis_flows::OpenArgs(Decoded(TwoSteps()), "replies"));
  msgpack::sbuffer upstream;
  msgpack::pack(upstream, std::map<std::string, std::map<std::string, int>>{{"a", {{"y", 2}}}});
  for (const std::string& step : {opening.roots.begin()->second, opening.fields.at("m:1")}) {
    const std::string task = redis_flows::WithUpstream(step, std::string_view(upstream.data(), upstream.size()));
    const Message decoded = DecodeMessage(task);
    ASSERT_TRUE(std::holds_alternative<TaskMessage>(decoded));
    const msgpack::object_handle input = msgpack::unpack(std::get<TaskMessage>(decoded).input_msgpack.data(),
                                                         std::get<TaskMessage>(decoded).input_msgpack.size());
    const Map fields = input.get().as<Map>();
    using Upstream = std::map<std::string, std::map<std::string, int>>;
    EXPECT_EQ(fields.at("upstream").as<Upstream>().at("a").at("y"), 2);
    EXPECT_EQ(std::get<TaskMessage>(decoded).flow, "f");
  }
}

TEST(RedisFlows, AStepsEndCarriesItsOutputWhenOkAndItsFailureWhenNot) {
  TaskResult ok;
  ok.id = "f/a";
  ok.plugin = "echo";
  ok.output_msgpack = "\x81\xa1y\x02";  // {y: 2}
  const std::vector<std::string> ended = redis_flows::EndStepArgs("f", "f/a", EncodeResult(ok, "h"));
  ASSERT_EQ(ended.size(), 5u);
  EXPECT_EQ(ended[0], "a");
  EXPECT_EQ(ended[2], ok.output_msgpack);
  EXPECT_EQ(ended[3], "1");
  const TaskResult failed = EndedResult("f/a", "echo", TaskStatus::kTimeout, Status(ErrorCode::kTimeout, "too slow"));
  const std::vector<std::string> failure = redis_flows::EndStepArgs("f", "f/a", EncodeResult(failed, "h"));
  EXPECT_EQ(failure[2], "");
  EXPECT_EQ(failure[3], "0");
  EXPECT_EQ(failure[4], "step 'a' ended timeout: timeout: too slow");
}

}  // namespace
}  // namespace umi
