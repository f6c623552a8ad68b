// Security end to end: CURVE with a ZAP allow-list. A listed client's task
// runs; an unlisted key and a plain-TCP client fail the handshake and get
// nothing through.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "support/host_process.h"
#include "support/wire.h"

namespace umi::testing {
namespace {

namespace fs = std::filesystem;

std::string Word(const fs::path& file, const std::string& label) {
  std::ifstream in(file);
  for (std::string kind, key; in >> kind;) {
    if (label.empty()) return kind;
    in >> key;
    if (kind == label) return key;
  }
  return {};
}

// Handshake events of one socket, watched from before it connects.
class HandshakeMonitor {
 public:
  HandshakeMonitor(zmq::context_t& context, zmq::socket_t& socket, const std::string& name)
      : monitor_(context, zmq::socket_type::pair) {
    const std::string address = "inproc://monitor-" + name;
    zmq_socket_monitor(socket.handle(), address.c_str(),
                       ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                           ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_SUCCEEDED);
    monitor_.connect(address);
  }
  // The next event's id; 0 if none came within the guard time.
  int Next() {
    zmq::pollitem_t item{monitor_.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, std::chrono::duration_cast<std::chrono::milliseconds>(kGuardTime)) == 0) return 0;
    zmq::message_t event, endpoint;
    (void)monitor_.recv(event);
    (void)monitor_.recv(endpoint);
    uint16_t id = 0;
    std::memcpy(&id, event.data(), sizeof(id));
    return id;
  }

 private:
  zmq::socket_t monitor_;
};

TEST(Security, KeygenWritesAKeyPairWithAPrivateSecretFile) {
  TempDir dir;
  const CommandOutput run = RunCommand({UMI_HOST_BINARY, "keygen", "--out", (dir.path() / "host").string()});
  ASSERT_EQ(run.exit_code, 0) << run.out;
  struct stat info {};
  ASSERT_EQ(stat((dir.path() / "host.key").c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);
  const std::string pub = Word(dir.path() / "host.pub", "");
  EXPECT_EQ(pub.size(), 40u);
  EXPECT_EQ(Word(dir.path() / "host.key", "public"), pub);
  EXPECT_EQ(Word(dir.path() / "host.key", "secret").size(), 40u);
  EXPECT_NE(run.out.find(pub), std::string::npos);
}

TEST(Security, OnlyListedCurveClientsGetThrough) {
  TempDir dir;
  for (const char* name : {"server", "client", "stranger"}) {
    ASSERT_EQ(RunCommand({UMI_HOST_BINARY, "keygen", "--out", (dir.path() / name).string()}).exit_code, 0);
  }
  std::ofstream(dir.path() / "authorized.pub") << "# producers allowed in\n" << Word(dir.path() / "client.pub", "") << "\n";
  HostProcess host({.config_yaml = TestConfigYaml() + "security:\n  curve:\n    secret_key_file: " +
                                   (dir.path() / "server.key").string() + "\n    authorized_keys_file: " +
                                   (dir.path() / "authorized.pub").string() + "\n",
                    .connect_harness = false});
  const std::string server_key = Word(dir.path() / "server.pub", "");

  // An unlisted key: the ZAP handler refuses the handshake.
  zmq::socket_t stranger(host.context(), zmq::socket_type::dealer);
  stranger.set(zmq::sockopt::linger, 0);
  stranger.set(zmq::sockopt::curve_serverkey, server_key);
  stranger.set(zmq::sockopt::curve_publickey, Word(dir.path() / "stranger.key", "public"));
  stranger.set(zmq::sockopt::curve_secretkey, Word(dir.path() / "stranger.key", "secret"));
  HandshakeMonitor stranger_events(host.context(), stranger, "stranger");
  stranger.connect(host.endpoint("rpc"));
  stranger.send(zmq::buffer(PackTask({.id = "from-stranger", .plugin = "noop"})), zmq::send_flags::dontwait);
  EXPECT_EQ(stranger_events.Next(), ZMQ_EVENT_HANDSHAKE_FAILED_AUTH);

  // Plain TCP: no CURVE handshake at all.
  zmq::socket_t plain(host.context(), zmq::socket_type::push);
  plain.set(zmq::sockopt::linger, 0);
  HandshakeMonitor plain_events(host.context(), plain, "plain");
  plain.connect(host.endpoint("tasks"));
  plain.send(zmq::buffer(PackTask({.id = "from-plain", .plugin = "noop"})), zmq::send_flags::dontwait);
  const int plain_event = plain_events.Next();
  EXPECT_TRUE(plain_event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL || plain_event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)
      << plain_event;

  // The listed client: its task runs, and the host saw no other.
  std::ofstream(dir.path() / "tasks.jsonl") << R"({"id": "from-client", "plugin": "noop"})" << "\n";
  const CommandOutput submitted =
      RunCommand({UMI_SUBMIT_BINARY, (dir.path() / "tasks.jsonl").string(), "--rpc", host.endpoint("rpc"),
                  "--curve-server", (dir.path() / "server.pub").string(), "--curve-key",
                  (dir.path() / "client.key").string(), "--quiet"});
  ASSERT_EQ(submitted.exit_code, 0) << submitted.out;
  EXPECT_NE(submitted.out.find(R"("id":"from-client")"), std::string::npos) << submitted.out;
  EXPECT_NE(submitted.out.find(R"("status":"ok")"), std::string::npos) << submitted.out;
  const CommandOutput stats =
      RunCommand({UMI_SUBMIT_BINARY, "--op", "stats", "--rpc", host.endpoint("rpc"), "--curve-server",
                  (dir.path() / "server.pub").string(), "--curve-key", (dir.path() / "client.key").string()});
  ASSERT_EQ(stats.exit_code, 0);
  EXPECT_NE(stats.out.find(R"("ok": 1)"), std::string::npos) << stats.out;  // done: only the client's task
  EXPECT_NE(stats.out.find(R"("malformed": 0)"), std::string::npos) << stats.out;
  EXPECT_EQ(host.Stop(), 0);
}

TEST(Security, ABadKeyFileStopsTheHostWithTheReason) {
  TempDir dir;
  std::ofstream(dir.path() / "server.key") << "public nonsense\n";
  std::ofstream(dir.path() / "authorized.pub") << "";
  const auto config = dir.Write("config.yaml", TestConfigYaml() + "security:\n  curve: {secret_key_file: server.key, "
                                                                  "authorized_keys_file: authorized.pub}\n");
  const CommandOutput run = RunCommand({UMI_HOST_BINARY, "--config", config.string(), "--http", "off", "--tasks",
                                        "tcp://127.0.0.1:*", "--results", "tcp://127.0.0.1:*", "--rpc",
                                        "tcp://127.0.0.1:*", "--events", "tcp://127.0.0.1:*"},
                                       /*merge_stderr=*/true);
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.out.find("security.curve.secret_key_file: " + (dir.path() / "server.key").string() +
                         ": expected lines 'public <40 Z85 chars>'"),
            std::string::npos)
      << run.out;
}

}  // namespace
}  // namespace umi::testing
