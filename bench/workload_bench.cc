// Workload benchmarks W1-W5 through the real umi-host (sleep/gpu_sleep
// plugins, so the scheduler is measured, not the CPU). Prints one table.
//
//   umi_workload_bench [--only W3] [--w3-tasks 2000] [--w4-noops 20000]
//   (workloads: W1..W5, E2E for throughput and rpc latency, Q1 for the memory
//   a queued task costs, M1..M4 media, S1 the sandbox's cost)
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <random>
#include <set>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support/host_process.h"
#include "support/wire.h"

using namespace umi::testing;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kSeedConfig = R"(hardware:
  cpu: {cores: 24, threads: 48, max_concurrent_tasks: 8}
  gpu: {count: 1, model: "bench GPU", memory_gb: 24}
  memory: {total_gb: 125.26}
task_groups:
  cpu_task: {threads: 4, memory_mb: 4096, max_instances: 8, cpu_cores: 2.0}
  gpu_task: {threads: 2, memory_mb: 2048, max_instances: 4, cpu_cores: 1.0}
plugins:
  sleep: {task_group: cpu_task}
  gpu_sleep: {task_group: gpu_task, gpu_count: 1, exclusive_gpu: true}
)";

constexpr const char* kWideConfig = R"(hardware:
  cpu: {cores: 24, threads: 48, max_concurrent_tasks: 48}
  gpu: {count: 1, model: "bench GPU", memory_gb: 24}
  memory: {total_gb: 128}
allow_task_overrides: true
scheduler: {max_queued: 200000}
)";

struct Row {
  std::string name;
  size_t tasks;
  double serial_s;
  double ideal_s;
  double measured_s;
  std::string note;
};

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// --host-binary, --plugin-dir: another build's, for an A/B run.
std::string host_binary = UMI_HOST_BINARY;
std::string plugin_dir = UMI_TEST_PLUGIN_DIR;

HostProcess::Options Options(const std::string& yaml) {
  return {.config_yaml = yaml, .plugin_dirs = {plugin_dir}, .binary = host_binary, .log_level = "error"};
}

// Sends every task, waits for every result; returns the makespan.
double RunAll(HostProcess& host, const std::vector<TaskSpec>& tasks) {
  const auto start = Clock::now();
  for (const TaskSpec& task : tasks) host.Send(PackTask(task));
  for (size_t i = 0; i < tasks.size(); ++i) {
    const Result r = host.NextResult();
    if (r.status != "ok") std::fprintf(stderr, "task %s: %s %s\n", r.id.value_or("?").c_str(), r.status.c_str(), r.error_message.c_str());
  }
  return Seconds(Clock::now() - start);
}

Row SeedWorkload(const std::string& name, const std::vector<std::pair<std::string, int>>& jobs) {
  HostProcess host(Options(kSeedConfig));
  std::vector<TaskSpec> tasks;
  double serial = 0, gpu_serial = 0, longest = 0;
  for (size_t i = 0; i < jobs.size(); ++i) {
    const auto& [plugin, ms] = jobs[i];
    tasks.push_back({.id = name + "-" + std::to_string(i), .plugin = plugin, .input = {{"ms", ms}}});
    serial += ms / 1000.0;
    if (plugin == "gpu_sleep") gpu_serial += ms / 1000.0;
    longest = std::max(longest, ms / 1000.0);
  }
  const double measured = RunAll(host, tasks);
  return {name, jobs.size(), serial, std::max(gpu_serial, longest), measured, "seed's case"};
}

Row MixedShapes(int count) {
  HostProcess host(Options(kWideConfig));
  std::mt19937 random(7);
  std::vector<TaskSpec> tasks;
  double serial = 0, gpu_seconds = 0, thread_seconds = 0, longest = 0;
  for (int i = 0; i < count; ++i) {
    const int ms = 10 + static_cast<int>(random() % 41);
    const bool gpu = random() % 10 == 0;
    const int threads = gpu ? 2 : 1 + static_cast<int>(random() % 8);
    TaskSpec task{.id = "w3-" + std::to_string(i), .plugin = gpu ? "gpu_sleep" : "sleep", .input = {{"ms", ms}}};
    task.resources = {{"cpu_threads", threads}, {"cpu_cores", threads / 2.0}};
    tasks.push_back(task);
    serial += ms / 1000.0;
    thread_seconds += threads * ms / 1000.0;
    if (gpu) gpu_seconds += ms / 1000.0;
    longest = std::max(longest, ms / 1000.0);
  }
  const double bound = std::max({gpu_seconds / 1, thread_seconds / 48, longest});
  const double measured = RunAll(host, tasks);
  char note[128];
  std::snprintf(note, sizeof(note), "bound: GPU %.2f s, threads %.2f s", gpu_seconds, thread_seconds / 48);
  return {"W3", tasks.size(), serial, bound, measured, note};
}

// Noop dispatch rate with `blocked` GPU tasks waiting behind a busy GPU.
double NoopRate(int blocked, int noops) {
  HostProcess host(Options(kWideConfig));
  host.Send(PackTask({.id = "holder", .plugin = "gpu_sleep", .input = {{"ms", 3600000}}}));
  for (int i = 0; i < blocked; ++i) {
    host.Send(PackTask({.id = "blocked-" + std::to_string(i), .plugin = "gpu_sleep", .input = {{"ms", 1}}}));
  }
  // Wait until the host has queued them all (stats over rpc).
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  while (true) {
    rpc.Send(PackControl("stats"));
    const std::string reply = rpc.Receive();
    const auto handle = msgpack::unpack(reply.data(), reply.size());
    const auto stats = handle.get().as<std::map<std::string, msgpack::object>>();
    if (stats.at("queued").as<int>() == blocked && stats.at("running").as<int>() == 1) break;
  }
  const auto start = Clock::now();
  for (int i = 0; i < noops; ++i) host.Send(PackTask({.id = "noop-" + std::to_string(i), .plugin = "noop"}));
  for (int i = 0; i < noops; ++i) host.NextResult();
  return noops / Seconds(Clock::now() - start);
}

// The host's resident memory (VmRSS), in bytes.
double RssBytes(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) * 1024;
  }
  return 0;
}

// Q1: the host's memory with `count` no-op tasks queued behind the one slot,
// which a long sleep holds; every task is read (max_queued: count).
void QueuedMemory(int count) {
  HostProcess host(Options(R"(hardware:
  cpu: {cores: 1, threads: 1, max_concurrent_tasks: 1}
  memory: {total_gb: 8}
scheduler: {max_queued: )" + std::to_string(count) + "}\n"));
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  auto stats = [&] {
    rpc.Send(PackControl("stats"));
    const std::string reply = rpc.Receive();
    const auto handle = msgpack::unpack(reply.data(), reply.size());
    const auto map = handle.get().as<std::map<std::string, msgpack::object>>();
    return std::make_pair(map.at("queued").as<int64_t>(), map.at("running").as<int64_t>());
  };
  host.Send(PackTask({.id = "holder", .plugin = "sleep", .input = {{"ms", 3600000}}}));
  while (stats().second != 1) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const double idle = RssBytes(host.pid());
  for (int i = 0; i < count; ++i) host.Send(PackTask({.id = "noop-" + std::to_string(i), .plugin = "noop"}));
  while (stats().first != count) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const double full = RssBytes(host.pid());
  std::printf("\nQ1: no-op tasks queued behind one held slot (ids noop-<n>): the host's RSS\n");
  std::printf("%10s %14s %14s %16s\n", "queued", "rss_idle_MiB", "rss_MiB", "bytes_per_task");
  std::printf("%10d %14.1f %14.1f %16.0f\n", count, idle / (1 << 20), full / (1 << 20), (full - idle) / count);
}

// Small tasks of staggered length (50-150 ms), so threads never all free up
// at once by chance: only the reservation lets the big task in.
Row Starvation() {
  const int reserve_ms = 500, small_ms = 150;
  std::mt19937 random(11);
  HostProcess host(Options(std::string(R"(hardware:
  cpu: {cores: 16, threads: 16, max_concurrent_tasks: 16}
  memory: {total_gb: 64}
allow_task_overrides: true
scheduler: {reserve_after_ms: )") + std::to_string(reserve_ms) + "}\n"));
  int sent = 0;
  auto small = [&] {
    host.Send(PackTask({.id = "s" + std::to_string(sent++), .plugin = "sleep",
                        .input = {{"ms", 50 + static_cast<int>(random() % (small_ms - 49))}},
                        .resources = {{"cpu_threads", 1}}}));
  };
  for (int i = 0; i < 32; ++i) small();
  for (int i = 0; i < 64; ++i) {  // let the stream settle
    host.NextResult();
    small();
  }
  host.Send(PackTask({.id = "big", .plugin = "sleep", .input = {{"ms", 100}}, .resources = {{"cpu_threads", 16}}}));
  double waited_ms = -1;
  while (waited_ms < 0) {
    const Result r = host.NextResult();
    if (r.id == "big") {
      waited_ms = r.queued_ms;
    } else {
      small();
    }
  }
  const double bound_ms = reserve_ms + small_ms;
  char note[128];
  std::snprintf(note, sizeof(note), "16-thread task's wait vs reserve_after_ms + longest small task");
  return {"W5", static_cast<size_t>(sent + 1), 0, bound_ms / 1000.0, waited_ms / 1000.0, note};
}

// Messages per second through producer -> relay -> collector, where the
// relay is plain ZeroMQ (a thread here, or the umi_zmq_relay process) or a
// real umi-host. The producer and the collector are threads of this process.
double PipelineRate(zmq::context_t& context, const std::string& into, const std::string& out_of, int count) {
  std::vector<std::string> tasks;
  for (int i = 0; i < count; ++i) tasks.push_back(PackTask({.id = "noop-" + std::to_string(i), .plugin = "noop"}));
  zmq::socket_t collector(context, zmq::socket_type::pull);
  collector.connect(out_of);
  std::thread producer([&] {
    zmq::socket_t push(context, zmq::socket_type::push);
    push.connect(into);
    for (const std::string& task : tasks) push.send(zmq::buffer(task));
    push.set(zmq::sockopt::linger, -1);
  });
  const auto start = Clock::now();
  zmq::message_t message;
  for (int i = 0; i < count; ++i) (void)collector.recv(message);
  const double rate = count / Seconds(Clock::now() - start);
  producer.join();
  return rate;
}

// User plus system CPU seconds a process has used so far.
double CpuSeconds(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  std::istringstream fields(text.substr(text.rfind(')') + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14 || i == 15) ticks += std::stod(field);  // utime, stime
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

struct HostRate {
  double tasks_per_s;
  double cpu_us_per_task;  // the host process's CPU (all its threads) per task
};

HostRate ThroughHost(zmq::context_t& context, const std::string& config_yaml, int count) {
  HostProcess::Options options = Options(config_yaml);
  options.connect_harness = false;
  HostProcess host(options);
  const double cpu_before = CpuSeconds(host.pid());
  const double rate = PipelineRate(context, host.endpoint("tasks"), host.endpoint("results"), count);
  return {rate, (CpuSeconds(host.pid()) - cpu_before) * 1e6 / count};
}

std::string ReadFile(const std::string& path) {
  std::ifstream file(path);
  return std::string((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
}

void Throughput(int count) {
  zmq::context_t context;
  // The ZeroMQ ceiling: the same bytes relayed by a thread, no codec.
  zmq::socket_t relay_in(context, zmq::socket_type::pull), relay_out(context, zmq::socket_type::push);
  relay_in.bind("tcp://127.0.0.1:*");
  relay_out.bind("tcp://127.0.0.1:*");
  const std::string relay_in_endpoint = relay_in.get(zmq::sockopt::last_endpoint);
  const std::string relay_out_endpoint = relay_out.get(zmq::sockopt::last_endpoint);
  std::thread relay([&] {
    zmq::message_t message;
    for (int i = 0; i < count; ++i) {
      (void)relay_in.recv(message);
      relay_out.send(message, zmq::send_flags::none);
    }
  });
  const double in_process = PipelineRate(context, relay_in_endpoint, relay_out_endpoint, count);
  relay.join();

  // The reference: a separate process that decodes each task and encodes an
  // answer with umi's codec (bench/zmq_relay.cc).
  int relay_stdout = -1;
  const pid_t relay_pid = Spawn({UMI_ZMQ_RELAY_BINARY, std::to_string(count)}, &relay_stdout);
  std::string ready;
  char c;
  while (read(relay_stdout, &c, 1) == 1 && c != '\n') ready += c;
  std::istringstream words(ready);
  std::string word, relay_into, relay_out_of;
  words >> word >> relay_into >> relay_out_of;
  const double relay_cpu_before = CpuSeconds(relay_pid);
  const double process_relay = PipelineRate(context, relay_into, relay_out_of, count);
  const double relay_cpu_us = (CpuSeconds(relay_pid) - relay_cpu_before) * 1e6 / count;
  int relay_status = 0;
  waitpid(relay_pid, &relay_status, 0);
  close(relay_stdout);

  const std::string shipped = ReadFile(UMI_SOURCE_DIR "/config/hardware/reference.yaml");
  const HostRate shipped_rate = ThroughHost(context, shipped, count);
  const HostRate wide_rate = ThroughHost(context, kWideConfig, count);
  // A worker process per task is two orders slower: 100,000 tasks say enough.
  const HostRate isolated_rate =
      ThroughHost(context, shipped + "  noop: {isolation: process, processes: 8}\n", std::min(count, 100000));

  std::printf("\nEnd-to-end noop throughput over tcp loopback, %d tasks (producer and collector: this process)\n",
              count);
  std::printf("%-58s %11s %9s %9s %12s\n", "path", "tasks_per_s", "vs_relay", "vs_zmq", "cpu_us_task");
  std::printf("%-58s %11.0f %9s %9.3f %12s\n", "ZeroMQ PULL -> PUSH, a thread in this process", in_process, "-", 1.0,
              "-");
  std::printf("%-58s %11.0f %9.3f %9.3f %12.2f\n", "relay process: decode, encode (reference)", process_relay, 1.0,
              process_relay / in_process, relay_cpu_us);
  auto row = [&](const char* name, const HostRate& r) {
    std::printf("%-58s %11.0f %9.3f %9.3f %12.2f\n", name, r.tasks_per_s, r.tasks_per_s / process_relay,
                r.tasks_per_s / in_process, r.cpu_us_per_task);
  };
  row("umi-host, config/hardware/reference.yaml (8 concurrent)", shipped_rate);
  row("umi-host, 48 concurrent, max_queued 200000", wide_rate);
  row("umi-host, default.yaml, noop isolation: process (8)", isolated_rate);

  // Latency of one task at a time through rpc, idle host, next to a bare
  // DEALER/ROUTER echo of the same bytes over tcp loopback (its own context
  // and I/O thread, in a thread of this process).
  constexpr int kSamples = 2000;
  auto percentiles = [](std::vector<double> micros) {
    std::sort(micros.begin(), micros.end());
    return std::make_pair(micros[micros.size() / 2], micros[micros.size() * 99 / 100]);
  };
  zmq::context_t echo_context;
  zmq::socket_t router(echo_context, zmq::socket_type::router);
  router.bind("tcp://127.0.0.1:*");
  const std::string echo_endpoint = router.get(zmq::sockopt::last_endpoint);
  std::thread echo([&] {
    for (int i = 0; i < kSamples; ++i) {
      zmq::message_t routing_id, body;
      (void)router.recv(routing_id);
      (void)router.recv(body);
      router.send(routing_id, zmq::send_flags::sndmore);
      router.send(body, zmq::send_flags::none);
    }
  });
  // Interleaved, one of each in turn: the VM's speed moves within seconds.
  RpcClient bare(context, echo_endpoint);
  HostProcess host(Options(kWideConfig));
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  std::vector<double> echo_micros, micros;
  auto round_trip = [](RpcClient& client, const std::string& bytes) {
    const auto start = Clock::now();
    client.Send(bytes);
    client.Receive();
    return std::chrono::duration<double, std::micro>(Clock::now() - start).count();
  };
  for (int i = 0; i < kSamples; ++i) {
    const std::string task = PackTask({.id = "lat-" + std::to_string(i), .plugin = "noop"});
    echo_micros.push_back(round_trip(bare, task));
    micros.push_back(round_trip(rpc, task));
  }
  echo.join();
  const auto [echo_p50, echo_p99] = percentiles(echo_micros);
  const auto [p50, p99] = percentiles(micros);
  std::printf("rpc round trip, %d samples one at a time    p50 us   p99 us\n", kSamples);
  std::printf("  bare DEALER/ROUTER echo (reference)   %8.0f %8.0f\n", echo_p50, echo_p99);
  std::printf("  one noop task through umi-host (idle) %8.0f %8.0f   (%.2fx / %.2fx of the echo)\n", p50, p99,
              p50 / echo_p50, p99 / echo_p99);
}

// ---- media: umi vs the FFmpeg command-line tools --------------------------

double TimeTasks(HostProcess& host, const std::vector<TaskSpec>& tasks, const char* what) {
  const auto start = Clock::now();
  for (const TaskSpec& task : tasks) host.Send(PackTask(task));
  for (size_t i = 0; i < tasks.size(); ++i) {
    const Result r = host.NextResult();
    if (r.status != "ok") std::fprintf(stderr, "%s %s: %s %s\n", what, r.id.value_or("?").c_str(), r.error_code.c_str(), r.error_message.c_str());
  }
  return Seconds(Clock::now() - start);
}

double TimeCommands(const std::vector<std::vector<std::string>>& commands) {
  const auto start = Clock::now();
  for (const auto& command : commands) {
    if (RunCommand(command).exit_code != 0) std::fprintf(stderr, "failed: %s\n", command[0].c_str());
  }
  return Seconds(Clock::now() - start);
}

// The commands run as people run them on a machine: `xargs -P <parallel>`,
// at most `parallel` at a time, each started as soon as one ends.
double TimeCommandsParallel(const std::vector<std::vector<std::string>>& commands, int parallel) {
  const auto start = Clock::now();
  size_t next = 0;
  int running = 0;
  while (next < commands.size() || running > 0) {
    if (next < commands.size() && running < parallel) {
      const pid_t pid = fork();
      if (pid == 0) {
        std::vector<char*> argv;
        for (const std::string& arg : commands[next]) argv.push_back(const_cast<char*>(arg.c_str()));
        argv.push_back(nullptr);
        execv(argv[0], argv.data());
        _exit(127);
      }
      ++next;
      ++running;
      continue;
    }
    int status = 0;
    if (wait(&status) > 0) {
      --running;
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) std::fprintf(stderr, "a command failed\n");
    }
  }
  return Seconds(Clock::now() - start);
}

// CPU seconds (user + system) of a process and of its children that are
// alive now (a host's worker processes).
double CpuSecondsWithChildren(pid_t pid) {
  double total = CpuSeconds(pid);
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    const size_t paren = text.rfind(')');
    if (paren == std::string::npos) continue;
    std::istringstream fields(text.substr(paren + 2));
    std::string state, parent;
    if (fields >> state >> parent && parent == std::to_string(pid)) total += CpuSeconds(std::stoi(name));
  }
  return total;
}

// M4: one long file, as a pipeline would treat it: scene cuts and
// thumbnails at 10 points, all sent at once to a host whose pool is this
// machine, against the same work as ffmpeg commands under xargs -P <cores>.
struct LongRun {
  double makespan_s = 0, cpu_s = 0, running_s = 0;
};

// The tasks sent at once to a fresh host of `config`, after a warm-up task.
LongRun RunLong(const std::string& config, const std::vector<TaskSpec>& tasks, const TaskSpec& warm) {
  HostProcess host(Options(config));
  TimeTasks(host, {warm}, "warm");  // the workers start, the file is in the page cache
  LongRun run;
  const double cpu_before = CpuSecondsWithChildren(host.pid());
  const auto start = Clock::now();
  for (const TaskSpec& task : tasks) host.Send(PackTask(task));
  std::vector<std::pair<double, double>> spans;  // [started_at, finished_at] of each task
  for (size_t i = 0; i < tasks.size(); ++i) {
    const Result r = host.NextResult();
    if (r.status != "ok") std::fprintf(stderr, "%s: %s %s\n", r.id.value_or("?").c_str(), r.error_code.c_str(), r.error_message.c_str());
    if (r.started_at && r.finished_at) spans.emplace_back(*r.started_at, *r.finished_at);
  }
  run.makespan_s = Seconds(Clock::now() - start);
  run.cpu_s = CpuSecondsWithChildren(host.pid()) - cpu_before;
  // How long at least one task ran: what is left of the makespan is the
  // host's (reading, dispatching, answering) and the producer's.
  std::sort(spans.begin(), spans.end());
  double covered_until = 0;
  for (const auto& [from, to] : spans) {
    const double begin = std::max(from, covered_until);
    if (to > begin) run.running_s += to - begin;
    covered_until = std::max(covered_until, to);
  }
  return run;
}

// M4: one long file, as a pipeline would treat it: scene cuts and
// thumbnails at 10 points, all sent at once to a host whose pool is this
// machine, against the same work as ffmpeg commands under xargs -P <cores>.
// Twice for umi: with the plugins' own grants (2 threads each: one task at
// a time on 2 CPUs) and with 1 thread each (an operator's override).
void LongFile(const std::string& dir, int cores) {
  const std::string path = dir + "/long.mp4";
  RunCommand({"/usr/bin/ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
              "testsrc2=size=1920x1080:rate=25:duration=60", "-c:v", "libx264", "-preset", "ultrafast", "-g", "50",
              path});
  auto config = [&](const std::string& grant) {
    std::string yaml = "hardware:\n  cpu: {cores: " + std::to_string(cores) + ", threads: " + std::to_string(cores) +
                       "}\n  memory: {total_gb: 8}\nplugins:\n";
    for (const char* plugin : {"thumbnail", "scenes"}) {
      yaml += std::string("  ") + plugin + ": {isolation: process, " + grant + "settings: {media_roots: [" + dir +
              "], output_root: " + dir + "}}\n";
    }
    return yaml;
  };
  std::vector<TaskSpec> tasks{{.id = "scenes", .plugin = "scenes", .input = {{"width", 640}},
                               .string_input = {{"path", path}}}};
  std::vector<std::vector<std::string>> commands{
      {"/usr/bin/ffmpeg", "-nostdin", "-v", "error", "-threads", "2", "-i", path, "-vf",
       "scale=640:-2,select='gt(scene,0.3)',metadata=print", "-f", "null", "-"}};
  for (int i = 0; i < 10; ++i) {
    const int at = 3 + 6 * i;
    const std::string out = dir + "/long-thumb" + std::to_string(i);
    tasks.push_back({.id = "thumb" + std::to_string(i), .plugin = "thumbnail", .input = {{"width", 320}, {"at", at}},
                     .string_input = {{"path", path}, {"output", out + ".umi.jpg"}}});
    commands.push_back({"/usr/bin/ffmpeg", "-nostdin", "-v", "error", "-y", "-threads", "2", "-ss", std::to_string(at),
                        "-i", path, "-frames:v", "1", "-vf", "scale=320:-2", out + ".cli.jpg"});
  }
  const TaskSpec warm{.id = "warm", .plugin = "thumbnail", .input = {{"width", 320}, {"at", 1}},
                      .string_input = {{"path", path}, {"output", dir + "/warm.jpg"}}};
  const LongRun own = RunLong(config(""), tasks, warm);
  const LongRun one_thread = RunLong(config("threads: 1, cpu_cores: 1, "), tasks, warm);
  auto children_cpu = [] {
    rusage usage{};
    getrusage(RUSAGE_CHILDREN, &usage);
    return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec + (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
  };
  (void)TimeCommandsParallel({commands[1]}, 1);  // warm, as umi's
  const double cli_cpu_before = children_cpu();
  const double cli_s = TimeCommandsParallel(commands, cores);
  const double cli_cpu = children_cpu() - cli_cpu_before;
  std::printf("\nM4: a 60 s 1080p H.264 file: scene cuts and thumbnails at 10 points, all at once, %d cores\n", cores);
  std::printf("%-44s %10s %12s %14s %10s\n", "how", "makespan_s", "cores_busy", "a_task_running", "vs_xargs");
  auto row = [&](const char* name, const LongRun& run) {
    std::printf("%-44s %10.2f %11.1f%% %13.1f%% %10.3f\n", name, run.makespan_s, 100 * run.cpu_s / (run.makespan_s * cores),
                100 * run.running_s / run.makespan_s, run.makespan_s / cli_s);
  };
  row("umi, isolated, the plugins' grants (2 threads)", own);
  row("umi, isolated, 1 thread each", one_thread);
  std::printf("%-44s %10.2f %11.1f%% %14s %10.3f\n", ("ffmpeg under xargs -P " + std::to_string(cores)).c_str(), cli_s,
              100 * cli_cpu / (cli_s * cores), "-", 1.0);
}

void Media(const std::set<std::string>& only, int files) {
  auto wanted = [&](const char* name) { return only.empty() || only.count(name); };
  TempDir dir;
  const std::string sample = (dir.path() / "sample.mp4").string();
  RunCommand({"/usr/bin/ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
              "testsrc2=size=640x360:rate=25:duration=2", "-f", "lavfi", "-i", "sine=duration=2", "-c:v", "mpeg4",
              "-c:a", "aac", sample});
  std::vector<std::string> paths;
  for (int i = 0; i < files; ++i) {
    paths.push_back((dir.path() / ("file" + std::to_string(i) + ".mp4")).string());
    std::filesystem::copy_file(sample, paths.back());
  }
  std::string media_plugins = "plugins:\n";
  for (const char* plugin : {"probe", "thumbnail", "scenes", "scenes_cuda"}) {
    media_plugins += std::string("  ") + plugin + ": {settings: {media_roots: [" + dir.path().string() +
                     "], output_root: " + dir.path().string() + "}}\n";
  }
  HostProcess host(Options(kWideConfig + media_plugins));
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  std::printf("\nMedia: %d files of 2 s 640x360 mpeg4+aac; umi runs tasks side by side on its pool; the CLI one file\n"
              "at a time, and under xargs -P %d (this machine's CPUs), as people run it\n", files, cores);
  std::printf("%-10s %14s %14s %14s %12s\n", "plugin", "umi_files_s", "cli_files_s", "xargs_files_s", "umi/xargs");
  if (wanted("M1")) {
    std::vector<TaskSpec> tasks;
    std::vector<std::vector<std::string>> commands;
    for (size_t i = 0; i < paths.size(); ++i) {
      tasks.push_back({.id = "probe" + std::to_string(i), .plugin = "probe", .string_input = {{"path", paths[i]}}});
      commands.push_back({"/usr/bin/ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams", paths[i]});
    }
    const double umi = files / TimeTasks(host, tasks, "probe");
    const double cli = files / TimeCommands(commands);
    const double xargs = files / TimeCommandsParallel(commands, cores);
    std::printf("%-10s %14.1f %14.1f %14.1f %12.2f\n", "probe", umi, cli, xargs, umi / xargs);
  }
  if (wanted("M2")) {
    std::vector<TaskSpec> tasks;
    std::vector<std::vector<std::string>> commands;
    for (size_t i = 0; i < paths.size(); ++i) {
      const std::string out = (dir.path() / ("thumb" + std::to_string(i))).string();
      tasks.push_back({.id = "thumb" + std::to_string(i), .plugin = "thumbnail", .input = {{"width", 320}},
                       .string_input = {{"path", paths[i]}, {"output", out + ".umi.jpg"}}});
      tasks.back().input["at"] = 1;
      commands.push_back({"/usr/bin/ffmpeg", "-nostdin", "-v", "error", "-y", "-ss", "1", "-i", paths[i], "-frames:v", "1",
                          "-vf", "scale=320:-2", out + ".cli.jpg"});
    }
    const double umi = files / TimeTasks(host, tasks, "thumbnail");
    const double cli = files / TimeCommands(commands);
    const double xargs = files / TimeCommandsParallel(commands, cores);
    std::printf("%-10s %14.1f %14.1f %14.1f %12.2f\n", "thumbnail", umi, cli, xargs, umi / xargs);
  }
  if (wanted("M3")) {
    const std::string big = (dir.path() / "big.mp4").string();
    RunCommand({"/usr/bin/ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                "testsrc2=size=1920x1080:rate=25:duration=10", "-c:v", "mpeg4", "-q:v", "5", big});
    std::printf("\nM3: scene detection on 10 s of 1080p (250 frames), analysis width 640\n");
    for (const char* plugin : {"scenes", "scenes_cuda"}) {
      host.Send(PackTask({.id = plugin, .plugin = plugin, .input = {{"width", 640}}, .string_input = {{"path", big}}}));
      const Result r = host.NextResult();
      if (r.status != "ok") {
        std::printf("%-12s skipped: %s (%s)\n", plugin, r.error_code.c_str(), r.error_message.c_str());
      } else {
        std::printf("%-12s %8.1f frames/s\n", plugin, 250.0 / (r.run_ms / 1000.0));
      }
    }
  }
  if (wanted("M4")) LongFile(dir.path().string(), cores);
}

// ---- S1: what the workers' sandbox costs ------------------------------------

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

void SandboxCost(int copies, int noops) {
  const std::string shipped = ReadFile(UMI_SOURCE_DIR "/config/hardware/reference.yaml");
  constexpr int kWorkers = 16, kRounds = 5;
  // Worker start: the host is ready once its workers are (they start one
  // after another), so the difference from a host with none is theirs.
  auto ready_s = [&](const std::string& noop) {
    const auto start = Clock::now();
    HostProcess host(Options(shipped + "  noop: {" + noop + "}\n"));
    return Seconds(Clock::now() - start);
  };
  std::vector<double> none, plain, sandboxed;
  for (int round = 0; round < kRounds; ++round) {  // interleaved: the VM's speed moves within seconds
    none.push_back(ready_s("isolation: process, processes: 0"));
    plain.push_back(ready_s("isolation: process, processes: 16, sandbox: false"));
    sandboxed.push_back(ready_s("isolation: process, processes: 16"));
  }
  const double plain_ms = (Median(plain) - Median(none)) * 1000 / kWorkers;
  const double sandboxed_ms = (Median(sandboxed) - Median(none)) * 1000 / kWorkers;

  zmq::context_t context;
  std::vector<double> plain_rate, sandboxed_rate;
  for (int round = 0; round < kRounds; ++round) {
    plain_rate.push_back(
        ThroughHost(context, shipped + "  noop: {isolation: process, processes: 8, sandbox: false}\n", noops).tasks_per_s);
    sandboxed_rate.push_back(ThroughHost(context, shipped + "  noop: {isolation: process, processes: 8}\n", noops).tasks_per_s);
  }

  // The ingest workload: every sample file through probe, checksum,
  // thumbnail and scenes, on threads and in sandboxed workers.
  TempDir dir;
  RunCommand({"/bin/bash", UMI_SOURCE_DIR "/examples/ingest/make_samples.sh", dir.path().string()});
  std::vector<std::string> samples;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) samples.push_back(entry.path().string());
  std::sort(samples.begin(), samples.end());
  std::vector<TaskSpec> tasks;
  for (int copy = 0; copy < copies; ++copy) {
    for (const std::string& path : samples) {
      const std::string id = std::to_string(copy) + ":" + path;
      for (const char* plugin : {"probe", "checksum", "scenes"}) {
        tasks.push_back({.id = std::string(plugin) + id, .plugin = plugin, .string_input = {{"path", path}}});
      }
      if (path.ends_with(".wav")) continue;  // no picture
      tasks.push_back({.id = "thumbnail" + id, .plugin = "thumbnail", .input = {{"width", 320}},
                       .string_input = {{"path", path}, {"output", path + "." + std::to_string(copy) + ".jpg"}}});
    }
  }
  std::erase_if(tasks, [](const TaskSpec& t) { return t.plugin == "scenes" && t.string_input.at("path").ends_with(".wav"); });
  auto media_config = [&](const std::string& mode) {
    std::string plugins;
    for (const char* plugin : {"probe", "checksum", "thumbnail", "scenes"}) {
      plugins += std::string("  ") + plugin + ": {" + mode + "settings: {media_roots: [" + dir.path().string() +
                 "], output_root: " + dir.path().string() + "}}\n";
    }
    return shipped + plugins;
  };
  HostProcess threads(Options(media_config("")));
  HostProcess plain_workers(Options(media_config("isolation: process, processes: 8, sandbox: false, ")));
  HostProcess workers(Options(media_config("isolation: process, processes: 8, ")));
  std::vector<double> thread_s, plain_worker_s, worker_s;
  for (int round = 0; round < kRounds; ++round) {
    std::vector<TaskSpec> fresh = tasks;  // new ids: a repeated id is answered from the dedup window
    for (TaskSpec& task : fresh) task.id += "#" + std::to_string(round);
    thread_s.push_back(TimeTasks(threads, fresh, "ingest on threads"));
    plain_worker_s.push_back(TimeTasks(plain_workers, fresh, "ingest in workers"));
    worker_s.push_back(TimeTasks(workers, fresh, "ingest in sandboxed workers"));
  }

  std::printf("\nS1: the workers' sandbox (medians of %d interleaved rounds)\n", kRounds);
  std::printf("%-58s %12s %12s %8s\n", "measure", "without", "sandboxed", "ratio");
  std::printf("%-58s %12.2f %12.2f %8.2f\n", "worker start, ms each (16 started one after another)", plain_ms,
              sandboxed_ms, sandboxed_ms / plain_ms);
  std::printf("%-58s %12.0f %12.0f %8.3f\n", "noop isolation: process (8 workers), tasks/s", Median(plain_rate),
              Median(sandboxed_rate), Median(sandboxed_rate) / Median(plain_rate));
  const std::string ingest = "ingest makespan s, " + std::to_string(tasks.size()) + " tasks, ";
  std::printf("%-58s %12.3f %12.3f %8.3f\n", (ingest + "workers").c_str(), Median(plain_worker_s), Median(worker_s),
              Median(worker_s) / Median(plain_worker_s));
  std::printf("%-58s %12.3f %12.3f %8.3f\n", (ingest + "threads vs sandboxed workers").c_str(), Median(thread_s),
              Median(worker_s), Median(worker_s) / Median(thread_s));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"umi workload benchmarks W1-W5 through the real host"};
  std::set<std::string> only;
  int w3_tasks = 2000, w4_noops = 20000;
  app.add_option("--only", only, "Run only these (W1..W5, E2E, Q1, M1..M4, S1)");
  app.add_option("--host-binary", host_binary, "The umi-host to measure (another build's, for an A/B run)")
      ->capture_default_str();
  app.add_option("--plugin-dir", plugin_dir, "The plugins it loads (that build's)")->capture_default_str();
  app.add_option("--w3-tasks", w3_tasks, "Tasks in W3")->capture_default_str();
  app.add_option("--w4-noops", w4_noops, "Noop tasks timed per W4 point")->capture_default_str();
  int throughput_tasks = 100000;
  int media_files = 200;
  int queued_tasks = 1000000;
  app.add_option("--queued-tasks", queued_tasks, "Tasks queued in Q1")->capture_default_str();
  app.add_option("--media-files", media_files, "Files in the M1/M2 media runs")->capture_default_str();
  app.add_option("--throughput-tasks", throughput_tasks, "Tasks in the end-to-end throughput run")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  auto wanted = [&](const char* name) { return only.empty() || only.count(name); };

  std::vector<Row> rows;
  if (wanted("W1")) {
    rows.push_back(SeedWorkload("W1", {{"sleep", 4000}, {"sleep", 3500}, {"sleep", 3000}, {"sleep", 2500},
                                       {"sleep", 2000}, {"sleep", 1800}, {"sleep", 1200}}));
  }
  if (wanted("W2")) {
    rows.push_back(SeedWorkload("W2", {{"gpu_sleep", 1500}, {"gpu_sleep", 1500}, {"gpu_sleep", 1500},
                                       {"sleep", 3000}, {"sleep", 2500}, {"sleep", 2000}, {"sleep", 1000},
                                       {"sleep", 600}, {"sleep", 400}}));
  }
  if (wanted("W3")) rows.push_back(MixedShapes(w3_tasks));

  if (!rows.empty()) {
    std::printf("%-4s %7s %9s %9s %10s %10s  %s\n", "load", "tasks", "serial_s", "ideal_s", "measured_s",
                "efficiency", "note");
  }
  for (const Row& r : rows) {
    std::printf("%-4s %7zu %9.2f %9.3f %10.3f %10.3f  %s\n", r.name.c_str(), r.tasks, r.serial_s, r.ideal_s,
                r.measured_s, r.ideal_s / r.measured_s, r.note.c_str());
  }
  if (wanted("W5")) {
    const Row r = Starvation();
    std::printf("%-4s %7zu %9s %9.3f %10.3f %10s  wait %.3f s <= bound %.3f s: %s\n", r.name.c_str(), r.tasks,
                "-", r.ideal_s, r.measured_s, "-", r.measured_s, r.ideal_s,
                r.measured_s <= r.ideal_s ? "yes" : "NO");
  }
  if (wanted("W4")) {
    std::printf("\nW4: noop dispatch rate through the host with GPU tasks blocked in the queue\n");
    std::printf("%10s %12s %10s\n", "blocked", "tasks_per_s", "vs_0");
    double base = 0;
    for (int blocked : {0, 1000, 100000}) {
      const double rate = NoopRate(blocked, w4_noops);
      if (blocked == 0) base = rate;
      std::printf("%10d %12.0f %10.3f\n", blocked, rate, rate / base);
    }
  }
  if (wanted("E2E")) Throughput(throughput_tasks);
  if (wanted("Q1")) QueuedMemory(queued_tasks);
  if (wanted("M1") || wanted("M2") || wanted("M3") || wanted("M4")) Media(only, media_files);
  if (wanted("S1")) SandboxCost(30, 20000);
  return 0;
}
