// The farm's chaos round: three real hosts on a real redis-server (AOF)
// under a mixed load while, one after another, a host freezes past its
// lease, Redis restarts, Redis fills to maxmemory, a host is SIGKILLed and
// started again under its name, and Redis freezes. The checker: every id
// has exactly one result on the reply stream, nothing is left pending, and
// no host that was not killed died. UMI_CHAOS_ROUNDS runs more rounds
// (scripts/soak --redis runs 20); ctest runs one.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include <umi/redis_streams.hpp>

#include "support/host_process.h"
#include "support/redis_server.h"

namespace umi::testing {
namespace {

using std::chrono::milliseconds;

int Rounds() {
  const char* rounds = std::getenv("UMI_CHAOS_ROUNDS");
  return rounds ? std::max(1, std::atoi(rounds)) : 1;
}

// A wave of tasks: sleep of 20-200 ms, noop, and every fifth urgent. A
// producer connection of its own: Redis may have restarted since the last.
void SubmitWave(const RedisServer& redis, int round, int wave, std::set<std::string>& ids) {
  RedisClient producer(redis.url());
  for (int i = 0; i < 15; ++i) {
    const std::string id = "r" + std::to_string(round) + "-w" + std::to_string(wave) + "-" + std::to_string(i);
    const bool noop = i % 3 == 0;
    const int64_t priority = i % 5 == 0 ? 9 : 0;
    const std::string task = PackTask({.id = id,
                                       .plugin = noop ? "noop" : "sleep",
                                       .input = noop ? std::map<std::string, int64_t>{}
                                                     : std::map<std::string, int64_t>{{"ms", 20 + 12 * i}},
                                       .priority = priority});
    producer.Command({"XADD", RedisTaskStream(noop ? "noop" : "sleep", priority), "*", "m", task});
    ids.insert(id);
  }
}

long long PendingEverywhere(RedisClient& inspect) {
  long long pending = 0;
  for (const char* plugin : {"noop", "sleep"}) {
    for (const int64_t level : kRedisPriorityLevels) pending += inspect.Pending(RedisLevelStream(plugin, level));
  }
  return pending;
}

bool Alive(pid_t pid) { return waitpid(pid, nullptr, WNOHANG) == 0; }

TEST(FarmChaos, EveryIdGetsExactlyOneResultThroughRedisAndHostFaults) {
  for (int round = 0; round < Rounds(); ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    RedisServer redis(/*append_only=*/true);
    auto frozen = std::make_unique<HostProcess>(FarmHost(redis, "chaos-a"));
    auto killed = std::make_unique<HostProcess>(FarmHost(redis, "chaos-b"));
    auto steady = std::make_unique<HostProcess>(FarmHost(redis, "chaos-c"));
    std::set<std::string> ids;

    SubmitWave(redis, round, 0, ids);
    kill(frozen->pid(), SIGSTOP);  // past its lease (1.5 s): the others take its entries
    std::this_thread::sleep_for(milliseconds(2500));
    kill(frozen->pid(), SIGCONT);

    SubmitWave(redis, round, 1, ids);
    redis.Restart();  // AOF: what was acknowledged survives

    SubmitWave(redis, round, 2, ids);
    {
      RedisClient admin(redis.url());
      admin.Command({"CONFIG", "SET", "maxmemory-policy", "noeviction"});
      admin.Command({"CONFIG", "SET", "maxmemory", "1"});
      std::this_thread::sleep_for(milliseconds(1000));
      admin.Command({"CONFIG", "SET", "maxmemory", "0"});
    }

    SubmitWave(redis, round, 3, ids);
    kill(killed->pid(), SIGKILL);
    waitpid(killed->pid(), nullptr, 0);
    killed = std::make_unique<HostProcess>(FarmHost(redis, "chaos-b"));  // again under its name

    SubmitWave(redis, round, 4, ids);
    redis.Freeze(milliseconds(1000));

    RedisClient collector(redis.url());
    std::map<std::string, int> results;
    std::map<std::string, int> by_status;
    for (const Result& r : collector.Results(ids.size())) {
      ++results[r.id.value_or("")];
      ++by_status[r.status + (r.error_code.empty() ? "" : "/" + r.error_code)];
    }
    for (const std::string& id : ids) EXPECT_EQ(results[id], 1) << id;
    RedisClient inspect(redis.url());
    EXPECT_TRUE(Eventually([&] { return PendingEverywhere(inspect) == 0; })) << "nothing left pending";
    EXPECT_EQ(inspect.Command({"XLEN", "umi:results"})->integer, static_cast<long long>(ids.size()))
        << "exactly one result per id on the stream, none late";
    EXPECT_TRUE(Alive(frozen->pid()));
    EXPECT_TRUE(Alive(killed->pid()));
    EXPECT_TRUE(Alive(steady->pid()));
    std::string statuses;
    for (const auto& [status, count] : by_status) statuses += " " + status + "=" + std::to_string(count);
    std::printf("chaos round %d: %zu ids, results:%s\n", round, ids.size(), statuses.c_str());
    if (HasFailure()) break;
  }
}

}  // namespace
}  // namespace umi::testing
