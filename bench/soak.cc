// umi_soak: a long run of mixed tasks with faults through one real umi-host
// (scripts/soak). Every message sent must get exactly one result; the
// host's resident memory is sampled to show it stops growing after warm-up.
//
// The mix (per message, from a seeded PRNG): noop; a plugin that throws; one
// that segfaults in a worker process (isolation: process); sleeps cut short
// by timeout_ms; unknown plugins; malformed bytes; retries of an id already
// sent (answered from the dedup window, or refused while it runs).
//
// --redis: the same through a farm of three hosts on Redis Streams (a
// redis-server in a temp dir), produced with umi/redis_client.hpp; every
// 100,000 results one of the second and third hosts is SIGKILLed and started
// again under its name. Every task must be answered once; the first host's
// RSS and Redis' memory are sampled (the client trims its reply stream).
#include <CLI/CLI.hpp>
#include <signal.h>
#include <sys/wait.h>
#include <umi/redis_client.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "support/host_process.h"
#include "support/redis_server.h"
#include "support/wire.h"

namespace {

using umi::testing::HostProcess;
using umi::testing::PackTask;

int64_t StatusKiB(pid_t pid, const std::string& field) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1));
  }
  return -1;
}

std::string FaultyConfig() {
  return umi::testing::TestConfigYaml("  faulty: {isolation: process, processes: 2}\n") +
         "transport: {tasks_hwm: 10000}\n";
}

std::string PackText(const std::map<std::string, std::string>& values) {
  msgpack::sbuffer buffer;
  msgpack::pack(buffer, values);
  return std::string(buffer.data(), buffer.size());
}

int64_t RedisUsedMemory(umi::testing::RedisClient& redis) {
  const std::string info = umi::ReplyText(redis.Command({"INFO", "memory"}).get());
  const size_t at = info.find("used_memory:");
  return at == std::string::npos ? -1 : std::stoll(info.substr(at + 12));
}

int RunOnRedis(int64_t total, size_t window, double segv_rate) {
  using umi::testing::RedisServer;
  umi::testing::RedisServer redis;
  umi::testing::RedisClient inspect(redis.url());
  auto start_host = [&](int index) {
    return std::make_unique<HostProcess>(HostProcess::Options{
        .config_yaml = FaultyConfig(),
        .plugin_dirs = {UMI_TEST_PLUGIN_DIR, UMI_TEST_INSPECT_PLUGIN_DIR},
        .extra_args = {"--redis", redis.url()},
        .log_level = "error",
        .name = "soak-" + std::to_string(index)});
  };
  std::vector<std::unique_ptr<HostProcess>> hosts;
  for (int i = 0; i < 3; ++i) hosts.push_back(start_host(i));
  umi::RedisClient producer({.url = redis.url()});
  std::mt19937_64 random(20261202);
  std::uniform_real_distribution<double> pick(0, 1);
  auto next_task = [&](int64_t i) -> umi::TaskRequest {
    const std::string id = "r" + std::to_string(i);
    const double p = pick(random);
    if (p < segv_rate) return {.id = id, .plugin = "faulty", .input = PackText({{"mode", "segv"}})};
    if (p < 0.02) return {.id = id, .plugin = "faulty", .input = PackText({{"mode", "throw"}})};
    if (p < 0.03) return {.id = id, .plugin = "sleep", .input = umi::PackMap({{"ms", 50}}), .timeout_ms = 2};
    if (p < 0.04) return {.id = id, .plugin = "sleep", .input = umi::PackMap({{"ms", -1}})};
    if (p < 0.05) return {.id = id, .plugin = "sleep", .input = umi::PackMap({{"ms", 1}})};
    return {.id = id, .plugin = "noop"};
  };
  std::map<std::string, int64_t> by_status;
  std::vector<std::tuple<int64_t, int64_t, int64_t>> samples;  // (results so far, first host's RSS KiB, Redis bytes)
  int64_t sent = 0, received = 0, kills = 0;
  const auto start = std::chrono::steady_clock::now();
  while (received < total) {
    while (sent < total && producer.pending() < window) producer.Submit(next_task(sent++));
    const std::optional<umi::TaskOutcome> outcome = producer.Next(std::chrono::seconds(60));
    if (!outcome) {
      std::printf("no result for 60 s with %zu task(s) unanswered\n", producer.pending());
      break;
    }
    ++by_status[outcome->status == "ok" ? "ok" : outcome->status + "/" + outcome->error_code];
    if (++received % 100000 == 0 || received == total) {
      samples.emplace_back(received, StatusKiB(hosts[0]->pid(), "VmRSS"), RedisUsedMemory(inspect));
      if (received < total) {
        const size_t victim = 1 + static_cast<size_t>(kills++ % 2);
        kill(hosts[victim]->pid(), SIGKILL);
        waitpid(hosts[victim]->pid(), nullptr, 0);
        hosts[victim] = start_host(static_cast<int>(victim));
      }
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const int64_t waiting = inspect.Pending("umi:tasks:noop") + inspect.Pending("umi:tasks:sleep") +
                          inspect.Pending("umi:tasks:faulty");
  std::printf("| tasks sent | outcomes | hosts SIGKILLed and restarted | tasks/s | still pending in Redis |\n"
              "|---|---|---|---|---|\n");
  std::printf("| %lld | %lld | %lld | %.0f | %lld |\n\n", static_cast<long long>(sent),
              static_cast<long long>(received), static_cast<long long>(kills), static_cast<double>(received) / seconds,
              static_cast<long long>(waiting));
  std::printf("| outcome | count |\n|---|---|\n");
  for (const auto& [status, count] : by_status) std::printf("| %s | %lld |\n", status.c_str(), static_cast<long long>(count));
  std::printf("\n| results so far | soak-0 RSS MiB | Redis used_memory MiB |\n|---|---|---|\n");
  for (const auto& [at, kib, bytes] : samples) {
    std::printf("| %lld | %.1f | %.1f |\n", static_cast<long long>(at), static_cast<double>(kib) / 1024,
                static_cast<double>(bytes) / (1 << 20));
  }
  const bool all_answered = received == sent && sent == total && waiting == 0;
  std::printf("\n%s\n", all_answered ? "every task got exactly one outcome" : "MISMATCH");
  return all_answered ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Soak test: mixed tasks with faults through one umi-host"};
  int64_t total = 1000000;
  size_t window = 2000;
  double segv_rate = 0.0001;
  app.add_option("--tasks", total, "Messages to send")->capture_default_str();
  app.add_option("--window", window, "Messages in flight")->capture_default_str();
  app.add_option("--segv-rate", segv_rate, "Share of tasks that crash their worker process")->capture_default_str();
  bool redis = false;
  app.add_flag("--redis", redis, "Through three hosts on Redis Streams, one killed and restarted every 100,000");
  CLI11_PARSE(app, argc, argv);
  if (redis) return RunOnRedis(total, window, segv_rate);

  HostProcess host({.config_yaml = FaultyConfig(),
                    .plugin_dirs = {UMI_TEST_PLUGIN_DIR, UMI_TEST_INSPECT_PLUGIN_DIR},
                    .log_level = "error"});
  std::mt19937_64 random(20261127);
  std::uniform_real_distribution<double> pick(0, 1);
  std::map<std::string, int64_t> by_status;
  std::vector<std::pair<int64_t, int64_t>> rss;  // (results so far, KiB)
  int64_t sent = 0, received = 0;
  const auto start = std::chrono::steady_clock::now();

  auto next_message = [&](int64_t i) -> std::string {
    const std::string id = "s" + std::to_string(i);
    const double p = pick(random);
    if (p < segv_rate) return PackTask({.id = id, .plugin = "faulty", .string_input = {{"mode", "segv"}}});
    if (p < 0.02) return PackTask({.id = id, .plugin = "faulty", .string_input = {{"mode", "throw"}}});
    if (p < 0.03) return PackTask({.id = id, .plugin = "sleep", .input = {{"ms", 50}}, .timeout_ms = 2});
    if (p < 0.04) return PackTask({.id = id, .plugin = "no_such_plugin"});
    if (p < 0.06) return std::string("\x93\x01\x02", 3) + id;  // not a map, trailing bytes
    if (p < 0.065 && i > 0) {
      return PackTask({.id = "s" + std::to_string(i - 1 - static_cast<int64_t>(pick(random) * 1000) % i),
                       .plugin = "noop"});
    }
    return PackTask({.id = id, .plugin = "noop"});
  };

  while (received < total) {
    while (sent < total && static_cast<size_t>(sent - received) < window) host.Send(next_message(sent++));
    const umi::testing::Result result = host.NextResult();
    ++by_status[result.status == "rejected" ? "rejected/" + result.error_code : result.status];
    if (++received % (total / 10 > 0 ? total / 10 : 1) == 0) rss.emplace_back(received, StatusKiB(host.pid(), "VmRSS"));
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const int64_t peak = StatusKiB(host.pid(), "VmHWM");
  // The host's own count of results it sent: none beyond one per message.
  umi::testing::RpcClient rpc(host.context(), host.endpoint("rpc"));
  rpc.Send(umi::testing::PackControl("stats"));
  const std::string reply = rpc.Receive();
  const msgpack::object_handle handle = msgpack::unpack(reply.data(), reply.size());
  int64_t host_results = 0;
  for (const auto& [status, count] :
       handle.get().as<std::map<std::string, msgpack::object>>().at("done").as<std::map<std::string, int64_t>>()) {
    host_results += count;
  }
  const int exit_code = host.Stop();

  std::printf("| messages sent | results received | results the host sent | messages/s | peak RSS MiB | host exit |\n"
              "|---|---|---|---|---|---|\n");
  std::printf("| %lld | %lld | %lld | %.0f | %.1f | %d |\n\n", static_cast<long long>(sent),
              static_cast<long long>(received), static_cast<long long>(host_results),
              static_cast<double>(received) / seconds, static_cast<double>(peak) / 1024, exit_code);
  std::printf("| outcome | count |\n|---|---|\n");
  for (const auto& [status, count] : by_status) std::printf("| %s | %lld |\n", status.c_str(), static_cast<long long>(count));
  std::printf("\n| results so far | RSS MiB |\n|---|---|\n");
  for (const auto& [at, kib] : rss) std::printf("| %lld | %.1f |\n", static_cast<long long>(at), static_cast<double>(kib) / 1024);
  const bool all_answered = received == sent && host_results == sent && exit_code == 0;
  std::printf("\n%s\n", all_answered ? "every message got exactly one result" : "MISMATCH");
  return all_answered ? 0 : 1;
}
