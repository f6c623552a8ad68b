// Protocol v1 features through the real host: dedup window, stats, events,
// YAML transport endpoints.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "support/host_process.h"
#include "support/wire.h"

namespace umi::testing {
namespace {

msgpack::object_handle Unpack(const std::string& bytes) { return msgpack::unpack(bytes.data(), bytes.size()); }

TEST(ProtocolE2E, ARetriedFinishedTaskGetsItsStoredResultWithoutRunningAgain) {
  HostProcess host({.config_yaml = TestConfigYaml(), .plugin_dirs = {UMI_TEST_INSPECT_PLUGIN_DIR}});
  host.Send(PackTask({.id = "once", .plugin = "inspect"}));
  const Result first = host.NextResult();
  ASSERT_EQ(first.status, "ok");
  host.Send(PackTask({.id = "once", .plugin = "inspect"}));  // an at-least-once retry
  const Result again = host.NextResult();
  EXPECT_EQ(again.status, "ok");
  EXPECT_EQ(again.started_at, first.started_at);  // the same result, not a second run
  EXPECT_EQ(again.Output("uses")->as<int>(), 1);
  host.Send(PackTask({.id = "other", .plugin = "inspect"}));
  EXPECT_EQ(host.NextResult().Output("uses")->as<int>(), 2);  // only two runs happened

  RpcClient rpc(host.context(), host.endpoint("rpc"));
  rpc.Send(PackControl("stats"));
  const auto stats = Unpack(rpc.Receive());
  const auto map = stats.get().as<std::map<std::string, msgpack::object>>();
  EXPECT_EQ(map.at("deduplicated").as<int>(), 1);
  EXPECT_EQ((map.at("done").as<std::map<std::string, int>>().at("ok")), 2) << "once and other ran; the retry did not";
}

TEST(ProtocolE2E, AZeroDedupWindowRunsARetryAgain) {
  HostProcess host({.config_yaml = TestConfigYaml("dedup: {window_s: 0}\n"),
                    .plugin_dirs = {UMI_TEST_INSPECT_PLUGIN_DIR}});
  for (int i = 1; i <= 2; ++i) {
    host.Send(PackTask({.id = "again", .plugin = "inspect"}));
    EXPECT_EQ(host.NextResult().Output("uses")->as<int>(), i);
  }
}

TEST(ProtocolE2E, StatsCountPerPluginWithPercentiles) {
  HostProcess host;
  for (int i = 0; i < 5; ++i) host.Send(PackTask({.id = "n" + std::to_string(i), .plugin = "noop"}));
  host.Send(PackTask({.id = "bad", .plugin = "sleep"}));  // no "ms": error
  host.Results(6);
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  rpc.Send(PackControl("stats"));
  const auto stats = Unpack(rpc.Receive());
  const auto map = stats.get().as<std::map<std::string, msgpack::object>>();
  const auto plugins = map.at("plugins").as<std::map<std::string, msgpack::object>>();
  const auto noop = plugins.at("noop").as<std::map<std::string, msgpack::object>>();
  EXPECT_EQ((noop.at("done").as<std::map<std::string, int>>().at("ok")), 5);
  const auto run_ms = noop.at("run_ms").as<std::map<std::string, double>>();
  EXPECT_EQ(run_ms.at("samples"), 5);
  EXPECT_LE(run_ms.at("p50"), run_ms.at("p99"));
  const auto sleep = plugins.at("sleep").as<std::map<std::string, msgpack::object>>();
  EXPECT_EQ((sleep.at("done").as<std::map<std::string, int>>().at("error")), 1);
  const auto pool = map.at("pool").as<std::map<std::string, msgpack::object>>();
  EXPECT_EQ((pool.at("cpu_threads").as<std::map<std::string, double>>().at("total")), 48);
  EXPECT_EQ((pool.at("cpu_threads").as<std::map<std::string, double>>().at("used")), 0);
}

TEST(ProtocolE2E, ResultsWaitInTheHostUntilACollectorConnects) {
  HostProcess host({.config_yaml = TestConfigYaml(), .connect_harness = false});
  zmq::socket_t tasks(host.context(), zmq::socket_type::push);
  tasks.set(zmq::sockopt::linger, 0);
  tasks.connect(host.endpoint("tasks"));
  for (int i = 0; i < 5; ++i) tasks.send(zmq::buffer(PackTask({.id = "b" + std::to_string(i), .plugin = "noop"})));
  // Wait (on events, not time) until all five ran and wait unsent.
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  for (int unsent = 0; unsent < 5;) {
    rpc.Send(PackControl("stats"));
    const std::string reply = rpc.Receive();
    unsent = Unpack(reply).get().as<std::map<std::string, msgpack::object>>().at("unsent_results").as<int>();
  }
  zmq::socket_t collector(host.context(), zmq::socket_type::pull);
  collector.connect(host.endpoint("results"));
  std::set<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    zmq::pollitem_t item{collector.handle(), 0, ZMQ_POLLIN, 0};
    ASSERT_EQ(zmq::poll(&item, 1, std::chrono::milliseconds(60000)), 1);
    zmq::message_t message;
    ASSERT_TRUE(collector.recv(message));
    ids.insert(ParseResult(message.to_string()).id.value_or(""));
  }
  EXPECT_EQ(ids.size(), 5u);
}

TEST(ProtocolE2E, TransportEndpointsComeFromYamlUnlessAFlagIsGiven) {
  // The harness passes every endpoint as a flag; the YAML's must lose.
  HostProcess host({.config_yaml = TestConfigYaml() + "transport: {tasks: \"tcp://127.0.0.1:1\"}\n"});
  EXPECT_NE(host.endpoint("tasks"), "tcp://127.0.0.1:1");
  host.Send(PackTask({.id = "t", .plugin = "noop"}));
  EXPECT_EQ(host.NextResult().status, "ok");
}

TEST(ProtocolE2E, ReqClientsGetTheirResultOnTheSameSocket) {
  HostProcess host;
  zmq::socket_t req(host.context(), zmq::socket_type::req);
  req.set(zmq::sockopt::linger, 0);
  req.connect(host.endpoint("rpc"));
  req.send(zmq::buffer(PackTask({.id = "via-req", .plugin = "noop"})));
  zmq::message_t reply;
  zmq::pollitem_t item{req.handle(), 0, ZMQ_POLLIN, 0};
  ASSERT_EQ(zmq::poll(&item, 1, std::chrono::milliseconds(60000)), 1);
  ASSERT_TRUE(req.recv(reply));
  const Result r = ParseResult(reply.to_string());
  EXPECT_EQ(r.id, "via-req");
  EXPECT_EQ(r.status, "ok");
}

}  // namespace
}  // namespace umi::testing
