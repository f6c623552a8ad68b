#include "config/hardware_config.h"

#include "config/config_loader.h"
#include "config/machine.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "common/text.h"
#include "config/yaml_msgpack.h"
#include "config/yaml_read.h"

namespace umi {
namespace {

using namespace yaml_read;  // the typed readers are this parser's vocabulary

Strategy ReadStrategy(const YAML::Node& node, const std::string& path) {
  const std::string text = Read<std::string>(node, path, "pack or spread");
  if (text == "pack") return Strategy::kPack;
  if (text == "spread") return Strategy::kSpread;
  Fail(node, path, "expected pack or spread, got '" + text + "'");
}

// Fields shared by task_groups.<g> and plugins.<p>.
void ReadResources(const YAML::Node& node, const std::string& path, RequirementOverride& out,
                   std::optional<int>& max_instances) {
  IfPresent(node, "cpu_cores", [&](auto n) { out.cpu_cores = ReadAmount(n, path + ".cpu_cores", kMaxCpus); });
  // cpu_threads, as the SDK, the protocol and the reports spell it; threads,
  // the seed's spelling, stays as an alias. Both at once is an error.
  if (node["cpu_threads"] && node["threads"]) {
    Fail(node["threads"], path + ".threads", "give cpu_threads or its alias threads, not both");
  }
  for (const char* key : {"cpu_threads", "threads"}) {
    IfPresent(node, key, [&](auto n) { out.cpu_threads = ReadInt(n, path + "." + key, 0, kMaxCpus); });
  }
  IfPresent(node, "memory_mb", [&](auto n) { out.memory_mb = ReadInteger(n, path + ".memory_mb", 0, kMaxMemoryMb); });
  IfPresent(node, "gpu_count", [&](auto n) { out.gpu_count = ReadAmount(n, path + ".gpu_count", kMaxGpus); });
  IfPresent(node, "exclusive_gpu",
            [&](auto n) { out.exclusive_gpu = Read<bool>(n, path + ".exclusive_gpu", "true or false"); });
  IfPresent(node, "max_instances", [&](auto n) {
    max_instances = ReadInt(n, path + ".max_instances", 1, kMaxInstances);
  });
  ResourceRequirement probe;
  out.ApplyTo(probe);
  if (const Status valid = probe.Validate(); !valid.ok()) Fail(node, path, valid.message());
}

void ReadHardware(const YAML::Node& hardware, HardwareConfig& config) {
  CheckKeys(hardware, "hardware", {"cpu", "gpu", "memory"});

  const YAML::Node cpu = hardware["cpu"];
  if (!cpu) Fail(hardware, "hardware.cpu", "missing");
  CheckKeys(cpu, "hardware.cpu", {"cores", "threads", "max_concurrent_tasks", "threads_per_core", "pinning"});
  if (!cpu["cores"]) Fail(cpu, "hardware.cpu.cores", "missing");
  config.hardware.cpu.cores = ReadAmount(cpu["cores"], "hardware.cpu.cores", kMaxCpus);
  if (config.hardware.cpu.cores == 0) Fail(cpu["cores"], "hardware.cpu.cores", "must be a number > 0, got " + cpu["cores"].Scalar());
  config.hardware.cpu.threads = cpu["threads"] ? ReadInt(cpu["threads"], "hardware.cpu.threads", 1, kMaxCpus)
                                      : static_cast<int>(std::ceil(config.hardware.cpu.cores));
  config.hardware.cpu.max_concurrent_tasks =
      cpu["max_concurrent_tasks"]
          ? ReadInt(cpu["max_concurrent_tasks"], "hardware.cpu.max_concurrent_tasks", 1, kMaxInstances)
          : config.hardware.cpu.threads;
  if (const YAML::Node tpc = cpu["threads_per_core"]) {
    config.hardware.cpu.threads_per_core = ReadInt(tpc, "hardware.cpu.threads_per_core", 1, 64);
    const int64_t most = static_cast<int64_t>(std::ceil(config.hardware.cpu.cores)) * *config.hardware.cpu.threads_per_core;
    if (config.hardware.cpu.threads > most) {
      Fail(cpu["threads"] ? cpu["threads"] : cpu, "hardware.cpu.threads",
           std::to_string(config.hardware.cpu.threads) + " threads exceed cores x threads_per_core = " +
               std::to_string(most));
    }
  }
  if (const YAML::Node pinning = cpu["pinning"]) {
    config.hardware.cpu.pinning = Read<bool>(pinning, "hardware.cpu.pinning", "true or false");
  }

  if (const YAML::Node gpu = hardware["gpu"]) {
    CheckKeys(gpu, "hardware.gpu", {"count", "model", "memory_gb", "devices"});
    const std::string model =
        gpu["model"] ? Read<std::string>(gpu["model"], "hardware.gpu.model", "a string") : "";
    const double memory_gb =
        gpu["memory_gb"] ? ReadNumber(gpu["memory_gb"], "hardware.gpu.memory_gb", 0, kMaxMemoryGb) : 0;
    if (const YAML::Node devices = gpu["devices"]) {
      if (!devices.IsSequence()) Fail(devices, "hardware.gpu.devices", "expected a list");
      for (size_t i = 0; i < devices.size(); ++i) {
        const std::string path = "hardware.gpu.devices[" + std::to_string(i) + "]";
        CheckKeys(devices[i], path, {"id", "model", "memory_gb"});
        GpuDevice device{static_cast<int>(i), model, memory_gb};
        if (devices[i]["id"]) device.id = ReadInt(devices[i]["id"], path + ".id", 0, kMaxGpus - 1);
        if (devices[i]["model"]) device.model = Read<std::string>(devices[i]["model"], path + ".model", "a string");
        if (devices[i]["memory_gb"]) device.memory_gb = ReadNumber(devices[i]["memory_gb"], path + ".memory_gb", 0, kMaxMemoryGb);
        for (const GpuDevice& other : config.hardware.gpus) {
          if (other.id == device.id) Fail(devices[i], path + ".id", "duplicate GPU id " + std::to_string(device.id));
        }
        config.hardware.gpus.push_back(device);
      }
      if (devices.size() > static_cast<size_t>(kMaxGpus)) {
        Fail(devices, "hardware.gpu.devices", "lists more than " + std::to_string(kMaxGpus) + " GPUs");
      }
      if (gpu["count"] && ReadInteger(gpu["count"], "hardware.gpu.count", 0, kMaxGpus) !=
                              static_cast<int64_t>(devices.size())) {
        Fail(gpu["count"], "hardware.gpu.count", "is " + gpu["count"].Scalar() + " but devices lists " +
                                                     std::to_string(devices.size()));
      }
    } else {
      const int count = gpu["count"] ? ReadInt(gpu["count"], "hardware.gpu.count", 0, kMaxGpus) : 0;
      for (int id = 0; id < count; ++id) config.hardware.gpus.push_back({id, model, memory_gb});
    }
  }

  const YAML::Node memory = hardware["memory"];
  if (!memory) Fail(hardware, "hardware.memory", "missing");
  CheckKeys(memory, "hardware.memory", {"total_gb", "overcommit_ratio"});
  if (!memory["total_gb"]) Fail(memory, "hardware.memory.total_gb", "missing");
  config.hardware.memory.total_gb = ReadPositive(memory["total_gb"], "hardware.memory.total_gb", kMaxMemoryGb);
  if (memory["overcommit_ratio"]) {
    config.hardware.memory.overcommit_ratio =
        ReadNumber(memory["overcommit_ratio"], "hardware.memory.overcommit_ratio", 1.0, 1000.0);
  }
}

// A task group or plugin entry whose demands exceed the whole pool could
// never run: "task_groups.big.threads: needs 64 but the pool has 48".
void CheckFits(const HardwareConfig& config, const std::string& path, const RequirementOverride& r,
               const YAML::Node& node) {
  if (r.cpu_cores && Quantity::FromDouble(*r.cpu_cores) > Quantity::FromDouble(config.hardware.cpu.cores)) {
    Fail(node, path + ".cpu_cores",
         "needs " + Quantity::FromDouble(*r.cpu_cores).ToString() + " but the pool has " +
             Quantity::FromDouble(config.hardware.cpu.cores).ToString());
  }
  if (r.cpu_threads && *r.cpu_threads > config.hardware.cpu.threads) {
    Fail(node, path + (node["cpu_threads"] ? ".cpu_threads" : ".threads"),
         "needs " + std::to_string(*r.cpu_threads) + " but the pool has " +
             std::to_string(config.hardware.cpu.threads));
  }
  if (r.memory_mb && *r.memory_mb > config.memory_capacity_mb()) {
    Fail(node, path + ".memory_mb",
         "needs " + std::to_string(*r.memory_mb) + " but the pool has " +
             std::to_string(config.memory_capacity_mb()));
  }
  if (r.gpu_count && Quantity::FromDouble(*r.gpu_count).CeilWholes() >
                         static_cast<int64_t>(config.hardware.gpus.size())) {
    Fail(node, path + ".gpu_count",
         "needs " + Quantity::FromDouble(*r.gpu_count).ToString() + " but the pool has " +
             std::to_string(config.hardware.gpus.size()) + " GPU(s)");
  }
}

// plugins.<p>.sandbox: `false`, or a map of what the plugin may do.
SandboxConfig ReadSandbox(const YAML::Node& node, const std::string& path, const std::filesystem::path& source) {
  SandboxConfig sandbox;
  if (node.IsScalar()) {
    sandbox.enabled = Read<bool>(node, path, "false (no sandbox) or a map {required, read, write, exec, network, max_file_mb}");
    return sandbox;
  }
  RequireMap(node, path);
  CheckKeys(node, path, {"required", "read", "write", "exec", "network", "max_file_mb"});
  IfPresent(node, "required", [&](auto n) { sandbox.required = Read<bool>(n, path + ".required", "true or false"); });
  IfPresent(node, "exec", [&](auto n) { sandbox.exec = Read<bool>(n, path + ".exec", "true or false"); });
  IfPresent(node, "network", [&](auto n) { sandbox.network = Read<bool>(n, path + ".network", "true or false"); });
  IfPresent(node, "max_file_mb",
            [&](auto n) { sandbox.max_file_mb = ReadInteger(n, path + ".max_file_mb", 1, kMaxMemoryMb); });
  for (const char* key : {"read", "write"}) {
    const YAML::Node list = node[key];
    if (!list) continue;
    if (!list.IsSequence()) Fail(list, path + "." + key, "expected a list of paths");
    auto& out = std::string_view(key) == "read" ? sandbox.read : sandbox.write;
    for (size_t i = 0; i < list.size(); ++i) {
      const std::string where = path + "." + key + "[" + std::to_string(i) + "]";
      const std::filesystem::path entry = Read<std::string>(list[i], where, "a path");
      out.push_back(entry.is_absolute() || source.empty() ? entry : (source.parent_path() / entry).lexically_normal());
    }
  }
  return sandbox;
}

// allocation: how CPUs and GPUs are picked for a grant.
void ReadAllocation(const YAML::Node& allocation, HardwareConfig& config) {
  CheckKeys(allocation, "allocation", {"cpu", "gpu"});
  IfPresent(allocation, "cpu", [&](auto n) { config.allocation.cpu = ReadStrategy(n, "allocation.cpu"); });
  IfPresent(allocation, "gpu", [&](auto n) { config.allocation.gpu = ReadStrategy(n, "allocation.gpu"); });
}

// task_groups: shared requirements and instance caps; each must fit the pool.
void ReadTaskGroups(const YAML::Node& groups, HardwareConfig& config) {
  RequireMap(groups, "task_groups");
  for (const auto& entry : groups) {
    const std::string name = entry.first.as<std::string>();
    const std::string path = "task_groups." + name;
    CheckKeys(entry.second, path,
              {"cpu_cores", "cpu_threads", "threads", "memory_mb", "gpu_count", "exclusive_gpu", "max_instances"});
    TaskGroupConfig group;
    ReadResources(entry.second, path, group.resources, group.max_instances);
    CheckFits(config, path, group.resources, entry.second);
    config.task_groups[name] = group;
  }
}

// plugins.<name>: a plugin's overrides, isolation, sandbox and settings.
// plugins.<p>.retry (common/retry_policy.h).
RetryPolicy ReadRetry(const YAML::Node& node, const std::string& plugin_path) {
  const std::string path = plugin_path + ".retry";
  CheckKeys(node, path, {"attempts", "backoff_ms", "max_backoff_ms", "on"});
  RetryPolicy retry;
  IfPresent(node, "attempts", [&](auto n) { retry.attempts = ReadInt(n, path + ".attempts", 1, kMaxRetryAttempts); });
  IfPresent(node, "backoff_ms",
            [&](auto n) { retry.backoff_ms = ReadInteger(n, path + ".backoff_ms", 0, kMaxBackoffMs); });
  // A backoff given without its cap raises the default cap with it.
  retry.max_backoff_ms = std::max(retry.max_backoff_ms, retry.backoff_ms);
  IfPresent(node, "max_backoff_ms", [&](auto n) {
    retry.max_backoff_ms = ReadInteger(n, path + ".max_backoff_ms", retry.backoff_ms, kMaxBackoffMs);
  });
  IfPresent(node, "on", [&](auto n) {
    if (!n.IsSequence()) Fail(n, path + ".on", "expected a list of codes");
    retry.on.clear();
    for (const YAML::Node& code : n) retry.on.push_back(Read<std::string>(code, path + ".on", "a code"));
  });
  if (const Status valid = retry.Validate(); !valid.ok()) {  // "retry.on: ...": the field, then what is wrong
    const std::string& why = valid.message();
    Fail(node, plugin_path + "." + why.substr(0, why.find(": ")), why.substr(why.find(": ") + 2));
  }
  return retry;
}

void ReadPlugins(const YAML::Node& plugins, const std::filesystem::path& source, HardwareConfig& config) {
  RequireMap(plugins, "plugins");
  for (const auto& entry : plugins) {
    const std::string name = entry.first.as<std::string>();
    const std::string path = "plugins." + name;
    CheckKeys(entry.second, path,
              {"task_group", "cpu_cores", "cpu_threads", "threads", "memory_mb", "gpu_count", "exclusive_gpu",
               "max_instances", "settings", "isolation", "processes", "sandbox", "retry"});
    PluginConfig plugin;
    ReadResources(entry.second, path, plugin.resources, plugin.max_instances);
    CheckFits(config, path, plugin.resources, entry.second);
    if (const YAML::Node group = entry.second["task_group"]) {
      plugin.task_group = Read<std::string>(group, path + ".task_group", "a string");
      if (!config.task_groups.count(*plugin.task_group)) {
        Fail(group, path + ".task_group", "no task group named '" + *plugin.task_group + "'");
      }
    }
    if (const YAML::Node isolation = entry.second["isolation"]) {
      const std::string mode = Read<std::string>(isolation, path + ".isolation", "thread or process");
      if (mode != "thread" && mode != "process") Fail(isolation, path + ".isolation", "expected thread or process, got '" + mode + "'");
      plugin.isolate_process = mode == "process";
    }
    IfPresent(entry.second, "processes",
              [&](auto n) { plugin.processes = ReadInt(n, path + ".processes", 0, 1024); });
    if (const YAML::Node sandbox = entry.second["sandbox"]) plugin.sandbox = ReadSandbox(sandbox, path + ".sandbox", source);
    if (const YAML::Node retry = entry.second["retry"]) plugin.retry = ReadRetry(retry, path);
    const YAML::Node settings = entry.second["settings"];
    if (settings && !settings.IsMap()) Fail(settings, path + ".settings", "expected a map");
    plugin.settings_msgpack = YamlToMsgpack(settings ? settings : YAML::Node(YAML::NodeType::Map));
    config.plugins[name] = std::move(plugin);
  }
}

// plugin_dirs: relative paths are relative to the config file.
void ReadPluginDirs(const YAML::Node& node, const std::filesystem::path& source, HardwareConfig& config) {
  if (!node.IsSequence()) Fail(node, "plugin_dirs", "expected a list of directories (or plugin files)");
  for (size_t i = 0; i < node.size(); ++i) {
    const std::filesystem::path dir = Read<std::string>(node[i], "plugin_dirs[" + std::to_string(i) + "]", "a path");
    config.plugin_dirs.push_back(dir.is_absolute() || source.empty() ? dir : (source.parent_path() / dir).lexically_normal());
  }
}

// scheduler: the queue bound and when a waiting task is reserved for.
void ReadScheduler(const YAML::Node& scheduler, HardwareConfig& config) {
  CheckKeys(scheduler, "scheduler", {"max_queued", "reserve_after_ms"});
  IfPresent(scheduler, "max_queued",
            [&](auto n) { config.scheduler.max_queued = ReadInteger(n, "scheduler.max_queued", 1, kMaxQueue); });
  IfPresent(scheduler, "reserve_after_ms",
            [&](auto n) { config.scheduler.reserve_after_ms = ReadInteger(n, "scheduler.reserve_after_ms", 0, kMaxMs); });
}

// shutdown: how long a drain waits for running tasks.
void ReadShutdown(const YAML::Node& shutdown, HardwareConfig& config) {
  CheckKeys(shutdown, "shutdown", {"drain_timeout_s"});
  IfPresent(shutdown, "drain_timeout_s",
            [&](auto n) { config.shutdown.drain_timeout_s = ReadNumber(n, "shutdown.drain_timeout_s", 0, kMaxMs / 1000.0); });
}

// transport: endpoints, bounds, Redis.
void ReadTransport(const YAML::Node& transport, HardwareConfig& config) {
  CheckKeys(transport, "transport",
            {"tasks", "results", "rpc", "events", "max_pending_results", "tasks_hwm", "max_message_bytes", "redis",
             "redis_password_file", "max_deliveries", "prefetch", "keep_results"});
  IfPresent(transport, "keep_results", [&](auto n) {
    config.transport.keep_results = Read<bool>(n, "transport.keep_results", "true or false");
  });
  IfPresent(transport, "prefetch", [&](auto n) {
    if (n.IsScalar() && n.Scalar() == "auto") {
      config.transport.prefetch = TransportSection::kAutoPrefetch;
    } else {
      if (n.IsScalar() && !std::isfinite(Read<double>(n, "transport.prefetch", "auto or a number of tasks"))) {
        Fail(n, "transport.prefetch", "expected auto or a number of tasks, got '" + n.Scalar() + "'");
      }
      config.transport.prefetch = ReadInt(n, "transport.prefetch", 0, 10000);
    }
  });
  IfPresent(transport, "redis",
            [&](auto n) { config.transport.redis = Read<std::string>(n, "transport.redis", "a Redis URL"); });
  IfPresent(transport, "redis_password_file", [&](auto n) {
    config.transport.redis_password_file = Read<std::string>(n, "transport.redis_password_file", "a file path");
  });
  IfPresent(transport, "max_deliveries", [&](auto n) {
    config.transport.max_deliveries = ReadInt(n, "transport.max_deliveries", 1, 1000);
  });
  for (const char* socket : {"tasks", "results", "rpc", "events"}) {
    IfPresent(transport, socket, [&](auto n) {
      config.transport.endpoints[socket] = Read<std::string>(n, std::string("transport.") + socket, "an endpoint");
    });
  }
  IfPresent(transport, "max_pending_results", [&](auto n) {
    config.transport.max_pending_results = ReadInteger(n, "transport.max_pending_results", 1, kMaxQueue);
  });
  IfPresent(transport, "tasks_hwm",
            [&](auto n) { config.transport.tasks_hwm = ReadInt(n, "transport.tasks_hwm", 1, kMaxQueue); });
  IfPresent(transport, "max_message_bytes",
            [&](auto n) {
              config.transport.max_message_bytes = ReadInteger(n, "transport.max_message_bytes", 64, int64_t{1} << 40);
            });
}

// dedup: the window a task id is remembered in.
void ReadDedup(const YAML::Node& dedup, HardwareConfig& config) {
  CheckKeys(dedup, "dedup", {"window_s", "max_entries"});
  IfPresent(dedup, "window_s", [&](auto n) { config.dedup.window_s = ReadNumber(n, "dedup.window_s", 0, kMaxMs / 1000.0); });
  IfPresent(dedup, "max_entries",
            [&](auto n) { config.dedup.max_entries = ReadInteger(n, "dedup.max_entries", 0, kMaxQueue); });
}

// security.curve: key files, relative to the config file.
void ReadSecurity(const YAML::Node& security, const std::filesystem::path& source, HardwareConfig& config) {
  CheckKeys(security, "security", {"curve"});
  if (const YAML::Node curve = security["curve"]) {
    CheckKeys(curve, "security.curve", {"secret_key_file", "authorized_keys_file"});
    for (const auto& [key, target] : {std::pair{"secret_key_file", &config.security.curve.secret_key_file},
                                      std::pair{"authorized_keys_file", &config.security.curve.authorized_keys_file}}) {
      const YAML::Node node = curve[key];
      if (!node) Fail(curve, std::string("security.curve.") + key, "missing");
      const std::filesystem::path file = Read<std::string>(node, std::string("security.curve.") + key, "a path");
      *target = file.is_absolute() ? file : source.parent_path() / file;
    }
  }
}

// http: the listener and the duration histograms.
void ReadHttp(const YAML::Node& http, HardwareConfig& config) {
  CheckKeys(http, "http", {"enabled", "listen", "histogram_buckets_s"});
  IfPresent(http, "enabled", [&](auto n) { config.http.enabled = Read<bool>(n, "http.enabled", "true or false"); });
  IfPresent(http, "listen", [&](auto n) {
    config.http.listen = Read<std::string>(n, "http.listen", "host:port");
    if (config.http.listen.rfind(':') == std::string::npos) Fail(n, "http.listen", "expected host:port, e.g. 127.0.0.1:9090");
  });
  IfPresent(http, "histogram_buckets_s", [&](auto n) {
    const std::string path = "http.histogram_buckets_s";
    if (!n.IsSequence() || n.size() == 0 || n.size() > kMaxHistogramBuckets) {
      Fail(n, path, "expected a list of 1 to " + std::to_string(kMaxHistogramBuckets) +
                        " bucket bounds in seconds, ascending (e.g. [1, 10, 60, 600, 3600])");
    }
    for (size_t i = 0; i < n.size(); ++i) {
      const double bound = ReadPositive(n[i], path + "[" + std::to_string(i) + "]", kMaxMs / 1000.0);
      if (i > 0 && bound <= config.http.histogram_buckets_s.back()) {
        Fail(n[i], path + "[" + std::to_string(i) + "]",
             "bounds must be ascending: " + n[i].Scalar() + " comes after " + n[i - 1].Scalar());
      }
      config.http.histogram_buckets_s.push_back(bound);
    }
  });
}

HardwareConfig Parse(const YAML::Node& root, const std::filesystem::path& source, const Machine* machine) {
  HardwareConfig config;
  config.source = source;
  if (!root.IsMap()) throw ConfigError("the top level must be a map");
  CheckKeys(root, "",
            {"hardware", "allocation", "task_groups", "plugins", "plugin_dirs", "allow_task_overrides", "oversubscribe",
             "scheduler", "shutdown", "transport", "dedup", "http", "security"});
  const YAML::Node hardware = root["hardware"];
  if (!hardware) throw ConfigError("hardware: missing");
  if (hardware.IsScalar()) {
    if (hardware.Scalar() != "detect") {
      Fail(hardware, "hardware", "expected detect or a map (cpu, gpu, memory), got '" + hardware.Scalar() + "'");
    }
    config.hardware = ConfigFromMachine(machine ? *machine : DetectMachine()).hardware;
    config.hardware_detected = true;
  } else {
    ReadHardware(hardware, config);
  }
  if (const YAML::Node allocation = root["allocation"]) ReadAllocation(allocation, config);
  if (const YAML::Node groups = root["task_groups"]) ReadTaskGroups(groups, config);  // before plugins: they name groups
  if (const YAML::Node plugins = root["plugins"]) ReadPlugins(plugins, source, config);
  if (const YAML::Node node = root["plugin_dirs"]) ReadPluginDirs(node, source, config);
  if (const YAML::Node node = root["allow_task_overrides"]) {
    config.allow_task_overrides = Read<bool>(node, "allow_task_overrides", "true or false");
  }
  if (const YAML::Node node = root["oversubscribe"]) {
    config.oversubscribe = Read<bool>(node, "oversubscribe", "true or false");
  }
  if (const YAML::Node scheduler = root["scheduler"]) ReadScheduler(scheduler, config);
  if (const YAML::Node shutdown = root["shutdown"]) ReadShutdown(shutdown, config);
  if (const YAML::Node transport = root["transport"]) ReadTransport(transport, config);
  if (const YAML::Node dedup = root["dedup"]) ReadDedup(dedup, config);
  if (const YAML::Node security = root["security"]) ReadSecurity(security, source, config);
  if (const YAML::Node http = root["http"]) ReadHttp(http, config);
  return config;
}

}  // namespace

const char* ToString(Strategy strategy) { return strategy == Strategy::kPack ? "pack" : "spread"; }

int64_t HardwareConfig::memory_capacity_mb() const {
  return static_cast<int64_t>(std::floor(hardware.memory.total_gb * 1024.0 * hardware.memory.overcommit_ratio));
}

StatusOr<HardwareConfig> ParseHardwareConfig(const std::string& yaml_text, const std::filesystem::path& source,
                                             const Machine* machine) {
  const std::string prefix = source.string() + ": ";
  try {
    return Parse(YAML::Load(yaml_text), source, machine);
  } catch (const ConfigError& e) {
    return Status(ErrorCode::kInvalidConfig, prefix + e.what());
  } catch (const YAML::Exception& e) {
    return Status(ErrorCode::kInvalidConfig, prefix + "invalid YAML: " + e.what());
  }
}

StatusOr<HardwareConfig> LoadHardwareConfig(const std::filesystem::path& path, const Machine* machine) {
  std::ifstream file(path);
  if (!file) return Status(ErrorCode::kInvalidConfig, path.string() + ": cannot open");
  std::stringstream text;
  text << file.rdbuf();
  return ParseHardwareConfig(text.str(), path, machine);
}

}  // namespace umi
