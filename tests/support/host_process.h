// HostProcess: starts the real umi-host binary for a test and connects to it.
//
// The host binds every socket on tcp://127.0.0.1:* and announces the
// resolved endpoints in its "ready" line on stdout; Start waits for that
// line (an event, not a sleep). Stop sends SIGTERM and returns the exit
// status; the destructor kills a host that is still running.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "wire.h"

namespace umi::testing {

// Starts `args` with stdout (and, if asked, stderr) on a pipe whose read
// end goes to *stdout_fd.
pid_t Spawn(std::vector<std::string> args, int* stdout_fd, bool merge_stderr = false);

// A fresh temporary directory, removed on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path Write(const std::string& name, const std::string& contents) const;

 private:
  std::filesystem::path path_;
};

// A small pool: 24 cores / 48 threads, 8 CPU tasks, 1 GPU, 128 GiB, with
// the demo's task groups. `extra` is appended to the YAML, whose last
// section is `plugins:` (so indented lines add plugin entries).
std::string TestConfigYaml(const std::string& extra = "");

class HostProcess {
 public:
  struct Options {
    std::string config_yaml = TestConfigYaml();
    std::vector<std::filesystem::path> plugin_dirs = {};  // default: the built diag plugins
    std::string binary = UMI_HOST_BINARY;
    std::vector<std::string> extra_args = {};
    std::string log_level = "warn";
    // Override the ephemeral binds, e.g. ">tcp://127.0.0.1:4000" to connect
    // to a producer (scale-out); the harness then has no socket of its own there.
    std::string tasks_endpoint = "tcp://127.0.0.1:*";
    std::string results_endpoint = "tcp://127.0.0.1:*";
    std::string name = "test-host";
    bool connect_harness = true;  // false: Send/NextResult unused, peers are the caller's
  };

  HostProcess() : HostProcess(Options{}) {}
  explicit HostProcess(Options options);
  ~HostProcess();

  const std::string& endpoint(const std::string& name) const { return endpoints_.at(name); }
  pid_t pid() const { return pid_; }
  // The config file the host was started with (a test may rewrite it and reload).
  const std::filesystem::path& config_path() const { return config_path_; }

  // Sends on a PUSH socket connected to the tasks endpoint.
  void Send(const std::string& bytes);
  // The next result from the results socket; fails the test (throws) when
  // none arrives within a generous guard time.
  Result NextResult();
  std::vector<Result> Results(size_t count);
  // SIGTERM, then wait; returns the exit code (or 128 + signal).
  int Stop();

  zmq::context_t& context() { return context_; }

 private:
  TempDir dir_;
  pid_t pid_ = -1;
  std::map<std::string, std::string> endpoints_;
  std::filesystem::path config_path_;
  zmq::context_t context_;
  zmq::socket_t tasks_;
  zmq::socket_t results_;
};

// A DEALER socket talking to the host's rpc endpoint.
class RpcClient {
 public:
  RpcClient(zmq::context_t& context, const std::string& endpoint);
  void Send(const std::string& bytes);
  std::string Receive();  // throws after the guard time

 private:
  zmq::socket_t socket_;
};

struct CommandOutput {
  int exit_code = -1;
  std::string out;  // stdout; stderr goes to the test log unless merged
};
// Runs a command to completion; merge_stderr puts its stderr in `out` too.
CommandOutput RunCommand(std::vector<std::string> args, bool merge_stderr = false);

// A SUB socket on the host's events endpoint, subscribed to everything.
class EventsClient {
 public:
  EventsClient(zmq::context_t& context, const std::string& endpoint);
  // Topic and body of the next event; throws after the guard time.
  std::pair<std::string, Result> Next();
  // The next event if one arrives within `wait`.
  std::optional<std::pair<std::string, Result>> TryNext(std::chrono::milliseconds wait);

 private:
  zmq::socket_t socket_;
};

inline constexpr auto kGuardTime = std::chrono::seconds(60);

// Built with ASan or TSan: memory figures mean little (quarantine, shadow),
// and address-space limits cannot apply.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif

}  // namespace umi::testing
