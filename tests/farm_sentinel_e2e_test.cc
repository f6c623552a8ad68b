// A farm behind Redis Sentinel (redis+sentinel://): a real master, replica
// and sentinel (redis-server --sentinel) on loopback. The master is killed
// while tasks run; Sentinel promotes the replica; the host asks Sentinel
// again as it reconnects, writes its held results to the new master, and
// every id is answered exactly once there.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <set>
#include <thread>

#include "support/host_process.h"
#include "support/redis_server.h"

namespace umi::testing {
namespace {

// A redis-server process of the test's own (a replica, or a sentinel),
// killed at the end; ready once it accepts connections.
class RedisProcess {
 public:
  explicit RedisProcess(std::vector<std::string> args) {
    int out = -1;
    pid_ = Spawn(std::move(args), &out);
    std::string seen;
    char buffer[4096];
    while (seen.find("Ready to accept connections") == std::string::npos &&
           seen.find("ready to accept connections") == std::string::npos &&
           seen.find("Sentinel ID is") == std::string::npos) {
      const ssize_t n = read(out, buffer, sizeof(buffer));
      if (n <= 0) throw std::runtime_error("redis-server did not start: " + seen);
      seen.append(buffer, static_cast<size_t>(n));
    }
    out_ = out;  // kept open: closing it would fail the server's next log line
  }
  ~RedisProcess() {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    close(out_);
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
};

TEST(FarmSentinel, AFailoverMidRunAnswersEveryIdOnceOnTheNewMaster) {
  RedisServer master(/*append_only=*/true, "", /*tcp=*/true);
  TempDir dir;
  const int replica_port = FreeLoopbackPort();
  RedisProcess replica({"/usr/bin/redis-server", "--port", std::to_string(replica_port), "--bind", "127.0.0.1",
                        "--dir", dir.path().string(), "--save", "", "--appendonly", "yes", "--replicaof",
                        "127.0.0.1", std::to_string(master.port())});
  const int sentinel_port = FreeLoopbackPort();
  const auto config = dir.Write("sentinel.conf", "port " + std::to_string(sentinel_port) +
                                                     "\nbind 127.0.0.1\ndir " + dir.path().string() +
                                                     "\nsentinel monitor farm 127.0.0.1 " +
                                                     std::to_string(master.port()) +
                                                     " 1\nsentinel down-after-milliseconds farm 500\n"
                                                     "sentinel failover-timeout farm 3000\n");
  RedisProcess sentinel({"/usr/bin/redis-server", config.string(), "--sentinel"});
  RedisClient ask_sentinel("redis://127.0.0.1:" + std::to_string(sentinel_port));
  ASSERT_TRUE(Eventually([&] {
    return ask_sentinel.Command({"SENTINEL", "replicas", "farm"})->elements > 0;
  })) << "the sentinel found the replica";

  HostProcess::Options options = FarmHost(master, "sentinel-host");
  options.extra_args = {"--redis", "redis+sentinel://127.0.0.1:" + std::to_string(sentinel_port) + "/farm"};
  HostProcess host(options);
  EventsClient events(host.context(), host.endpoint("events"));
  AwaitSubscription(host, events);
  std::set<std::string> ids;
  {
    RedisClient producer(master.url());
    for (int i = 0; i < 12; ++i) {
      const std::string id = "t" + std::to_string(i);
      producer.Submit("sleep", PackTask({.id = id, .plugin = "sleep", .input = {{"ms", 400}}}));
      ids.insert(id);
    }
    producer.Command({"WAIT", "1", "5000"});  // the tasks are on the replica before the master dies
  }
  AwaitStarted(events, 8);
  master.Kill();
  const std::string new_master = "127.0.0.1:" + std::to_string(replica_port);
  ASSERT_TRUE(Eventually([&] {
    const RedisReply named = ask_sentinel.Command({"SENTINEL", "get-master-addr-by-name", "farm"});
    return named->elements == 2 && ReplyText(named->element[1]) == std::to_string(replica_port);
  })) << "Sentinel promoted the replica";

  RedisClient collector("redis://" + new_master);
  std::map<std::string, int> results;
  for (const Result& r : collector.Results(ids.size())) {
    EXPECT_EQ(r.status, "ok") << r.error_message;
    ++results[r.id.value_or("")];
  }
  for (const std::string& id : ids) EXPECT_EQ(results[id], 1) << id;
  ASSERT_TRUE(Eventually([&] { return collector.Pending("umi:tasks:sleep") == 0; })) << "nothing left pending";
  EXPECT_EQ(collector.Command({"XLEN", "umi:results"})->integer, static_cast<long long>(ids.size()));
}

}  // namespace
}  // namespace umi::testing
