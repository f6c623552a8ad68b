// The workers' sandbox (runtime/sandbox.h) against a plugin that tries
// every escape a hostile file's code would (plugins/evil.cc), through the
// real host: each escape is denied with a precise result, counted, and the
// host and the next task are unharmed. A plugin configured `sandbox:
// false` escapes every time: what the sandbox stops would happen without it.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include "support/host_process.h"
#include "support/redis_server.h"
#include "support/wire.h"

namespace umi::testing {
namespace {

namespace fs = std::filesystem;

// What `umi-host plugins --json` says this kernel offers the sandbox.
nlohmann::json Mechanisms() {
  const CommandOutput listing = RunCommand({UMI_HOST_BINARY, "plugins", "--json", "--plugins", UMI_TEST_INSPECT_PLUGIN_DIR});
  return nlohmann::json::parse(listing.out).at("sandbox_mechanisms");
}

// A TCP port something listens on: reachable, unless the sandbox says no.
class Listener {
 public:
  Listener() : fd_(socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t size = sizeof(address);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&address), size) != 0 || listen(fd_, 8) != 0 ||
        getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &size) != 0) {
      throw std::runtime_error("cannot listen on 127.0.0.1");
    }
    port_ = ntohs(address.sin_port);
  }
  ~Listener() { close(fd_); }
  int64_t port() const { return port_; }

 private:
  int fd_;
  int64_t port_ = 0;
};

// Live processes whose environment holds `mark`; `kill`: SIGKILLed too.
bool AnyMarked(const std::string& mark, bool kill_them = false) {
  bool found = false;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    std::ifstream environ(entry.path() / "environ", std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(environ)), std::istreambuf_iterator<char>());
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    std::getline(stat, line);
    const size_t state = line.rfind(") ");
    if (text.find(mark) != std::string::npos && state != std::string::npos && line[state + 2] != 'Z') {
      found = true;
      if (kill_them) kill(std::atoi(entry.path().filename().c_str()), SIGKILL);
    }
  }
  return found;
}

class Sandbox : public ::testing::Test {
 protected:
  void SetUp() override {
    const nlohmann::json mechanisms = Mechanisms();
    std::cout << "sandbox mechanisms this kernel offers: " << mechanisms.dump() << "\n";
    for (const char* needed : {"landlock_files", "seccomp", "network_namespace", "pid_namespace"}) {
      if (!mechanisms.value(needed, false)) GTEST_SKIP() << "this kernel does not offer " << needed;
    }
    media_ = files_.path() / "media";
    out_ = files_.path() / "out";
    fs::create_directories(media_);
    fs::create_directories(out_);
    files_.Write("media/clip.txt", "media bytes");
    secret_ = files_.Write("server.key_secret", "the host's CURVE secret key");
  }

  void Start(const std::string& sandbox = "", const std::string& plugin = "evil") {
    plugin_ = plugin;
    host_ = std::make_unique<HostProcess>(HostProcess::Options{
        .config_yaml = TestConfigYaml("  " + plugin + ": {isolation: process, processes: 1, settings: {media_roots: [" +
                                      media_.string() + "], output_root: " + out_.string() + "}" + sandbox + "}\n"),
        .plugin_dirs = {UMI_TEST_INSPECT_PLUGIN_DIR}});
  }

  Result Try(const std::string& attempt, std::map<std::string, std::string> strings = {},
             std::map<std::string, int64_t> numbers = {}) {
    strings["attempt"] = attempt;
    host_->Send(PackTask({.id = attempt + std::to_string(++sent_), .plugin = plugin_, .input = numbers,
                          .string_input = strings}));
    return host_->NextResult();
  }

  // The sandbox stopped `call`: the task crashed, saying so.
  void ExpectStopped(const Result& result, const std::string& call) {
    EXPECT_EQ(result.status, "crashed") << result.error_message;
    EXPECT_NE(result.error_message.find("the sandbox stopped the plugin's worker process: it called " + call),
              std::string::npos)
        << result.error_message;
  }

  // The kernel refused it: the plugin saw EACCES or EPERM.
  void ExpectDenied(const Result& result) {
    EXPECT_EQ(result.status, "error");
    EXPECT_EQ(result.error_code, "denied") << result.error_message;
  }

  // The host still runs tasks: a fresh or surviving worker reads its media.
  void ExpectServing() {
    const Result read = Try("read", {{"path", (media_ / "clip.txt").string()}});
    ASSERT_EQ(read.status, "ok") << read.error_message;
    EXPECT_EQ(read.Output("data")->as<std::string>(), "media bytes");
  }

  TempDir files_;
  fs::path media_, out_, secret_;
  std::unique_ptr<HostProcess> host_;
  std::string plugin_;
  int sent_ = 0;
};

TEST_F(Sandbox, APluginReadsItsMediaRootsAndNothingElse) {
  Start();
  ExpectServing();
  ExpectDenied(Try("read", {{"path", secret_.string()}}));
  ExpectDenied(Try("read", {{"path", "/etc/shadow"}}));
  ExpectDenied(Try("read", {{"path", "/proc/" + std::to_string(host_->pid()) + "/mem"}}));
  ExpectDenied(Try("read", {{"path", "/proc/" + std::to_string(host_->pid()) + "/environ"}}));
  ExpectServing();
}

TEST_F(Sandbox, APluginWritesOnlyItsOutputRootAndItsTempDir) {
  Start();
  EXPECT_EQ(Try("write", {{"path", (out_ / "thumb.jpg").string()}}).status, "ok");
  EXPECT_TRUE(fs::exists(out_ / "thumb.jpg"));
  EXPECT_EQ(Try("write", {{"path", "$TMPDIR/scratch"}}).status, "ok");
  ExpectDenied(Try("write", {{"path", (files_.path() / "evil.jpg").string()}}));
  EXPECT_FALSE(fs::exists(files_.path() / "evil.jpg"));
  ExpectDenied(Try("write", {{"path", (media_ / "clip.txt").string()}}));  // its media: read, not written
  std::ifstream clip(media_ / "clip.txt");
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(clip), {}), "media bytes");
}

TEST_F(Sandbox, NoNetworkNoExecNoForkNoSignalsNoPtraceNoIoUringAndEachIsCounted) {
  Start();
  const RedisServer redis(/*append_only=*/false, /*password=*/{}, /*tcp=*/true);  // a farm's Redis, on this machine
  ExpectStopped(Try("connect", {}, {{"port", redis.port()}}), "socket");
  ExpectStopped(Try("exec"), "execve");
  ExpectStopped(Try("spawn"), "clone");
  ExpectStopped(Try("fork_bomb", {}, {{"count", 10000}}), "clone");
  ExpectStopped(Try("signal", {}, {{"pid", host_->pid()}, {"signal", SIGSTOP}}), "kill");
  ExpectStopped(Try("ptrace", {}, {{"pid", host_->pid()}}), "ptrace");
  ExpectStopped(Try("io_uring"), "io_uring_setup");
  ExpectServing();  // the host was not stopped, and a fresh worker took over
  EXPECT_EQ(MetricValue(*host_, "umi_sandbox_kills_total{plugin=\"evil\"}"), 7);
  EXPECT_EQ(host_->Stop(), 0);
}

TEST_F(Sandbox, AFilePastMaxFileMbStopsTheWorker) {
  Start(", sandbox: {max_file_mb: 4}");
  const Result big = Try("big_write", {{"path", "$TMPDIR/big"}}, {{"mb", 10240}});
  EXPECT_EQ(big.status, "crashed");
  EXPECT_NE(big.error_message.find("it wrote a file past the sandbox's max_file_mb=4"), std::string::npos)
      << big.error_message;
  ExpectServing();
}

TEST_F(Sandbox, DeclaredExecRunsHelpersAndKillsWhatATaskLeftRunning) {
  Start(", sandbox: {exec: true}");
  const Result spawned = Try("spawn");
  ASSERT_EQ(spawned.status, "ok") << spawned.error_message;
  EXPECT_EQ(spawned.Output("exit_code")->as<int64_t>(), 0);
  const std::string mark = "umi-sandbox-test-" + std::to_string(getpid());
  EXPECT_EQ(Try("leave_child", {{"mark", mark}}).status, "ok");
  // Killed before the result was sent: nothing to wait for.
  EXPECT_FALSE(AnyMarked("UMI_TEST_MARK=" + mark));
  ExpectStopped(Try("connect", {}, {{"port", Listener().port()}}), "socket");  // exec is all it was granted
}

TEST_F(Sandbox, WhatAPluginDeclaresIsGrantedWithoutAnyYaml) {
  Start("", "evil_exec");  // Info().sandbox.exec = true
  const Result spawned = Try("spawn");
  ASSERT_EQ(spawned.status, "ok") << spawned.error_message;
  EXPECT_EQ(spawned.Output("exit_code")->as<int64_t>(), 0);
  ExpectStopped(Try("connect", {}, {{"port", Listener().port()}}), "socket");  // it did not declare network
  const CommandOutput listing = RunCommand({UMI_HOST_BINARY, "plugins", "--json", "--config",
                                            host_->config_path().string(), "--plugins", UMI_TEST_INSPECT_PLUGIN_DIR});
  const nlohmann::json listed = nlohmann::json::parse(listing.out);
  for (const nlohmann::json& plugin : listed.at("plugins")) {
    if (plugin.at("name") == "evil_exec") {
      EXPECT_TRUE(plugin.at("sandbox_needs").at("exec")) << plugin.dump();
      EXPECT_TRUE(plugin.at("sandbox").at("exec")) << plugin.dump();
    }
  }
}

TEST_F(Sandbox, APluginThatRequiresItsSandboxRunsInOneOrNotAtAll) {
  {  // no isolation: process in the YAML: a worker anyway
    HostProcess host({.config_yaml = TestConfigYaml(), .plugin_dirs = {UMI_TEST_INSPECT_PLUGIN_DIR}});
    host.Send(PackTask({.id = "r", .plugin = "evil_exec", .string_input = {{"attempt", "read"}, {"path", secret_.string()}}}));
    const Result read = host.NextResult();
    EXPECT_EQ(read.error_code, "denied") << read.error_message;
  }
  HostProcess host({.config_yaml = TestConfigYaml("  evil_exec: {sandbox: false}\n"),
                    .plugin_dirs = {UMI_TEST_INSPECT_PLUGIN_DIR}});
  host.Send(PackTask({.id = "r", .plugin = "evil_exec", .string_input = {{"attempt", "read"}, {"path", secret_.string()}}}));
  const Result refused = host.NextResult();
  EXPECT_NE(refused.status, "ok");
  EXPECT_NE(refused.error_message.find("evil_exec runs only in its sandbox (it declares so), and "
                                       "plugins.evil_exec.sandbox is false"),
            std::string::npos)
      << refused.error_message;
}

TEST_F(Sandbox, WithoutTheSandboxEveryEscapeWorks) {
  Start(", sandbox: false");
  const Result secret = Try("read", {{"path", secret_.string()}});
  ASSERT_EQ(secret.status, "ok") << secret.error_message;
  EXPECT_EQ(secret.Output("data")->as<std::string>(), "the host's CURVE secret key");
  EXPECT_EQ(Try("write", {{"path", (files_.path() / "evil.jpg").string()}}).status, "ok");
  const RedisServer redis(/*append_only=*/false, /*password=*/{}, /*tcp=*/true);
  EXPECT_EQ(Try("connect", {}, {{"port", redis.port()}}).status, "ok");
  const std::string mark = "umi-unsandboxed-test-" + std::to_string(getpid());
  EXPECT_EQ(Try("leave_child", {{"mark", mark}}).status, "ok");
  EXPECT_TRUE(AnyMarked("UMI_TEST_MARK=" + mark, /*kill_them=*/true));  // it outlives its task (and the host)
}

TEST_F(Sandbox, ReadyzMetricsAndPluginsJsonSayWhatTheKernelOffers) {
  Start();
  httplib::Client http(host_->endpoint("http"));
  const auto ready = http.Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_NE(ready->body.find("sandbox: Landlock ABI "), std::string::npos) << ready->body;
  EXPECT_EQ(MetricValue(*host_, "umi_sandbox_mechanism{mechanism=\"seccomp\"}"), 1);
  const CommandOutput listing = RunCommand({UMI_HOST_BINARY, "plugins", "--json", "--config",
                                            host_->config_path().string(), "--plugins", UMI_TEST_INSPECT_PLUGIN_DIR});
  const nlohmann::json listed = nlohmann::json::parse(listing.out);
  for (const nlohmann::json& plugin : listed.at("plugins")) {
    if (plugin.at("name") != "evil") continue;
    EXPECT_EQ(plugin.at("isolation"), "process");
    EXPECT_TRUE(plugin.at("sandbox").at("enabled"));
    EXPECT_EQ(plugin.at("sandbox").at("write").at(0), out_.string());
    EXPECT_TRUE(plugin.at("sandbox").at("lacking").empty());
    return;
  }
  FAIL() << "evil is not listed: " << listing.out;
}

TEST(ShippedConfig, MediaPluginsRunInSandboxedWorkersAndReadOnlyTheDataDirectory) {
  std::ifstream shipped(UMI_SOURCE_DIR "/config/hardware/default.yaml");
  HostProcess host({.config_yaml = std::string(std::istreambuf_iterator<char>(shipped), {})});
  // Before: probe ran on a host thread and read anything the host may.
  for (const char* plugin : {"probe", "checksum"}) {
    host.Send(PackTask({.id = plugin, .plugin = plugin, .string_input = {{"path", "/etc/hostname"}}}));
    const Result refused = host.NextResult();
    EXPECT_EQ(refused.error_code, "forbidden") << refused.error_message;
    EXPECT_NE(refused.error_message.find("is outside the plugin's media_roots"), std::string::npos)
        << refused.error_message;
    EXPECT_NE(refused.error_message.find("/var/lib/umi/media"), std::string::npos) << refused.error_message;
    EXPECT_EQ(MetricValue(host, "umi_worker_processes{plugin=\"" + std::string(plugin) + "\"}"), 1);
  }
}

}  // namespace
}  // namespace umi::testing
