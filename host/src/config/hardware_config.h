// HardwareConfig: the YAML file that sizes the resource pool.
//
// Layout (docs/configuration.md is the reference):
//
//   hardware: detect              # what this machine has (cores, threads, memory,
//                                 # GPUs; max_concurrent_tasks = threads), or:
//   hardware:
//     cpu:    {cores, threads, max_concurrent_tasks, threads_per_core, pinning}
//     gpu:    {count, model, memory_gb} or {devices: [{id, model, memory_gb}]}
//     memory: {total_gb, overcommit_ratio (default 1.0)}
//   allocation: {cpu: pack|spread, gpu: pack|spread}   (default pack)
//   task_groups:
//     <group>: {cpu_cores, threads, memory_mb, gpu_count, exclusive_gpu, max_instances}
//   plugins:
//     <plugin>: {task_group, cpu_cores, threads, memory_mb, gpu_count,
//                exclusive_gpu, max_instances, settings,
//                isolation: thread|process (default thread), processes (default 1),
//                sandbox: false | {required, read, write, exec, network, max_file_mb}}
//                (the sandbox of an isolated plugin's workers, on by default:
//                runtime/sandbox.h; paths relative to the config file)
//   plugin_dirs: [dir, ...]       # (default none) where plugins load from, relative
//                                 # to the config file; --plugins and UMI_PLUGIN_DIRS win
//   allow_task_overrides: false   # honour a task's own `resources`
//   oversubscribe: false          # the pool may be larger than the machine on
//                                 # purpose (else --strict-config refuses it)
//   scheduler: {max_queued (default 100000), reserve_after_ms (default 1000)}
//   shutdown:  {drain_timeout_s (default 30)}
//   transport: {tasks, results, rpc, events: endpoint ('>' connects, else binds),
//               max_pending_results (default 100000), tasks_hwm (default 1000),
//               max_message_bytes (default 67108864), redis (a URL; default off),
//               redis_password_file (default none), max_deliveries (default 3),
//               prefetch (default auto)}
//   dedup:     {window_s (default 300), max_entries (default 100000)}
//   http:      {enabled (default true), listen (default 127.0.0.1:9090),
//               histogram_buckets_s (default built in; a restart key)}
//   security:  {curve: {secret_key_file, authorized_keys_file}}  (off by default;
//               paths relative to the config file; see curve_auth.h)
//
// Parsing is strict: an unknown key (with a did-you-mean), a wrong type or
// an impossible value is an error naming the file, the key and its line.
// Every number has a range (the constants below; docs/configuration.md),
// checked before it is narrowed, and a positive resource amount below the
// pool's unit (0.0001) is an error, not a zero. A
// task group or plugin entry that could never fit the pool is refused.
//
// Config file choice follows the seed: --config FILE wins; otherwise
// config/hardware/${HARDWARE_CONFIG:-default}.yaml.
//
// Thread safety: value types; LoadHardwareConfig is reentrant.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/requirement.h"
#include "common/retry_policy.h"
#include "common/status_or.h"

namespace umi {

// Bounds of the config's numbers.
inline constexpr int kMaxCpus = 65536;              // cores, threads
inline constexpr int kMaxGpus = 1024;               // devices; ids are 0..kMaxGpus-1
inline constexpr int64_t kMaxMemoryMb = int64_t{1} << 40;
inline constexpr double kMaxMemoryGb = 1 << 30;     // 1 EiB
inline constexpr int kMaxInstances = 1000000;       // max_instances, max_concurrent_tasks
inline constexpr int64_t kMaxQueue = 100000000;     // queue and buffer lengths
inline constexpr int64_t kMaxMs = int64_t{100} * 365 * 24 * 3600 * 1000;  // 100 years
inline constexpr size_t kMaxHistogramBuckets = 64;

struct GpuDevice {
  int id = 0;
  std::string model;
  double memory_gb = 0;
  friend bool operator==(const GpuDevice&, const GpuDevice&) = default;
};

struct TaskGroupConfig {
  RequirementOverride resources;
  std::optional<int> max_instances;  // none: unlimited
  friend bool operator==(const TaskGroupConfig&, const TaskGroupConfig&) = default;
};

// plugins.<name>.sandbox: what the plugin's worker processes may do beyond
// their own task (runtime/sandbox.h enforces it).
struct SandboxConfig {
  bool enabled = true;              // `sandbox: false` turns it off for this plugin
  bool required = false;            // refuse to run where the kernel lacks a mechanism
  std::vector<std::filesystem::path> read;   // more to read than its media roots and libraries
  std::vector<std::filesystem::path> write;  // more to write than its output root and temp dir
  bool exec = false;                // may start processes (fork, exec)
  bool network = false;             // may open sockets
  int64_t max_file_mb = 4096;       // RLIMIT_FSIZE: the largest file it may write
  friend bool operator==(const SandboxConfig&, const SandboxConfig&) = default;
};

struct PluginConfig {
  std::optional<std::string> task_group;
  RequirementOverride resources;
  std::optional<int> max_instances;
  std::string settings_msgpack;  // a msgpack map; empty map when absent
  bool isolate_process = false;  // isolation: process (see process_pool.h)
  int processes = 1;             // worker processes started with the host
  SandboxConfig sandbox;
  std::optional<RetryPolicy> retry;  // for tasks that bring none of their own
  friend bool operator==(const PluginConfig&, const PluginConfig&) = default;
};

enum class Strategy { kPack, kSpread };
const char* ToString(Strategy strategy);

// hardware: the pool's capacity.
struct HardwareSection {
  struct Cpu {
    double cores = 1;
    int threads = 1;
    int max_concurrent_tasks = 1;  // caps concurrent CPU-only tasks
    std::optional<int> threads_per_core;  // when set, threads <= ceil(cores) x this
    bool pinning = false;  // pin tasks to logical CPUs (sched_setaffinity)
    friend bool operator==(const Cpu&, const Cpu&) = default;
  };
  struct Memory {
    double total_gb = 1;
    double overcommit_ratio = 1.0;
    friend bool operator==(const Memory&, const Memory&) = default;
  };
  Cpu cpu;
  std::vector<GpuDevice> gpus;
  Memory memory;
  friend bool operator==(const HardwareSection&, const HardwareSection&) = default;
};

// allocation: which logical CPUs (with pinning) and which device for a
// shared GPU fraction.
struct AllocationSection {
  Strategy cpu = Strategy::kPack;
  Strategy gpu = Strategy::kPack;
  friend bool operator==(const AllocationSection&, const AllocationSection&) = default;
};

struct SchedulerSection {
  int64_t max_queued = 100000;
  int64_t reserve_after_ms = 1000;  // a blocked task waits this long, then reserves
  friend bool operator==(const SchedulerSection&, const SchedulerSection&) = default;
};

struct ShutdownSection {
  double drain_timeout_s = 30;
  friend bool operator==(const ShutdownSection&, const ShutdownSection&) = default;
};

struct TransportSection {
  std::map<std::string, std::string> endpoints;  // transport.<socket>; flags win
  int64_t max_pending_results = 100000;  // unsent results before the host stops reading tasks
  int tasks_hwm = 1000;                  // ZMQ_RCVHWM of the tasks socket
  // ZMQ_MAXMSGSIZE of the tasks and rpc sockets: ZeroMQ drops a peer that
  // sends a bigger message, before the host reads any of it.
  int64_t max_message_bytes = 64 << 20;
  // Redis Streams (a farm of hosts): redis://host:port/db or unix:///path;
  // empty: off. --redis wins. Never logged with its password.
  std::string redis;
  std::string redis_password_file;  // the password, when the URL names none (a mounted secret)
  int max_deliveries = 3;  // deliveries of one task before it is poison (its hosts died)
  // Redis: tasks taken per read beyond what can start now. kAutoPrefetch:
  // short tasks only, what the free slots finish in 2 ms at the plugin's
  // recent run time (so long tasks keep a fair pull, no-op tasks batch).
  static constexpr int kAutoPrefetch = -1;
  int prefetch = kAutoPrefetch;
  // Redis: each result written is kept under umi:result:<id> for
  // dedup.window_s, for lookups by id (docs/flows.md). It costs Redis a
  // write and memory per result: off for a farm that never looks one up.
  bool keep_results = true;
  friend bool operator==(const TransportSection&, const TransportSection&) = default;
};

struct DedupSection {
  double window_s = 300;  // a finished id's result is kept this long
  int64_t max_entries = 100000;
  friend bool operator==(const DedupSection&, const DedupSection&) = default;
};

struct SecuritySection {
  struct Curve {
    std::filesystem::path secret_key_file;  // empty: CURVE off
    std::filesystem::path authorized_keys_file;
    friend bool operator==(const Curve&, const Curve&) = default;
  };
  Curve curve;
  friend bool operator==(const SecuritySection&, const SecuritySection&) = default;
};

struct HttpSection {
  bool enabled = true;
  std::string listen = "127.0.0.1:9090";  // host:port; port 0 picks a free one
  // Upper bounds (seconds, ascending) of the queue- and run-time histograms
  // in /metrics; empty: the built-in ones (telemetry.h).
  std::vector<double> histogram_buckets_s;
  friend bool operator==(const HttpSection&, const HttpSection&) = default;
};

// The whole file, one member per top-level key.
struct HardwareConfig {
  HardwareSection hardware;
  AllocationSection allocation;
  std::map<std::string, TaskGroupConfig> task_groups;
  std::map<std::string, PluginConfig> plugins;
  // Where plugins are loaded from, when neither --plugins nor UMI_PLUGIN_DIRS
  // names any; relative to the config file. Default: none (the host's
  // <prefix>/lib/umi/plugins).
  std::vector<std::filesystem::path> plugin_dirs;
  bool allow_task_overrides = false;
  // The pool is meant to be larger than the machine (simulating a bigger
  // one, slots that mostly wait): --strict-config accepts it.
  bool oversubscribe = false;
  SchedulerSection scheduler;
  ShutdownSection shutdown;
  TransportSection transport;
  DedupSection dedup;
  SecuritySection security;
  HttpSection http;
  // Where it came from; not config, so not compared.
  std::filesystem::path source;  // the file it came from
  std::string origin = "file";   // file, environment or detected
  bool hardware_detected = false;  // `hardware: detect`

  int64_t memory_capacity_mb() const;
};

struct Machine;
// `machine`: what `hardware: detect` takes (null: detected now).
StatusOr<HardwareConfig> LoadHardwareConfig(const std::filesystem::path& path, const Machine* machine = nullptr);
StatusOr<HardwareConfig> ParseHardwareConfig(const std::string& yaml_text, const std::filesystem::path& source,
                                             const Machine* machine = nullptr);

}  // namespace umi
