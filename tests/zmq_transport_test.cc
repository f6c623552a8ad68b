// The transport seam over real ZeroMQ sockets on tcp://127.0.0.1:*: what a
// producer sends reaches the Inbox with a route back to the same transport,
// and what the host sends on that route reaches the right peer.
#include "transport/zmq_transport.h"

#include <gtest/gtest.h>
#include <zmq_addon.hpp>

#include <vector>

#include "transport/poller.h"

namespace umi {
namespace {

struct Recorded {
  std::string bytes;
  ReplyRoute route;
};

class RecordingInbox final : public Inbox {
 public:
  bool accepting = true;
  std::vector<Recorded> delivered;
  size_t dropped = 0;
  void RepliesDropped(size_t n) override { dropped += n; }
  bool accepting_tasks() const override { return accepting; }
  size_t Room(const std::string&) const override { return accepting ? 1 : 0; }
  size_t ReadAhead(const std::string&, size_t) const override { return 0; }
  void Deliver(std::string_view bytes, ReplyRoute route) override {
    delivered.push_back({std::string(bytes), std::move(route)});
  }
};

ZmqTransportOptions LoopbackOptions() {
  ZmqTransportOptions options;
  options.tasks_endpoint = options.results_endpoint = options.rpc_endpoint = options.events_endpoint =
      "tcp://127.0.0.1:*";
  return options;
}

class ZmqTransportTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(transport_.Open(poller_, inbox_).ok()); }

  // Polls until `done` holds; the poll itself waits for the event.
  template <typename Done>
  void PollUntil(Done done) {
    for (int turn = 0; turn < 1000 && !done(); ++turn) poller_.PollOnce(std::chrono::milliseconds(100));
    ASSERT_TRUE(done());
  }

  // A peer socket that fails a test instead of hanging it.
  zmq::socket_t Peer(zmq::socket_type type, const std::string& endpoint_name) {
    zmq::socket_t socket(peer_context_, type);
    socket.set(zmq::sockopt::rcvtimeo, 10000);
    socket.set(zmq::sockopt::linger, 0);
    socket.connect(transport_.endpoints().at(endpoint_name));
    return socket;
  }

  Poller poller_;
  RecordingInbox inbox_;
  ZmqTransport transport_{LoopbackOptions()};
  zmq::context_t peer_context_;
};

TEST_F(ZmqTransportTest, ATaskArrivesWithARouteBackToItsTransport) {
  zmq::socket_t producer = Peer(zmq::socket_type::push, "tasks");
  zmq::socket_t collector = Peer(zmq::socket_type::pull, "results");
  producer.send(zmq::str_buffer("task-bytes"));
  PollUntil([&] { return inbox_.delivered.size() == 1; });
  const Recorded& got = inbox_.delivered.front();
  EXPECT_EQ(got.bytes, "task-bytes");
  EXPECT_EQ(got.route.sink, &transport_);
  EXPECT_FALSE(got.route.rpc);

  got.route.sink->Send("result-bytes", got.route, nullptr);
  PollUntil([&] { return transport_.waiting() == 0; });  // it waits while the collector connects
  zmq::message_t result;
  ASSERT_TRUE(collector.recv(result));
  EXPECT_EQ(result.to_string(), "result-bytes");
}

TEST_F(ZmqTransportTest, AnRpcReplyGoesBackToTheClientThatAsked) {
  zmq::socket_t first = Peer(zmq::socket_type::dealer, "rpc");
  zmq::socket_t second = Peer(zmq::socket_type::dealer, "rpc");
  first.send(zmq::str_buffer("from-first"));
  second.send(zmq::str_buffer("from-second"));
  PollUntil([&] { return inbox_.delivered.size() == 2; });
  for (const Recorded& got : inbox_.delivered) {
    EXPECT_TRUE(got.route.rpc);
    got.route.sink->Send("reply-to-" + got.bytes, got.route, nullptr);
  }
  EXPECT_EQ(transport_.waiting(), 0u) << "a connected client's reply leaves at once";
  zmq::message_t reply;
  ASSERT_TRUE(first.recv(reply));
  EXPECT_EQ(reply.to_string(), "reply-to-from-first");
  ASSERT_TRUE(second.recv(reply));
  EXPECT_EQ(reply.to_string(), "reply-to-from-second");
}

TEST_F(ZmqTransportTest, TasksWaitInZeroMqWhileTheInboxIsNotAccepting) {
  zmq::socket_t producer = Peer(zmq::socket_type::push, "tasks");
  zmq::socket_t rpc = Peer(zmq::socket_type::dealer, "rpc");
  inbox_.accepting = false;
  producer.send(zmq::str_buffer("held"));
  rpc.send(zmq::str_buffer("control"));  // rpc is still read: control must get through
  PollUntil([&] { return inbox_.delivered.size() == 1; });
  EXPECT_EQ(inbox_.delivered.front().bytes, "control");
  inbox_.accepting = true;
  PollUntil([&] { return inbox_.delivered.size() == 2; });
  EXPECT_EQ(inbox_.delivered.back().bytes, "held");
}

TEST_F(ZmqTransportTest, EventsAreOnlyPublishedToSubscribers) {
  EXPECT_FALSE(transport_.listening());
  zmq::socket_t subscriber = Peer(zmq::socket_type::sub, "events");
  subscriber.set(zmq::sockopt::subscribe, "task.");
  PollUntil([&] { return transport_.listening(); });
  transport_.Publish("task.queued", "body");
  std::vector<zmq::message_t> frames;
  ASSERT_TRUE(zmq::recv_multipart(subscriber, std::back_inserter(frames)));
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0].to_string(), "task.queued");
  EXPECT_EQ(frames[1].to_string(), "body");
}

TEST_F(ZmqTransportTest, ResultsNobodyTakesAreCountedAsDroppedAtTheEnd) {
  transport_.Send("a", ReplyRoute{&transport_, false, {}}, nullptr);
  transport_.Send("b", ReplyRoute{&transport_, false, {}}, nullptr);
  EXPECT_EQ(transport_.waiting(), 2u);
  EXPECT_EQ(transport_.Flush(std::chrono::steady_clock::now()), 2u);
  EXPECT_EQ(inbox_.dropped, 2u);
}

}  // namespace
}  // namespace umi
