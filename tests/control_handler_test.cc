#include "host/control_handler.h"

#include <gtest/gtest.h>
#include <msgpack.hpp>

namespace umi {
namespace {

TEST(ControlHandler, RoutesByOpAndNamesTheKnownOnesForAnUnknownOne) {
  ControlHandler handler;
  std::string seen_id;
  handler.Add("cancel", [&](const ControlRequest& request) {
    seen_id = request.id;
    return EncodeCancelReply("queued");
  });
  handler.Add("health", [](const ControlRequest&) { return EncodeHealthReply(false, "h", 1); });
  EXPECT_EQ(handler.Handle({"cancel", "t-1"}),
            WithStringField(WithStringField(EncodeCancelReply("queued"), "op", "cancel"), "task", "t-1"));
  EXPECT_EQ(seen_id, "t-1");
  const std::string unknown = handler.Handle({"bogus", ""});
  const auto reply = msgpack::unpack(unknown.data(), unknown.size());
  const auto fields = reply.get().as<std::map<std::string, msgpack::object>>();
  EXPECT_FALSE(fields.at("ok").as<bool>());
  const auto error = fields.at("error").as<std::map<std::string, std::string>>();
  EXPECT_EQ(error.at("code"), "unknown_op");
  EXPECT_EQ(error.at("message"), "unknown op 'bogus' (known: cancel, health)");
}

// A reply says which request it answers (its op, and the task it named):
// a client with several in flight matches them. Not as `id`, which would
// pass for a task's result on the rpc socket. Before: nothing.
TEST(ControlHandler, AReplySaysWhichRequestItAnswers) {
  ControlHandler handler;
  handler.Add("health", [](const ControlRequest&) { return EncodeHealthReply(false, "h", 3); });
  for (const ControlRequest& request : {ControlRequest{"health", "probe-7"}, ControlRequest{"bogus", "probe-8"}}) {
    const std::string bytes = handler.Handle(request);
    const auto reply = msgpack::unpack(bytes.data(), bytes.size());
    const auto fields = reply.get().as<std::map<std::string, msgpack::object>>();
    EXPECT_EQ(fields.at("op").as<std::string>(), request.op);
    EXPECT_EQ(fields.at("task").as<std::string>(), request.id);
    EXPECT_EQ(fields.count("id"), 0u);
  }
  const std::string bytes = handler.Handle({"health", ""});
  const auto handle = msgpack::unpack(bytes.data(), bytes.size());
  const auto fields = handle.get().as<std::map<std::string, msgpack::object>>();
  EXPECT_EQ(fields.count("task"), 0u);
  EXPECT_EQ(fields.at("plugins").as<int>(), 3);  // a count
}

}  // namespace
}  // namespace umi
