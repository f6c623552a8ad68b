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
  EXPECT_EQ(handler.Handle({"cancel", "t-1"}), EncodeCancelReply("queued"));
  EXPECT_EQ(seen_id, "t-1");
  const std::string unknown = handler.Handle({"bogus", ""});
  const auto reply = msgpack::unpack(unknown.data(), unknown.size());
  const auto fields = reply.get().as<std::map<std::string, msgpack::object>>();
  EXPECT_FALSE(fields.at("ok").as<bool>());
  const auto error = fields.at("error").as<std::map<std::string, std::string>>();
  EXPECT_EQ(error.at("code"), "unknown_op");
  EXPECT_EQ(error.at("message"), "unknown op 'bogus' (known: cancel, health)");
}

}  // namespace
}  // namespace umi
