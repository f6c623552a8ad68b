// What an outside tester broke (docs/reliability.md, "Hardening"), through
// the real host: each test failed on the host before its fix.
#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <set>

#include "support/host_process.h"
#include "support/wire.h"

namespace umi::testing {
namespace {

nlohmann::json Control(RpcClient& rpc, const std::string& op, const std::string& id = "") {
  rpc.Send(PackControl(op, id));
  return nlohmann::json::from_msgpack(rpc.Receive());
}

std::string RawTask(const std::string& id, const std::string& plugin) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  packer.pack_map(2);
  packer.pack("id").pack(id);
  packer.pack("plugin").pack(plugin);
  return std::string(buffer.data(), buffer.size());
}

TEST(Hardening, HugeTimeoutsAreRefusedOrHonouredNeverInstant) {
  HostProcess host;
  host.Send(PackTask({.id = "max", .plugin = "noop", .timeout_ms = INT64_MAX}));
  const Result max = host.NextResult();
  EXPECT_EQ(max.status, "rejected");
  EXPECT_EQ(max.error_code, "bad_request");
  EXPECT_NE(max.error_message.find("'timeout_ms' must be 0..3153600000000"), std::string::npos) << max.error_message;
  // 10^12 ms is within the bound: the task runs to its end (before: timeout after 0.2 ms).
  host.Send(PackTask({.id = "long", .plugin = "sleep", .input = {{"ms", 5}}, .timeout_ms = 1'000'000'000'000}));
  EXPECT_EQ(host.NextResult().status, "ok");
  // A plugin asked to wait "for ever" waits until the host cancels it (before: returned at once).
  host.Send(PackTask({.id = "forever", .plugin = "sleep", .input = {{"ms", INT64_MAX}}, .timeout_ms = 50}));
  const Result forever = host.NextResult();
  EXPECT_EQ(forever.status, "timeout") << forever.error_message;
}

TEST(Hardening, RpcRepliesWaitForASlowClientInsteadOfBeingDropped) {
  HostProcess host;
  // A client that reads only after sending everything, with small buffers,
  // so the host meets a full pipe long before the last reply.
  zmq::socket_t client(host.context(), zmq::socket_type::dealer);
  client.set(zmq::sockopt::linger, 0);
  client.set(zmq::sockopt::rcvhwm, 100);
  client.set(zmq::sockopt::rcvbuf, 4096);
  client.connect(host.endpoint("rpc"));
  // 5 MB of replies: far past the high-water marks and this client's buffers.
  constexpr int kTasks = 30000;
  client.set(zmq::sockopt::sndtimeo, static_cast<int>(std::chrono::milliseconds(kGuardTime).count()));
  for (int i = 0; i < kTasks; ++i) {
    ASSERT_TRUE(client.send(zmq::buffer(PackTask({.id = "t" + std::to_string(i), .plugin = "noop"}))))
        << "the host stopped reading after " << i << " tasks";
  }
  client.set(zmq::sockopt::rcvtimeo, static_cast<int>(std::chrono::milliseconds(kGuardTime).count()));
  std::set<std::string> answered;
  for (int i = 0; i < kTasks; ++i) {
    zmq::message_t reply;
    ASSERT_TRUE(client.recv(reply)) << "reply " << i << " never came";  // before: most were dropped
    const Result r = ParseResult(reply.to_string());
    EXPECT_EQ(r.status, "ok");
    answered.insert(*r.id);
  }
  EXPECT_EQ(answered.size(), static_cast<size_t>(kTasks));
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  EXPECT_EQ(Control(rpc, "stats")["dropped_replies"], 0);
}

TEST(Hardening, AReplyToAClientThatLeftIsCountedAsDropped) {
  HostProcess host;
  auto gone = std::make_unique<RpcClient>(host.context(), host.endpoint("rpc"));
  gone->Send(PackTask({.id = "orphan", .plugin = "sleep", .input = {{"ms", 500}}}));
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  const auto deadline = std::chrono::steady_clock::now() + kGuardTime;
  while (Control(rpc, "stats")["running"] != 1) ASSERT_LT(std::chrono::steady_clock::now(), deadline);
  gone.reset();  // the client leaves while its task runs
  while (Control(rpc, "stats")["dropped_replies"] != 1) {  // before: dropped without a trace
    ASSERT_LT(std::chrono::steady_clock::now(), deadline);
  }
  httplib::Client http(host.endpoint("http"));
  EXPECT_NE(http.Get("/metrics")->body.find("\numi_dropped_replies_total 1\n"), std::string::npos);
}

TEST(Hardening, MaxQueuedBoundsRpcTasksToo) {
  HostProcess host({.config_yaml = TestConfigYaml() + "scheduler: {max_queued: 100}\n"});
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  constexpr int kTasks = 300;
  for (int i = 0; i < kTasks; ++i) {
    rpc.Send(PackTask({.id = "q" + std::to_string(i), .plugin = "sleep", .input = {{"ms", 60000}}}));
  }
  rpc.Send(PackControl("stats"));
  // Rejections come back at once; the stats reply follows every one of them.
  int queue_full = 0;
  nlohmann::json stats;
  while (true) {
    const std::string reply = rpc.Receive();
    const nlohmann::json body = nlohmann::json::from_msgpack(reply);
    if (body.contains("ok")) {  // the stats reply; results have no "ok"
      stats = body;
      break;
    }
    ASSERT_TRUE(body.contains("error")) << body.dump();
    EXPECT_EQ(body["error"]["code"], "queue_full") << body.dump();
    ++queue_full;
  }
  EXPECT_LE(stats["queued"].get<int>(), 100);  // before: all 300 - 8 running were queued
  EXPECT_EQ(queue_full + stats["queued"].get<int>() + stats["running"].get<int>(), kTasks);
  EXPECT_GT(queue_full, 0);
}

TEST(Hardening, AReusedIdWithAnotherTaskIsAConflictNotTheOldResult) {
  HostProcess host;
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  rpc.Send(PackTask({.id = "same", .plugin = "sleep", .input = {{"ms", 1}}}));
  const Result first = ParseResult(rpc.Receive());
  ASSERT_EQ(first.status, "ok");
  rpc.Send(PackTask({.id = "same", .plugin = "sleep", .input = {{"ms", 3}}}));
  const Result other = ParseResult(rpc.Receive());
  EXPECT_EQ(other.status, "rejected");
  EXPECT_EQ(other.error_code, "id_conflict") << other.error_message;
  // A true retry (the same task) still gets the stored result.
  rpc.Send(PackTask({.id = "same", .plugin = "sleep", .input = {{"ms", 1}}}));
  const Result retry = ParseResult(rpc.Receive());
  EXPECT_EQ(retry.status, "ok");
  EXPECT_EQ(retry.finished_at, first.finished_at);
  EXPECT_EQ(Control(rpc, "stats")["deduplicated"], 1);
}

TEST(Hardening, InvalidUtf8IsRejectedAtTheDoorAndEveryRenderingStaysValid) {
  HostProcess host;
  host.Send(RawTask("\xff\xfe", "noop"));
  const Result bad_id = host.NextResult();
  EXPECT_EQ(bad_id.status, "rejected");
  EXPECT_EQ(bad_id.error_code, "bad_request");
  EXPECT_FALSE(bad_id.id.has_value());
  EXPECT_NE(bad_id.error_message.find("'id' is not valid UTF-8"), std::string::npos);
  host.Send(RawTask("fine", "\xc3("));
  const Result bad_plugin = host.NextResult();
  EXPECT_EQ(bad_plugin.id, "fine");
  EXPECT_EQ(bad_plugin.error_code, "bad_request");
  EXPECT_NE(bad_plugin.error_message.find("'plugin' is not valid UTF-8"), std::string::npos);

  httplib::Client http(host.endpoint("http"));
  for (const char* path : {"/api/stats", "/api/tasks/recent", "/metrics", "/healthz"}) {
    const auto response = http.Get(path);
    ASSERT_TRUE(response) << path;
    EXPECT_EQ(response->status, 200) << path << ": " << response->body;  // before: 500 for the life of the process
  }
  EXPECT_NO_THROW(nlohmann::json::parse(http.Get("/api/stats")->body));
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  EXPECT_EQ(Control(rpc, "stats")["ok"], true);
}

TEST(Hardening, UnknownPluginNamesDoNotGrowTheMetrics) {
  HostProcess host;
  for (int i = 0; i < 2000; ++i) host.Send(RawTask("u" + std::to_string(i), "made_up_" + std::to_string(i)));
  for (int i = 0; i < 2000; ++i) EXPECT_EQ(host.NextResult().error_code, "unknown_plugin");
  httplib::Client http(host.endpoint("http"));
  const auto metrics = http.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->body.find("made_up_"), std::string::npos);
  EXPECT_NE(metrics->body.find("umi_tasks_total{plugin=\"_unknown\",status=\"rejected\"} 2000\n"), std::string::npos);
}

// A TCP connection to the host's HTTP port that sends `bytes` and then nothing.
int OpenIdle(const std::string& url, const std::string& bytes) {
  const size_t colon = url.rfind(':');
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(std::stoi(url.substr(colon + 1))));
  inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return -1;
  }
  if (!bytes.empty()) {
    EXPECT_EQ(send(fd, bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size()));
  }
  return fd;
}

TEST(Hardening, ProbesAreAnsweredBesideSlowAndIdleConnections) {
  HostProcess host;
  std::vector<int> held;
  // Two slowloris requests that never finish their headers, 100 idle keep-alive-style connections.
  for (int i = 0; i < 2; ++i) held.push_back(OpenIdle(host.endpoint("http"), "GET /metrics HTTP/1.1\r\nHost: x\r\n"));
  for (int i = 0; i < 100; ++i) held.push_back(OpenIdle(host.endpoint("http"), ""));
  for (int fd : held) ASSERT_GE(fd, 0);
  httplib::Client http(host.endpoint("http"));
  http.set_read_timeout(kGuardTime);
  for (const char* probe : {"/healthz", "/readyz", "/metrics"}) {  // before: each waited behind the held connections
    const auto response = http.Get(probe);
    ASSERT_TRUE(response) << probe;
    EXPECT_EQ(response->status, 200) << probe;
  }
  for (int fd : held) close(fd);
}

// A TCP connection from `source` (a loopback address) to the host's HTTP
// port that sends nothing; -1 on failure.
int OpenIdleFrom(const std::string& url, const char* source) {
  const size_t colon = url.rfind(':');
  sockaddr_in from{}, to{};
  from.sin_family = to.sin_family = AF_INET;
  inet_pton(AF_INET, source, &from.sin_addr);
  to.sin_port = htons(static_cast<uint16_t>(std::stoi(url.substr(colon + 1))));
  inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof(from)) != 0 ||
      connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof(to)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// One client holding every connection its address may have (128), or the
// host's whole bound (512, from four addresses), all idle: a probe from a
// prober that shares the address (kubelet, Prometheus on one node) is
// answered; the longest idle connection is shed for it (the server accepts
// in the order clients connected, so the held ones are in before the probe).
// Before, the probe's connection was closed unanswered until the idle ones
// timed out, renewable every 10 s.
TEST(Hardening, IdleConnectionsAtTheBoundNeverStarveAProbe) {
  HostProcess host;
  for (const std::vector<const char*>& sources : {std::vector<const char*>{"127.0.0.1"},
                                                   {"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"}}) {
    std::vector<int> held;
    for (const char* source : sources) {
      for (int i = 0; i < 128; ++i) held.push_back(OpenIdleFrom(host.endpoint("http"), source));
    }
    for (int fd : held) ASSERT_GE(fd, 0);
    httplib::Client http(host.endpoint("http"));
    http.set_read_timeout(kGuardTime);
    const auto response = http.Get("/healthz");
    ASSERT_TRUE(response) << held.size() << " idle connections: " << httplib::to_string(response.error());
    EXPECT_EQ(response->status, 200);
    for (int fd : held) close(fd);
  }
}

TEST(Correctness, GpuGrantsCarryTheConfiguredDeviceIds) {
  HostProcess host({.config_yaml = R"(hardware:
  cpu: {cores: 8, threads: 16}
  gpu: {devices: [{id: 2}, {id: 3}]}
  memory: {total_gb: 16}
plugins:
  gpu_sleep: {gpu_count: 1, exclusive_gpu: true}
)"});
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  rpc.Send(PackTask({.id = "g1", .plugin = "gpu_sleep", .input = {{"ms", 300000}}}));
  rpc.Send(PackTask({.id = "g2", .plugin = "gpu_sleep", .input = {{"ms", 1}}}));
  const Result second = ParseResult(rpc.Receive());
  EXPECT_EQ(second.id, "g2");
  EXPECT_EQ(second.gpu_ids, std::vector<int>{3});  // g1 holds 2; before: 0 and 1
  rpc.Send(PackControl("cancel", "g1"));
  std::optional<Result> first;
  while (!first) {
    const Result r = ParseResult(rpc.Receive());
    if (r.id == "g1") first = r;
  }
  EXPECT_EQ(first->gpu_ids, std::vector<int>{2});
  httplib::Client http(host.endpoint("http"));
  EXPECT_NE(http.Get("/metrics")->body.find("umi_gpu_capacity_ratio{gpu=\"3\"} 1"), std::string::npos);
}

TEST(Hardening, ASecondSigtermDuringTheDrainExitsAtOnce) {
  HostProcess host;
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  rpc.Send(PackTask({.id = "long", .plugin = "sleep", .input = {{"ms", 600000}}}));
  EXPECT_EQ(Control(rpc, "stats")["running"], 1);  // a control request sees the tasks sent before it started
  ASSERT_EQ(kill(host.pid(), SIGTERM), 0);
  while (Control(rpc, "health")["status"] != "draining") {
  }
  ASSERT_EQ(kill(host.pid(), SIGTERM), 0);
  const Result cancelled = ParseResult(rpc.Receive());  // before: waited out the 30 s drain timeout
  EXPECT_EQ(cancelled.id, "long");
  EXPECT_EQ(cancelled.status, "cancelled");
  EXPECT_NE(cancelled.error_message.find("a second Terminated during the drain"), std::string::npos)
      << cancelled.error_message;
  EXPECT_EQ(host.Stop(), 0);
}

}  // namespace
}  // namespace umi::testing
