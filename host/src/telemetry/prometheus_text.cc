#include "telemetry/prometheus_text.h"

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>

#include "common/text.h"
#include "common/version.h"

namespace umi {
namespace {

// process_* as Prometheus' client libraries export them, from /proc/self.
struct ProcessStats {
  double cpu_seconds = 0, start_time = 0, resident_bytes = 0, virtual_bytes = 0, open_fds = 0, max_fds = 0;
};

ProcessStats ReadProcessStats() {
  ProcessStats stats;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  std::ifstream stat_file("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
  // Fields after the command name (which may hold spaces), from field 3 on.
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));
  std::vector<std::string> f((std::istream_iterator<std::string>(fields)), std::istream_iterator<std::string>());
  if (f.size() > 21) {
    stats.cpu_seconds = (std::stod(f[11]) + std::stod(f[12])) / ticks;  // utime + stime
    stats.virtual_bytes = std::stod(f[20]);
    stats.resident_bytes = std::stod(f[21]) * static_cast<double>(sysconf(_SC_PAGESIZE));
    std::ifstream system_stat("/proc/stat");
    for (std::string line; std::getline(system_stat, line);) {
      if (line.rfind("btime ", 0) == 0) stats.start_time = std::stod(line.substr(6)) + std::stod(f[19]) / ticks;
    }
  }
  std::error_code error;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", error);
       !error && it != std::filesystem::directory_iterator(); it.increment(error)) {
    ++stats.open_fds;
  }
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) == 0) stats.max_fds = static_cast<double>(files.rlim_cur);
  return stats;
}

double UnixNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Prometheus label values escape backslash, double quote and newline.
std::string Label(const std::string& raw) {
  const std::string value = ToValidUtf8(raw);
  std::string out;
  out.reserve(value.size() + 2);
  out += '"';
  for (char c : value) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  out += '"';
  return out;
}

std::string Number(double value) {
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  std::ostringstream out;
  out.precision(12);
  out << value;
  return out.str();
}

// Families are written in one pass over a snapshot: HELP and TYPE, then samples.
struct Writer {
  std::ostringstream out;
  void Family(const char* name, const char* type, const char* help) {
    out << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
  }
  // A family with one unlabelled sample.
  void Single(const char* name, const char* type, const char* help, uint64_t value) {
    Family(name, type, help);
    out << name << ' ' << value << '\n';
  }
  void Value(const char* name, const char* type, const char* help, double value) {
    Family(name, type, help);
    out << name << ' ' << Number(value) << '\n';
  }
};

// The host, its version, whether it serves.
void WriteIdentity(Writer& w, const Telemetry::Snapshot& s) {
  w.Family("umi_info", "gauge", "Constant 1, labelled with the host name and version.");
  w.out << "umi_info{host=" << Label(s.host) << ",version=" << Label(UMI_VERSION) << "} 1\n";
  w.Single("umi_ready", "gauge", "1 when plugins are loaded, sockets are bound and the host is not draining.",
           s.ready && !s.draining ? 1 : 0);
  w.Single("umi_draining", "gauge", "1 while the host drains before exit.", s.draining ? 1 : 0);
}

// Tasks by plugin: ended, failed, queued, running; the oldest wait.
void WriteTasks(Writer& w, const Telemetry::Snapshot& s) {
  // Every loaded plugin x status from 0, so increase() sees the first event.
  w.Family("umi_tasks_total", "counter", "Tasks that reached a terminal result, by plugin and status.");
  std::map<std::string, std::map<std::string, uint64_t>> done;
  for (const std::string& plugin : s.known_plugins) {
    for (const char* status : {"ok", "error", "rejected", "timeout", "cancelled", "crashed"}) done[plugin][status] = 0;
  }
  for (const auto& [plugin, stats] : s.plugins) {
    if (plugin.empty()) continue;
    for (const auto& [status, count] : stats.done) done[plugin][status] = count;
  }
  for (const auto& [plugin, statuses] : done) {
    for (const auto& [status, count] : statuses) {
      w.out << "umi_tasks_total{plugin=" << Label(plugin) << ",status=" << Label(status) << "} " << count << '\n';
    }
  }
  w.Family("umi_task_failures_total", "counter",
           "Tasks that did not end ok, by plugin, status and error code (codes outside the known set count as "
           "\"other\").");
  for (const auto& [plugin, stats] : s.plugins) {
    if (plugin.empty()) continue;
    for (const auto& [key, count] : stats.failed) {
      w.out << "umi_task_failures_total{plugin=" << Label(plugin) << ",status=" << Label(key.first)
          << ",code=" << Label(key.second) << "} " << count << '\n';
    }
  }
  w.Family("umi_tasks_queued", "gauge", "Tasks waiting for resources, by plugin.");
  for (const std::string& plugin : s.known_plugins) {
    const auto queued = s.queued_by_plugin.find(plugin);
    w.out << "umi_tasks_queued{plugin=" << Label(plugin) << "} "
        << (queued == s.queued_by_plugin.end() ? 0 : queued->second) << '\n';
  }
  w.Family("umi_tasks_running_by_plugin", "gauge", "Tasks running now, by plugin.");
  for (const std::string& plugin : s.known_plugins) {
    const auto running = s.running_by_plugin.find(plugin);
    w.out << "umi_tasks_running_by_plugin{plugin=" << Label(plugin) << "} "
        << (running == s.running_by_plugin.end() ? 0 : running->second) << '\n';
  }
  w.Family("umi_oldest_queued_age_seconds", "gauge",
           "How long the task waiting longest has waited (0 when none waits): grows through a stall, which "
           "queue-time histograms see only once it ends.");
  w.out << "umi_oldest_queued_age_seconds "
      << Number(s.oldest_enqueued_at
                    ? std::chrono::duration<double>(std::chrono::steady_clock::now() - *s.oldest_enqueued_at).count()
                    : 0.0)
      << '\n';
  w.Single("umi_reading_tasks", "gauge",
           "1 while the host reads new tasks; 0 under backpressure (queue or unsent results at their limit) or "
           "while draining.",
           s.reading_tasks ? 1 : 0);
}

// Worker processes and their sandbox.
void WriteWorkers(Writer& w, const Telemetry::Snapshot& s) {
  w.Family("umi_worker_processes", "gauge", "Worker processes alive (isolation: process, Python plugins), by plugin.");
  for (const auto& [plugin, workers] : s.worker_processes) {
    w.out << "umi_worker_processes{plugin=" << Label(plugin) << "} " << workers.live << '\n';
  }
  w.Family("umi_worker_process_exits_total", "counter",
           "Worker processes that ended unasked (died, killed after a cancel, broke the protocol), by plugin; "
           "each is replaced: a rising rate is a crash loop.");
  for (const auto& [plugin, workers] : s.worker_processes) {
    w.out << "umi_worker_process_exits_total{plugin=" << Label(plugin) << "} " << workers.ended << '\n';
  }
  w.Family("umi_worker_late_frames_total", "counter",
           "Results and progress a worker sent for a task other than the one it runs (a thread or forked process the "
           "plugin left behind), dropped; by plugin.");
  for (const auto& [plugin, workers] : s.worker_processes) {
    w.out << "umi_worker_late_frames_total{plugin=" << Label(plugin) << "} " << workers.late_frames << '\n';
  }
  w.Family("umi_sandbox_kills_total", "counter",
           "Worker processes their sandbox stopped (a system call it denies, a file past max_file_mb); by plugin.");
  for (const auto& [plugin, workers] : s.worker_processes) {
    w.out << "umi_sandbox_kills_total{plugin=" << Label(plugin) << "} " << workers.sandbox_kills << '\n';
  }
  w.Family("umi_sandbox_mechanism", "gauge",
           "1 where this kernel offers a mechanism of the workers' sandbox, 0 where it does not.");
  for (const auto& [mechanism, offered] : s.sandbox_mechanisms) {
    w.out << "umi_sandbox_mechanism{mechanism=" << Label(mechanism) << "} " << (offered ? 1 : 0) << '\n';
  }
}

// The host's own levels and counters.
void WriteHostCounters(Writer& w, const Telemetry::Snapshot& s) {
  w.Single("umi_queue_depth", "gauge", "Tasks accepted and waiting for resources.", s.queued);
  w.Single("umi_tasks_running", "gauge", "Tasks running now.", s.running);
  w.Single("umi_unsent_results", "gauge", "Results waiting for a collector to connect.", s.unsent_results);
  w.Single("umi_malformed_messages_total", "counter", "Messages that could not be decoded as protocol v1.", s.malformed);
  w.Single("umi_deduplicated_tasks_total", "counter", "Retries answered with a stored result instead of running.",
           s.deduplicated);
  w.Single("umi_retried_runs_total", "counter", "Runs that failed and ran again under their retry policy.",
           s.retried);
  w.Single("umi_plugin_load_failures_total", "counter", "Plugin libraries refused at start or reload.",
           s.plugin_load_failures);
  w.Single("umi_plugins_loaded", "gauge", "Plugins loaded now.", s.plugins_loaded);
  w.Single("umi_plugins_refused", "gauge", "Plugin libraries refused at the latest load (start or reload).",
           s.plugins_refused);
  w.Single("umi_dropped_replies_total", "counter",
           "Results and rpc replies that could not be delivered (client gone, or unsent when a drain gave up).",
           s.dropped_replies);
  w.Single("umi_config_fallback", "gauge",
           "1 when the named config could not be used and the host runs on detected hardware (--allow-fallback).",
           s.config_fallback.empty() ? 0 : 1);
}

// Redis Streams, when the host is in a farm.
void WriteFarm(Writer& w, const Telemetry::Snapshot& s) {
  if (s.farm) {
    w.Family("umi_stream_backlog", "gauge",
             "Redis Streams: tasks in a plugin's stream no host has taken (waiting) or taken and not answered "
             "(pending), for every host of the farm (KEDA, alerts).");
    for (const auto& [plugin, counts] : s.farm->backlog) {
      w.out << "umi_stream_backlog{plugin=" << Label(plugin) << ",state=\"waiting\"} " << counts.first << '\n';
      w.out << "umi_stream_backlog{plugin=" << Label(plugin) << ",state=\"pending\"} " << counts.second << '\n';
    }
    w.Family("umi_stream_unserved_tasks", "gauge",
             "Redis Streams: tasks waiting for a plugin that no live host of the farm offers (they wait until one "
             "does), per plugin; read every 5 s.");
    for (const auto& [plugin, waiting] : s.farm->unserved) {
      w.out << "umi_stream_unserved_tasks{plugin=" << Label(plugin) << "} " << waiting << '\n';
    }
    w.Single("umi_redis_held_results", "gauge",
             "Results waiting for Redis: refused (OOM, READONLY, ACL, ...) or Redis unreachable; not ready while above 0.",
             s.farm->held_results);
    w.Single("umi_redis_stale_results_total", "counter",
             "Results dropped because another host held the task's entry by then (this host's lease had lapsed).",
             s.farm->stale_results);
    w.Single("umi_redis_redirected_results_total", "counter",
             "Results whose reply_to could not take a stream entry, sent to umi:results with the reason.",
             s.farm->redirected_results);
    w.Single("umi_redeliveries_total", "counter", "Stream entries this host took from another's lapsed lease.",
             s.farm->redeliveries);
    w.Single("umi_redis_leases_lost_total", "counter",
             "Stream entries another host took from this one while it could not renew their leases.",
             s.farm->leases_lost);
  }
}

// The event loop's heartbeat, reloads.
void WriteLoop(Writer& w, const Telemetry::Snapshot& s) {
  w.Family("umi_loop_last_tick_seconds", "gauge", "Unix time of the event loop's last turn (/healthz fails when stale).");
  // Unix time of the tick, from how long ago it was on the steady clock.
  const double tick_age = std::chrono::duration<double>(std::chrono::steady_clock::now() - s.last_tick).count();
  w.out << "umi_loop_last_tick_seconds "
      << std::to_string(s.last_tick == std::chrono::steady_clock::time_point() ? 0.0 : UnixNow() - tick_age) << '\n';
  w.Family("umi_config_reloads_total", "counter", "Config reloads, by result.");
  w.out << "umi_config_reloads_total{result=\"ok\"} " << s.reloads << '\n';
  w.out << "umi_config_reloads_total{result=\"refused\"} " << s.failed_reloads << '\n';
}

// Queue and run time histograms per plugin on `bounds`.
void WriteHistograms(Writer& w, const Telemetry::Snapshot& s, const std::vector<double>& bounds) {
  auto histogram = [&](const char* name, const char* help, auto member) {
    w.Family(name, "histogram", help);
    for (const auto& [plugin, stats] : s.plugins) {
      if (plugin.empty()) continue;
      const Telemetry::Histogram& h = stats.*member;
      const std::string labels = "plugin=" + Label(plugin);
      uint64_t cumulative = 0;
      for (size_t i = 0; i <= bounds.size(); ++i) {
        cumulative += i < h.counts.size() ? h.counts[i] : 0;  // never observed: no counts yet
        w.out << name << "_bucket{" << labels << ",le=\""
            << (i < bounds.size() ? Number(bounds[i]) : "+Inf") << "\"} " << cumulative << '\n';
      }
      w.out << name << "_sum{" << labels << "} " << Number(h.sum) << '\n';
      w.out << name << "_count{" << labels << "} " << h.count << '\n';
    }
  };
  histogram("umi_task_queue_seconds", "Time from acceptance to start, per plugin.", &Telemetry::PluginStats::queue_seconds);
  histogram("umi_task_run_seconds", "Time the plugin ran, per plugin.", &Telemetry::PluginStats::run_seconds);
}

// The pool: each resource used and its capacity.
void WritePool(Writer& w, const Telemetry::Snapshot& s) {
  // One family per resource and unit: used, then capacity.
  const PoolUsage& p = s.pool;
  auto resource = [&](const std::string& used_name, const std::string& capacity_name, const std::string& what,
                      double used, double capacity, const char* capacity_note) {
    w.Family(used_name.c_str(), "gauge", (what + " in use by running tasks.").c_str());
    w.out << used_name << ' ' << Number(used) << '\n';
    w.Family(capacity_name.c_str(), "gauge", (what + " the pool grants in all" + capacity_note + ".").c_str());
    w.out << capacity_name << ' ' << Number(capacity) << '\n';
  };
  resource("umi_pool_cpu_cores_used", "umi_pool_cpu_cores_capacity", "Physical CPU cores (fractional)",
           p.cpu_cores_used.ToDouble(), p.cpu_cores_total.ToDouble(), "");
  resource("umi_pool_cpu_threads_used", "umi_pool_cpu_threads_capacity", "CPU threads", double(p.cpu_threads_used),
           double(p.cpu_threads_total), "");
  resource("umi_pool_memory_used_bytes", "umi_pool_memory_capacity_bytes", "Memory in bytes",
           double(p.memory_mb_used) * 1048576.0, double(p.memory_mb_total) * 1048576.0, " (after overcommit)");
  resource("umi_pool_cpu_task_slots_used", "umi_pool_cpu_task_slots_capacity", "CPU task slots",
           double(p.cpu_tasks_running), double(p.max_concurrent_tasks), " (hardware.cpu.max_concurrent_tasks)");
  w.Family("umi_gpu_used_ratio", "gauge", "Share of each GPU granted to running tasks (1 = the whole device).");
  // Labelled by the configured device id.
  auto gpu_id = [&p](size_t index) { return index < p.gpu_ids.size() ? p.gpu_ids[index] : static_cast<int>(index); };
  for (size_t gpu = 0; gpu < p.gpu_used.size(); ++gpu) {
    w.out << "umi_gpu_used_ratio{gpu=\"" << gpu_id(gpu) << "\"} " << Number(p.gpu_used[gpu].ToDouble()) << '\n';
  }
  w.Family("umi_gpu_capacity_ratio", "gauge", "Share of each GPU the pool grants (1 = the whole device).");
  for (size_t gpu = 0; gpu < p.gpu_used.size(); ++gpu) {
    w.out << "umi_gpu_capacity_ratio{gpu=\"" << gpu_id(gpu) << "\"} 1\n";
  }
}

// Process_* from /proc/self.
void WriteProcess(Writer& w) {
  const ProcessStats process = ReadProcessStats();
  w.Value("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
           process.cpu_seconds);
  w.Value("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.",
           process.start_time);
  w.Value("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", process.resident_bytes);
  w.Value("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", process.virtual_bytes);
  w.Value("process_open_fds", "gauge", "Number of open file descriptors.", process.open_fds);
  w.Value("process_max_fds", "gauge", "Maximum number of open file descriptors.", process.max_fds);
}

}  // namespace

std::string RenderPrometheus(const Telemetry::Snapshot& s, const std::vector<double>& bounds) {
  Writer w;
  WriteIdentity(w, s);
  WriteTasks(w, s);
  WriteWorkers(w, s);
  WriteHostCounters(w, s);
  WriteFarm(w, s);
  WriteLoop(w, s);
  WriteHistograms(w, s, bounds);
  WritePool(w, s);
  WriteProcess(w);
  return w.out.str();
}

}  // namespace umi
