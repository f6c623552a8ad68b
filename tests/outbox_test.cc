// The Outbox over real ZeroMQ sockets (inproc).
#include "transport/outbox.h"

#include <gtest/gtest.h>

namespace umi {
namespace {

TEST(Outbox, ResultsWaitForACollectorInOrder) {
  zmq::context_t context;
  zmq::socket_t results(context, zmq::socket_type::push), rpc(context, zmq::socket_type::router);
  results.bind("inproc://results-wait");
  Outbox outbox(results, rpc, [] {});
  outbox.Send("one", {});
  outbox.Send("two", {});
  EXPECT_EQ(outbox.results_waiting(), 2u);  // nobody connected
  zmq::socket_t collector(context, zmq::socket_type::pull);
  collector.connect("inproc://results-wait");
  zmq::pollitem_t writable{results.handle(), 0, ZMQ_POLLOUT, 0};
  ASSERT_EQ(zmq::poll(&writable, 1, std::chrono::seconds(10)), 1);  // as the loop waits for a collector
  outbox.FlushResults();
  EXPECT_EQ(outbox.waiting(), 0u);
  zmq::message_t message;
  ASSERT_TRUE(collector.recv(message));
  EXPECT_EQ(message.to_string(), "one");
  ASSERT_TRUE(collector.recv(message));
  EXPECT_EQ(message.to_string(), "two");
}

TEST(Outbox, RepliesToAFullClientWaitInOrderAndAGoneClientIsCounted) {
  zmq::context_t context;
  zmq::socket_t results(context, zmq::socket_type::push), rpc(context, zmq::socket_type::router);
  rpc.set(zmq::sockopt::router_mandatory, 1);
  rpc.set(zmq::sockopt::sndhwm, 2);
  rpc.bind("inproc://rpc-wait");
  int dropped = 0;
  Outbox outbox(results, rpc, [&dropped] { ++dropped; });
  zmq::socket_t client(context, zmq::socket_type::dealer);
  client.set(zmq::sockopt::rcvhwm, 2);
  client.set(zmq::sockopt::routing_id, "client-1");
  client.connect("inproc://rpc-wait");
  client.send(zmq::str_buffer("hello"));
  zmq::message_t identity, hello;
  ASSERT_TRUE(rpc.recv(identity));
  ASSERT_TRUE(rpc.recv(hello));
  const std::vector<std::string> envelope = {identity.to_string()};

  constexpr int kReplies = 50;
  for (int i = 0; i < kReplies; ++i) outbox.Send("r" + std::to_string(i), envelope);
  EXPECT_GT(outbox.replies_waiting(), 0u) << "a full pipe keeps replies here";
  for (int i = 0; i < kReplies; ++i) {
    zmq::message_t reply;
    while (!client.recv(reply, zmq::recv_flags::dontwait)) outbox.FlushReplies();
    EXPECT_EQ(reply.to_string(), "r" + std::to_string(i));
  }
  EXPECT_EQ(outbox.waiting(), 0u);
  EXPECT_EQ(dropped, 0);

  outbox.Send("for nobody", {"client-that-left"});
  EXPECT_EQ(dropped, 1);
  EXPECT_EQ(outbox.waiting(), 0u);
}

}  // namespace
}  // namespace umi
