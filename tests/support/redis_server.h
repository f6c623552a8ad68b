// RedisServer: a real redis-server for a test, in a temp dir, reached over a
// unix socket; started before the test's hosts and killed at the end (no
// server is left running). Start waits for its "ready to accept
// connections" line, an event rather than a sleep. RedisClient is the
// producer's side: XADD tasks, read results with a blocking XREAD.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "support/host_process.h"
#include "transport/redis_connection.h"
#include "wire.h"

namespace umi::testing {

class RedisServer {
 public:
  // `password`: the server requires AUTH with it (requirepass).
  // `tcp`: also listen on a free loopback port (tcp_url), as a farm's
  // hosts on other machines would reach it.
  explicit RedisServer(bool append_only = false, std::string password = {}, bool tcp = false);
  ~RedisServer();
  std::string url() const { return "unix://" + socket_; }
  std::string tcp_url() const { return "redis://127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  // SIGKILL and start again on the same socket and data (with AOF, what
  // was acknowledged survives).
  void Restart();
  // SIGSTOP, then SIGCONT after `frozen`: a server that stops answering
  // (a pause, a swap storm) without closing its connections.
  void Freeze(std::chrono::milliseconds frozen);
  // SIGKILL, not started again (a dead master, for a failover).
  void Kill();

 private:
  void Start();
  TempDir dir_;
  std::string socket_;
  bool append_only_;
  std::string password_;
  int port_ = 0;
  pid_t pid_ = -1;
  int log_fd_ = -1;
};

class RedisClient {
 public:
  explicit RedisClient(const std::string& url);
  // XADD umi:tasks:<plugin> * <field> <bytes>; returns the entry id.
  std::string Submit(const std::string& plugin, const std::string& bytes, const std::string& field = "m");
  // The next `count` results from `stream` (blocking XREAD, throws after the guard time).
  std::vector<Result> Results(size_t count, const std::string& stream = "umi:results");
  // Entries of group umi pending on `stream` (0 before a host created the group).
  long long Pending(const std::string& stream);
  RedisReply Command(const std::vector<std::string>& args);

 private:
  RedisConnection connection_;
  std::string last_id_ = "0";
};

// A loopback TCP port free right now (the kernel's pick for a bound socket).
int FreeLoopbackPort();

// Options for a host of a farm on `redis` (--redis), named `name`.
HostProcess::Options FarmHost(const RedisServer& redis, const std::string& name, std::string yaml = TestConfigYaml());

// PUB drops what is published before a subscription lands: sends warm-up
// tasks over ZeroMQ until one shows up as an event.
void AwaitSubscription(HostProcess& host, EventsClient& events);

// Waits until `count` tasks whose id starts with `prefix` have started.
void AwaitStarted(EventsClient& events, int count, const std::string& prefix = "t");

// Polls `done` (a metric, a key, a process) every 50 ms until it holds;
// false after `within`. For state that no event announces.
template <typename Predicate>
bool Eventually(Predicate done, std::chrono::seconds within = std::chrono::seconds(60)) {
  for (const auto until = std::chrono::steady_clock::now() + within; std::chrono::steady_clock::now() < until;
       std::this_thread::sleep_for(std::chrono::milliseconds(50))) {
    if (done()) return true;
  }
  return false;
}

// The value of an unlabelled sample of the host's /metrics; -1 when absent.
double MetricValue(const HostProcess& host, const std::string& name);

}  // namespace umi::testing
