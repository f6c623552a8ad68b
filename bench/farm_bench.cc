// Farm benchmarks: several real umi-host processes on loopback, ZeroMQ PUSH
// fan-out next to Redis Streams pull (a real redis-server), in one run.
//
//   F1  mismatched hosts: one 8-slot host and two 2-slot hosts, 120 tasks of
//       50-600 ms; makespan against a perfect pull (a greedy list schedule
//       over all 12 slots in submission order)
//   F2  heterogeneous hosts: one GPU host and two CPU-only hosts, 9 GPU tasks
//       and 36 CPU tasks mixed; tasks that end ok, makespan against the GPU
//       lower bound (the GPU tasks one after another on the one GPU)
//   F4  no-op throughput through Redis with 1 and 3 hosts, next to
//       redis-benchmark's XADD rate on the same server
//   F3  a host SIGKILLed 0.5 s into 90 tasks of 200 ms on three hosts: tasks
//       lost, and the time from the kill until every result is back
//
//   umi_farm_bench [--only F1 ... --only F4] [--f4-tasks 100000]
#include <CLI/CLI.hpp>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zmq_addon.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <fstream>
#include <map>
#include <memory>
#include <queue>
#include <set>
#include <sstream>
#include <thread>
#include <string>
#include <vector>

#include "support/host_process.h"
#include "support/redis_server.h"
#include "support/wire.h"

using namespace umi::testing;
using Clock = std::chrono::steady_clock;

namespace {

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

constexpr int kAuto = -1;  // transport.prefetch left at its default (auto)
// --dedup-window-s: the hosts' dedup.window_s, which is also how long each
// keeps its results in Redis for lookups by id (0: not kept); below 0: the default.
double dedup_window_s = -1;

std::string PoolYaml(int slots, bool gpu, int prefetch = kAuto) {
  return "hardware:\n  cpu: {cores: " + std::to_string(slots) + ", threads: " + std::to_string(slots) +
         ", max_concurrent_tasks: " + std::to_string(slots) + "}\n" +
         (gpu ? "  gpu: {count: 1, model: bench, memory_gb: 24}\n" : "") +
         "  memory: {total_gb: 64}\nplugins:\n  sleep: {cpu_cores: 1, threads: 1, memory_mb: 1}\n" +
         (gpu ? "  gpu_sleep: {cpu_cores: 1, threads: 1, memory_mb: 1, gpu_count: 1, exclusive_gpu: true}\n" : "") +
         (prefetch != kAuto ? "transport: {prefetch: " + std::to_string(prefetch) + "}\n" : "") +
         (dedup_window_s >= 0 ? "dedup: {window_s: " + std::to_string(dedup_window_s) + "}\n" : "");
}

struct HostSpec {
  int slots;
  bool gpu;
  int prefetch = kAuto;
};

// Waits until `count` peers completed their handshake with a bound socket.
class PeerCounter : public zmq::monitor_t {
 public:
  void on_event_handshake_succeeded(const zmq_event_t&, const char*) override { ++peers; }
  int peers = 0;
};

// The farm on ZeroMQ: the bench binds PUSH and PULL, every host connects.
class ZmqFarm {
 public:
  explicit ZmqFarm(const std::vector<HostSpec>& specs)
      : tasks_(context_, zmq::socket_type::push), results_(context_, zmq::socket_type::pull) {
    tasks_.bind("tcp://127.0.0.1:*");
    results_.bind("tcp://127.0.0.1:*");
    PeerCounter counter;
    counter.init(tasks_, "inproc://farm-monitor", ZMQ_EVENT_HANDSHAKE_SUCCEEDED);
    for (size_t i = 0; i < specs.size(); ++i) {
      HostProcess::Options options{.config_yaml = PoolYaml(specs[i].slots, specs[i].gpu), .log_level = "error"};
      options.tasks_endpoint = ">" + tasks_.get(zmq::sockopt::last_endpoint);
      options.results_endpoint = ">" + results_.get(zmq::sockopt::last_endpoint);
      options.name = "zmq-" + std::to_string(i);
      options.connect_harness = false;
      hosts_.push_back(std::make_unique<HostProcess>(options));
    }
    // PUSH deals only to connected peers: wait for all of them.
    while (counter.peers < static_cast<int>(specs.size())) counter.check_event(1000);
  }
  void Send(const std::string& bytes) { tasks_.send(zmq::buffer(bytes)); }
  Result Next() {
    zmq::message_t message;
    if (!results_.recv(message)) throw std::runtime_error("no result");
    return ParseResult(message.to_string());
  }

 private:
  zmq::context_t context_;
  zmq::socket_t tasks_, results_;
  std::vector<std::unique_ptr<HostProcess>> hosts_;
};

// The farm on Redis Streams.
class RedisFarm {
 public:
  // `tcp`: hosts and producer reach Redis over loopback TCP, as across machines.
  explicit RedisFarm(const std::vector<HostSpec>& specs, bool tcp = false)
      : redis_(false, {}, tcp), producer_(tcp ? redis_.tcp_url() : redis_.url()) {
    for (size_t i = 0; i < specs.size(); ++i) {
      HostProcess::Options options{.config_yaml = PoolYaml(specs[i].slots, specs[i].gpu, specs[i].prefetch),
                                   .log_level = "error"};
      options.name = "redis-" + std::to_string(i);
      options.extra_args = {"--redis", tcp ? redis_.tcp_url() : redis_.url()};
      hosts_.push_back(std::make_unique<HostProcess>(options));
    }
  }
  void Send(const std::string& plugin, const std::string& bytes) { producer_.Submit(plugin, bytes); }
  std::vector<Result> Results(size_t count) { return producer_.Results(count); }
  std::string url() const { return redis_.url(); }
  int port() const { return redis_.port(); }
  pid_t redis_pid() const { return redis_.pid(); }
  std::string socket() const { return redis_.url().substr(std::string("unix://").size()); }
  HostProcess& host(size_t i) { return *hosts_[i]; }
  void Replace(size_t i, std::unique_ptr<HostProcess> host) { hosts_[i] = std::move(host); }

 private:
  RedisServer redis_;
  RedisClient producer_;
  std::vector<std::unique_ptr<HostProcess>> hosts_;
};

struct Job {
  std::string id;
  std::string plugin;
  int ms;
};

// A greedy list schedule: each task, in order, to the slot that frees first.
double PerfectPull(const std::vector<Job>& jobs, int slots) {
  std::priority_queue<double, std::vector<double>, std::greater<>> free_at;
  for (int i = 0; i < slots; ++i) free_at.push(0);
  double makespan = 0;
  for (const Job& job : jobs) {
    const double start = free_at.top();
    free_at.pop();
    free_at.push(start + job.ms / 1000.0);
    makespan = std::max(makespan, start + job.ms / 1000.0);
  }
  return makespan;
}

struct Outcome {
  double makespan = 0;
  size_t ok = 0;
  std::map<std::string, size_t> by_code;  // what did not end ok
};

template <typename Farm>
Outcome Run(Farm& farm, const std::vector<Job>& jobs) {
  Outcome outcome;
  const auto start = Clock::now();
  for (const Job& job : jobs) {
    const std::string bytes = PackTask({.id = job.id, .plugin = job.plugin, .input = {{"ms", job.ms}}});
    if constexpr (std::is_same_v<Farm, RedisFarm>) {
      farm.Send(job.plugin, bytes);
    } else {
      farm.Send(bytes);
    }
  }
  std::vector<Result> results;
  if constexpr (std::is_same_v<Farm, RedisFarm>) {
    results = farm.Results(jobs.size());
  } else {
    for (size_t i = 0; i < jobs.size(); ++i) results.push_back(farm.Next());
  }
  outcome.makespan = Seconds(Clock::now() - start);
  for (const Result& r : results) {
    if (r.status == "ok") {
      ++outcome.ok;
    } else {
      ++outcome.by_code[r.status + "/" + r.error_code];
    }
  }
  return outcome;
}

std::string Codes(const Outcome& outcome) {
  std::string text;
  for (const auto& [code, count] : outcome.by_code) text += (text.empty() ? "" : ", ") + std::to_string(count) + " " + code;
  return text.empty() ? "-" : text;
}

void Mismatched() {
  const std::vector<HostSpec> hosts = {{8, false}, {2, false}, {2, false}};
  std::vector<Job> jobs;
  uint32_t seed = 12345;
  for (int i = 0; i < 120; ++i) {
    seed = seed * 1103515245 + 12345;
    jobs.push_back({"f1-" + std::to_string(i), "sleep", 50 + static_cast<int>((seed >> 16) % 551)});
  }
  const double bound = PerfectPull(jobs, 12);
  ZmqFarm zmq_farm(hosts);
  const Outcome zmq = Run(zmq_farm, jobs);
  RedisFarm redis_farm(hosts);
  const Outcome redis = Run(redis_farm, jobs);
  std::printf("F1: mismatched hosts (8 + 2 + 2 slots), 120 tasks of 50-600 ms; perfect pull %.2f s\n", bound);
  std::printf("   transport   ok   makespan_s  vs_perfect\n");
  std::printf("   zeromq     %3zu      %6.2f      %.3f\n", zmq.ok, zmq.makespan, bound / zmq.makespan);
  std::printf("   redis      %3zu      %6.2f      %.3f\n\n", redis.ok, redis.makespan, bound / redis.makespan);
}

void Heterogeneous() {
  const std::vector<HostSpec> hosts = {{4, true}, {4, false}, {4, false}};
  std::vector<Job> jobs;
  double gpu_bound = 0;
  for (int i = 0; i < 45; ++i) {
    const bool gpu = i % 5 == 0;
    jobs.push_back({"f2-" + std::to_string(i), gpu ? "gpu_sleep" : "sleep", gpu ? 300 : 200});
    if (gpu) gpu_bound += 0.3;
  }
  ZmqFarm zmq_farm(hosts);
  const Outcome zmq = Run(zmq_farm, jobs);
  RedisFarm redis_farm(hosts);
  const Outcome redis = Run(redis_farm, jobs);
  std::printf("F2: one GPU host and two CPU-only hosts, 9 GPU + 36 CPU tasks; GPU bound %.2f s\n", gpu_bound);
  std::printf("   transport   ok   makespan_s  vs_gpu_bound  not ok\n");
  std::printf("   zeromq     %3zu      %6.2f       %.3f     %s\n", zmq.ok, zmq.makespan, gpu_bound / zmq.makespan,
              Codes(zmq).c_str());
  std::printf("   redis      %3zu      %6.2f       %.3f     %s\n\n", redis.ok, redis.makespan,
              gpu_bound / redis.makespan, Codes(redis).c_str());
}

// `up_for`: how long the farm runs before the tasks come (a farm that just
// started holds back claims for a lease and a backoff: Redis may have just
// come back, see RedisTransport::RedisWasCalm).
void KilledHost(std::chrono::milliseconds up_for) {
  const std::vector<HostSpec> hosts = {{4, false}, {4, false}, {4, false}};
  RedisFarm farm(hosts);
  std::this_thread::sleep_for(up_for);
  std::vector<Job> jobs;
  for (int i = 0; i < 90; ++i) jobs.push_back({"f3-" + std::to_string(i), "sleep", 200});
  const auto start = Clock::now();
  for (const Job& job : jobs) farm.Send(job.plugin, PackTask({.id = job.id, .plugin = job.plugin, .input = {{"ms", job.ms}}}));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the scenario: a kill 0.5 s in
  const pid_t victim = farm.host(0).pid();
  kill(victim, SIGKILL);
  const auto killed_at = Clock::now();
  waitpid(victim, nullptr, 0);
  std::set<std::string> answered;
  size_t ok = 0;
  for (const Result& r : farm.Results(jobs.size())) {
    if (answered.insert(r.id.value_or("")).second && r.status == "ok") ++ok;
  }
  const double back = Seconds(Clock::now() - killed_at);
  std::printf("F3: 3 hosts x 4 slots, 90 tasks of 200 ms, one host SIGKILLed 0.5 s in (redis), the farm up %.1f s "
              "before\n",
              up_for.count() / 1000.0);
  std::printf("   ok %zu/%zu, lost %zu, all back %.2f s after the kill (makespan %.2f s; heartbeat 0.5 s, dead after 1.5 s)\n\n",
              ok, jobs.size(), jobs.size() - answered.size(), back, Seconds(Clock::now() - start));
}

// redis-benchmark's XADD rate (20 clients, no pipelining) on `farm`'s server.
double XaddRate(RedisFarm& farm, bool tcp) {
  std::vector<std::string> args = {"/usr/bin/redis-benchmark"};
  if (tcp) {
    args.insert(args.end(), {"-h", "127.0.0.1", "-p", std::to_string(farm.port())});
  } else {
    args.insert(args.end(), {"-s", farm.socket()});
  }
  args.insert(args.end(), {"-c", "20", "-n", "100000", "-q", "XADD", "bench:stream", "*", "f", "v"});
  const CommandOutput bench = RunCommand(args);
  const size_t colon = bench.out.rfind(": ");
  return colon == std::string::npos ? 0 : std::atof(bench.out.c_str() + colon + 2);
}

// CPU seconds (user + system) the farm's host processes used so far.
// User plus system CPU seconds of a process so far.
double CpuSeconds(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  // pid (comm) state ppid ... utime (14th field) stime (15th); comm may hold spaces.
  std::istringstream fields(line.substr(line.rfind(')') + 2));
  std::string skip;
  for (int field = 3; field < 14; ++field) fields >> skip;
  long long utime = 0, stime = 0;
  fields >> utime >> stime;
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// This process's user plus system CPU seconds so far (all its threads).
double OwnCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec + (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

double HostCpuSeconds(RedisFarm& farm, size_t hosts) {
  double total = 0;
  for (size_t h = 0; h < hosts; ++h) total += CpuSeconds(farm.host(h).pid());
  return total;
}

// No-op tasks through Redis with 1 and 3 hosts, next to redis-benchmark's
// XADD rate on the same server and the same kind of connection (loopback
// TCP, as hosts on other machines reach Redis, or a unix socket), measured
// right before each row: on a shared VM the reference itself moves 2x
// within minutes.
void Throughput(int count) {
  struct Row {
    size_t hosts;
    int prefetch;
    bool tcp;
  };
  std::printf("F4: %d noop tasks through Redis (producer pipelines 500 XADDs at a time)\n", count);
  std::printf("   link   hosts  prefetch  tasks_per_s  xadd_per_s  vs_xadd  host_cpu_us/task  redis_cpu_us/task  "
              "bench_cpu_us/task  cpus_busy\n");
  for (const Row& row : {Row{1, kAuto, true}, Row{3, kAuto, true}, Row{3, 0, true}, Row{3, kAuto, false}}) {
    RedisFarm farm(std::vector<HostSpec>(row.hosts, HostSpec{8, false, row.prefetch}), row.tcp);
    const double xadd = XaddRate(farm, row.tcp);
    umi::RedisConnection producer;
    (void)producer.Connect(umi::RedisUrl::Parse(row.tcp ? "redis://127.0.0.1:" + std::to_string(farm.port()) : farm.url())
                               .value(),
                           std::chrono::seconds(60));
    const std::string prefix = "f4-" + std::to_string(row.hosts) + "-" + std::to_string(row.prefetch) + "-" +
                               (row.tcp ? "tcp" : "unix") + "-";
    const double redis_cpu_before = CpuSeconds(farm.redis_pid());
    const double own_cpu_before = OwnCpuSeconds();
    const auto start = Clock::now();
    for (int sent = 0; sent < count;) {
      std::vector<std::vector<std::string>> batch;
      for (; sent < count && batch.size() < 500; ++sent) {
        batch.push_back({"XADD", "umi:tasks:noop", "*", "m", PackTask({.id = prefix + std::to_string(sent), .plugin = "noop"})});
      }
      (void)producer.Pipeline(batch);
    }
    size_t ok = 0;
    for (const Result& r : farm.Results(static_cast<size_t>(count))) ok += r.status == "ok";
    const double rate = count / Seconds(Clock::now() - start);
    const double host_us = HostCpuSeconds(farm, row.hosts) * 1e6 / count;
    const double redis_us = (CpuSeconds(farm.redis_pid()) - redis_cpu_before) * 1e6 / count;
    const double own_us = (OwnCpuSeconds() - own_cpu_before) * 1e6 / count;
    std::printf("   %-5s  %5zu  %8s  %11.0f  %10.0f  %7.3f  %16.1f  %17.1f  %15.1f  %10.2f   (%zu ok)\n",
                row.tcp ? "tcp" : "unix", row.hosts, row.prefetch == kAuto ? "auto" : std::to_string(row.prefetch).c_str(),
                rate, xadd, xadd > 0 ? rate / xadd : 0.0, host_us, redis_us, own_us,
                (host_us + redis_us + own_us) * rate / 1e6, ok);
  }
  std::printf("   xadd: redis-benchmark -c 20 XADD on the same server and link, no pipelining, just before the row\n");
  std::printf("   host_cpu_us/task: CPU time (user + system, start-up included) of all the row's hosts, per task\n");
  std::printf("   redis_cpu_us/task: redis-server's CPU time from the first XADD to the last result, per task\n");
  std::printf("   bench_cpu_us/task: this process's (the producer's XADDs, the collector's reads); cpus_busy: the three\n"
              "   together, in CPUs kept busy at the row's rate (this machine has %u)\n\n",
              std::thread::hardware_concurrency());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Farm benchmarks: ZeroMQ fan-out next to Redis Streams pull, real hosts on loopback"};
  std::set<std::string> only;
  app.add_option("--only", only, "Run only these (F1, F2, F3, F4)");
  int throughput_tasks = 100000;
  app.add_option("--f4-tasks", throughput_tasks, "No-op tasks per F4 run")->capture_default_str();
  app.add_option("--dedup-window-s", dedup_window_s,
                 "The hosts' dedup.window_s, also how long they keep results in Redis (0: not kept; default: theirs)");
  CLI11_PARSE(app, argc, argv);
  auto wanted = [&only](const char* name) { return only.empty() || only.count(name) > 0; };
  if (wanted("F1")) Mismatched();
  if (wanted("F2")) Heterogeneous();
  if (wanted("F3")) {
    KilledHost(std::chrono::milliseconds(0));
    KilledHost(std::chrono::milliseconds(3000));
  }
  if (wanted("F4")) Throughput(throughput_tasks);
  return 0;
}
