#include "telemetry/telemetry.h"

#include <nlohmann/json.hpp>

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>

#include "common/text.h"
#include "common/version.h"

namespace umi {
namespace {

// The error codes a label may take: the protocol's, and the ones the bundled
// plugins use. Any other code a plugin invents counts as "other", so a
// plugin cannot grow the series without bound.
std::string BoundedCode(const std::string& code) {
  static const std::set<std::string> kKnown = {
      "bad_request", "unsupported_version", "unknown_plugin", "infeasible", "duplicate_id", "id_conflict",
      "queue_full", "shutting_down", "plugin_error", "timeout", "cancelled", "crashed", "killed",
      "max_deliveries", "out_of_memory", "bad_output", "forbidden", "bad_input", "not_found", "no_device",
      "unsupported", "io_error"};
  return kKnown.count(code) ? code : "other";
}

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

nlohmann::json PercentilesJson(const std::vector<double>& samples) {
  return {{"samples", samples.size()},
          {"p50", Percentile(samples, 0.50)},
          {"p90", Percentile(samples, 0.90)},
          {"p99", Percentile(samples, 0.99)}};
}

nlohmann::json RecordJson(const TaskRecord& r) {
  return {{"id", r.id},
          {"plugin", r.plugin},
          {"status", r.status},
          {"started_at", r.started_at},
          {"finished_at", r.finished_at ? nlohmann::json(*r.finished_at) : nlohmann::json(nullptr)},
          {"queued_ms", r.queued_ms},
          {"cpu_cores", r.cpu_cores},
          {"cpu_threads", r.cpu_threads},
          {"memory_mb", r.memory_mb},
          {"cpu_ids", r.cpu_ids},
          {"gpu_ids", r.gpu_ids},
          {"gpu_share", r.gpu_share}};
}

}  // namespace

// From a no-op's sub-millisecond to an hour of transcoding, with enough
// bounds between 10 s and 10 min that a media job's p90 is not a straight
// line across one wide bucket.
const std::vector<double>& Telemetry::BucketBounds() {
  static const std::vector<double> bounds = {0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                             1,      2.5,    5,     10,    15,   20,    30,   45,  60,   90,
                                             120,    180,    300,   450,   600,  900,   1200, 1800, 3600};
  return bounds;
}

void Telemetry::Histogram::Observe(double seconds, const std::vector<double>& bounds) {
  if (counts.size() != bounds.size() + 1) counts.assign(bounds.size() + 1, 0);
  const size_t bucket = static_cast<size_t>(std::lower_bound(bounds.begin(), bounds.end(), seconds) - bounds.begin());
  ++counts[bucket];
  sum += seconds;
  ++count;
}

double Percentile(std::vector<double> samples, double q) {
  if (samples.empty()) return 0;
  const auto nth = samples.begin() + static_cast<long>(q * static_cast<double>(samples.size() - 1));
  std::nth_element(samples.begin(), nth, samples.end());
  return *nth;
}

Telemetry::Telemetry(std::string host, size_t recent_capacity, std::vector<double> bucket_bounds)
    : recent_capacity_(recent_capacity), bounds_(bucket_bounds.empty() ? BucketBounds() : std::move(bucket_bounds)) {
  state_.host = std::move(host);
}

void Telemetry::SetReady(bool ready) {
  std::lock_guard lock(mutex_);
  state_.ready = ready;
}
void Telemetry::SetDraining(bool draining) {
  std::lock_guard lock(mutex_);
  state_.draining = draining;
}
void Telemetry::SetPlugins(uint64_t refusals_total, int64_t loaded, int64_t refused) {
  std::lock_guard lock(mutex_);
  state_.plugin_load_failures = refusals_total;
  state_.plugins_loaded = loaded;
  state_.plugins_refused = refused;
}
void Telemetry::CountMalformed() {
  std::lock_guard lock(mutex_);
  ++state_.malformed;
}
void Telemetry::CountDeduplicated() {
  std::lock_guard lock(mutex_);
  ++state_.deduplicated;
}
void Telemetry::CountReload(bool ok) {
  std::lock_guard lock(mutex_);
  ++(ok ? state_.reloads : state_.failed_reloads);
}

void Telemetry::CountDroppedReply(uint64_t count) {
  std::lock_guard lock(mutex_);
  state_.dropped_replies += count;
}

void Telemetry::SetFarm(const FarmReport& report) {
  std::lock_guard lock(mutex_);
  state_.farm = report;
}

void Telemetry::SetSandbox(std::vector<std::pair<std::string, bool>> mechanisms, std::string summary) {
  std::lock_guard lock(mutex_);
  state_.sandbox_mechanisms = std::move(mechanisms);
  state_.sandbox_summary = std::move(summary);
}

void Telemetry::SetConfigFallback(std::string why) {
  std::lock_guard lock(mutex_);
  state_.config_fallback = std::move(why);
}

std::string Telemetry::Unhealthy(std::chrono::steady_clock::time_point now) const {
  std::lock_guard lock(mutex_);
  if (state_.last_tick == std::chrono::steady_clock::time_point()) return {};  // not started yet: /readyz says so
  const auto silent = now - state_.last_tick;
  if (silent < kStuckAfter) return {};
  return "the event loop has not turned for " +
         std::to_string(std::chrono::duration_cast<std::chrono::seconds>(silent).count()) + " s";
}

void Telemetry::SetLoad(size_t queued, size_t running, size_t unsent_results, const PoolUsage& pool,
                        bool heartbeat) {
  const auto now = heartbeat ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
  std::lock_guard lock(mutex_);
  if (heartbeat) state_.last_tick = now;
  state_.queued = queued;
  state_.running = running;
  state_.unsent_results = unsent_results;
  state_.pool = pool;  // assigned into the vectors already there: no allocation per call
}

void Telemetry::SetQueue(std::map<std::string, size_t> queued_by_plugin,
                         std::optional<std::chrono::steady_clock::time_point> oldest_enqueued_at, bool reading_tasks) {
  std::lock_guard lock(mutex_);
  state_.queued_by_plugin = std::move(queued_by_plugin);
  state_.oldest_enqueued_at = oldest_enqueued_at;
  state_.reading_tasks = reading_tasks;
}

void Telemetry::SetWorkerProcesses(std::map<std::string, WorkerProcesses> workers) {
  std::lock_guard lock(mutex_);
  state_.worker_processes = std::move(workers);
}

void Telemetry::TaskStarted(uint64_t key, TaskRecord record) {
  std::lock_guard lock(mutex_);
  if (spare_running_.empty()) {
    running_[key] = std::move(record);
    return;
  }
  // The node the last finished task left: no allocation per task.
  spare_running_.key() = key;
  spare_running_.mapped() = std::move(record);
  auto inserted = running_.insert(std::move(spare_running_));
  if (!inserted.inserted) {
    inserted.position->second = std::move(inserted.node.mapped());
    spare_running_ = std::move(inserted.node);
  }
}

void Telemetry::SetKnownPlugins(std::set<std::string> names) {
  std::lock_guard lock(mutex_);
  known_plugins_ = std::move(names);
  counters_.clear();  // a name may have changed between known and unknown
}

Telemetry::Counters& Telemetry::CountersFor(const std::string& plugin) {
  if (const auto found = counters_.find(plugin); found != counters_.end()) return found->second;
  Counters counters;
  counters.all = &state_.plugins[""];
  if (!plugin.empty()) {
    const bool known = !known_plugins_ || known_plugins_->count(plugin);
    counters.own = &state_.plugins[known ? plugin : kUnknownPlugin];
  }
  // Names from the wire are bounded: the unknown ones share one entry.
  if (counters_.size() >= kMaxCounterCacheEntries) counters_.clear();
  return counters_.emplace(plugin, counters).first->second;
}

void Telemetry::TaskFinished(uint64_t key, const TaskResult& result, TaskRecord* ran) {
  const size_t status_index = static_cast<size_t>(result.status);
  std::lock_guard lock(mutex_);
  Counters& counters = CountersFor(result.plugin);
  for (PluginStats* stats : {counters.all, counters.own}) {
    if (!stats) continue;
    uint64_t*& done = (stats == counters.all ? counters.all_done : counters.own_done)[status_index];
    if (!done) done = &stats->done[ToString(result.status)];
    ++*done;
    if (result.status != TaskStatus::kOk) ++stats->failed[{ToString(result.status), BoundedCode(result.error_code)}];
    if (!result.started_at) continue;
    stats->queue_seconds.Observe(result.queued_ms / 1000.0, bounds_);
    stats->run_seconds.Observe(result.run_ms / 1000.0, bounds_);
    if (stats->queued_ms.size() < kTimingSamples) {
      stats->queued_ms.push_back(result.queued_ms);
      stats->run_ms.push_back(result.run_ms);
    } else {
      stats->queued_ms[stats->next_sample] = result.queued_ms;
      stats->run_ms[stats->next_sample] = result.run_ms;
      stats->next_sample = (stats->next_sample + 1) % kTimingSamples;
    }
  }
  const auto found = ran ? running_.end() : running_.find(key);
  if (!ran && found == running_.end()) return;
  TaskRecord& record = ran ? *ran : found->second;
  record.status = ToString(result.status);
  record.finished_at = result.finished_at.value_or(UnixNow());
  if (result.started_at) record.started_at = *result.started_at;
  if (recent_capacity_ > 0) {
    // A ring: the oldest's slot is reused, and its strings' buffers with it.
    if (recent_.size() < recent_capacity_) {
      recent_.push_back(std::move(record));
    } else {
      recent_[recent_oldest_] = std::move(record);
      recent_oldest_ = (recent_oldest_ + 1) % recent_capacity_;
    }
  }
  if (!ran) spare_running_ = running_.extract(found);
}

Telemetry::Snapshot Telemetry::Take() const {
  std::lock_guard lock(mutex_);
  Snapshot snapshot = state_;
  if (known_plugins_) snapshot.known_plugins = *known_plugins_;
  for (const auto& [key, record] : running_) ++snapshot.running_by_plugin[record.plugin];
  return snapshot;
}

std::vector<TaskRecord> Telemetry::Recent(size_t limit) const {
  std::lock_guard lock(mutex_);
  std::vector<TaskRecord> out;
  const size_t skip = recent_.size() > limit ? recent_.size() - limit : 0;
  for (size_t i = skip; i < recent_.size(); ++i) out.push_back(recent_[(recent_oldest_ + i) % recent_.size()]);
  std::vector<TaskRecord> running;
  for (const auto& [key, record] : running_) running.push_back(record);
  std::sort(running.begin(), running.end(),
            [](const TaskRecord& a, const TaskRecord& b) { return a.started_at < b.started_at; });
  out.insert(out.end(), running.begin(), running.end());
  return out;
}

std::string Telemetry::PrometheusText() const {
  const Snapshot s = Take();
  std::ostringstream out;
  auto family = [&out](const char* name, const char* type, const char* help) {
    out << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
  };

  family("umi_info", "gauge", "Constant 1, labelled with the host name and version.");
  out << "umi_info{host=" << Label(s.host) << ",version=" << Label(UMI_VERSION) << "} 1\n";
  // A family with one unlabelled sample.
  auto single = [&](const char* name, const char* type, const char* help, uint64_t value) {
    family(name, type, help);
    out << name << ' ' << value << '\n';
  };
  single("umi_ready", "gauge", "1 when plugins are loaded, sockets are bound and the host is not draining.",
         s.ready && !s.draining ? 1 : 0);
  single("umi_draining", "gauge", "1 while the host drains before exit.", s.draining ? 1 : 0);

  // Every loaded plugin x status from 0, so increase() sees the first event.
  family("umi_tasks_total", "counter", "Tasks that reached a terminal result, by plugin and status.");
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
      out << "umi_tasks_total{plugin=" << Label(plugin) << ",status=" << Label(status) << "} " << count << '\n';
    }
  }
  family("umi_task_failures_total", "counter",
         "Tasks that did not end ok, by plugin, status and error code (codes outside the known set count as "
         "\"other\").");
  for (const auto& [plugin, stats] : s.plugins) {
    if (plugin.empty()) continue;
    for (const auto& [key, count] : stats.failed) {
      out << "umi_task_failures_total{plugin=" << Label(plugin) << ",status=" << Label(key.first)
          << ",code=" << Label(key.second) << "} " << count << '\n';
    }
  }
  family("umi_tasks_queued", "gauge", "Tasks waiting for resources, by plugin.");
  for (const std::string& plugin : s.known_plugins) {
    const auto queued = s.queued_by_plugin.find(plugin);
    out << "umi_tasks_queued{plugin=" << Label(plugin) << "} "
        << (queued == s.queued_by_plugin.end() ? 0 : queued->second) << '\n';
  }
  family("umi_tasks_running_by_plugin", "gauge", "Tasks running now, by plugin.");
  for (const std::string& plugin : s.known_plugins) {
    const auto running = s.running_by_plugin.find(plugin);
    out << "umi_tasks_running_by_plugin{plugin=" << Label(plugin) << "} "
        << (running == s.running_by_plugin.end() ? 0 : running->second) << '\n';
  }
  family("umi_oldest_queued_age_seconds", "gauge",
         "How long the task waiting longest has waited (0 when none waits): grows through a stall, which "
         "queue-time histograms see only once it ends.");
  out << "umi_oldest_queued_age_seconds "
      << Number(s.oldest_enqueued_at
                    ? std::chrono::duration<double>(std::chrono::steady_clock::now() - *s.oldest_enqueued_at).count()
                    : 0.0)
      << '\n';
  single("umi_reading_tasks", "gauge",
         "1 while the host reads new tasks; 0 under backpressure (queue or unsent results at their limit) or "
         "while draining.",
         s.reading_tasks ? 1 : 0);
  family("umi_worker_processes", "gauge", "Worker processes alive (isolation: process, Python plugins), by plugin.");
  for (const auto& [plugin, workers] : s.worker_processes) {
    out << "umi_worker_processes{plugin=" << Label(plugin) << "} " << workers.live << '\n';
  }
  family("umi_worker_process_exits_total", "counter",
         "Worker processes that ended unasked (died, killed after a cancel, broke the protocol), by plugin; "
         "each is replaced: a rising rate is a crash loop.");
  for (const auto& [plugin, workers] : s.worker_processes) {
    out << "umi_worker_process_exits_total{plugin=" << Label(plugin) << "} " << workers.ended << '\n';
  }
  family("umi_worker_late_frames_total", "counter",
         "Results and progress a worker sent for a task other than the one it runs (a thread or forked process the "
         "plugin left behind), dropped; by plugin.");
  for (const auto& [plugin, workers] : s.worker_processes) {
    out << "umi_worker_late_frames_total{plugin=" << Label(plugin) << "} " << workers.late_frames << '\n';
  }
  family("umi_sandbox_kills_total", "counter",
         "Worker processes their sandbox stopped (a system call it denies, a file past max_file_mb); by plugin.");
  for (const auto& [plugin, workers] : s.worker_processes) {
    out << "umi_sandbox_kills_total{plugin=" << Label(plugin) << "} " << workers.sandbox_kills << '\n';
  }
  family("umi_sandbox_mechanism", "gauge",
         "1 where this kernel offers a mechanism of the workers' sandbox, 0 where it does not.");
  for (const auto& [mechanism, offered] : s.sandbox_mechanisms) {
    out << "umi_sandbox_mechanism{mechanism=" << Label(mechanism) << "} " << (offered ? 1 : 0) << '\n';
  }
  single("umi_queue_depth", "gauge", "Tasks accepted and waiting for resources.", s.queued);
  single("umi_tasks_running", "gauge", "Tasks running now.", s.running);
  single("umi_unsent_results", "gauge", "Results waiting for a collector to connect.", s.unsent_results);
  single("umi_malformed_messages_total", "counter", "Messages that could not be decoded as protocol v1.", s.malformed);
  single("umi_deduplicated_tasks_total", "counter", "Retries answered with a stored result instead of running.",
         s.deduplicated);
  single("umi_plugin_load_failures_total", "counter", "Plugin libraries refused at start or reload.",
         s.plugin_load_failures);
  single("umi_plugins_loaded", "gauge", "Plugins loaded now.", s.plugins_loaded);
  single("umi_plugins_refused", "gauge", "Plugin libraries refused at the latest load (start or reload).",
         s.plugins_refused);
  single("umi_dropped_replies_total", "counter",
         "Results and rpc replies that could not be delivered (client gone, or unsent when a drain gave up).",
         s.dropped_replies);
  single("umi_config_fallback", "gauge",
         "1 when the named config could not be used and the host runs on detected hardware (--allow-fallback).",
         s.config_fallback.empty() ? 0 : 1);
  if (s.farm) {
    family("umi_stream_backlog", "gauge",
           "Redis Streams: tasks in a plugin's stream no host has taken (waiting) or taken and not answered "
           "(pending), for every host of the farm (KEDA, alerts).");
    for (const auto& [plugin, counts] : s.farm->backlog) {
      out << "umi_stream_backlog{plugin=" << Label(plugin) << ",state=\"waiting\"} " << counts.first << '\n';
      out << "umi_stream_backlog{plugin=" << Label(plugin) << ",state=\"pending\"} " << counts.second << '\n';
    }
    family("umi_stream_unserved_tasks", "gauge",
           "Redis Streams: tasks waiting for a plugin that no live host of the farm offers (they wait until one "
           "does), per plugin; read every 5 s.");
    for (const auto& [plugin, waiting] : s.farm->unserved) {
      out << "umi_stream_unserved_tasks{plugin=" << Label(plugin) << "} " << waiting << '\n';
    }
    single("umi_redis_held_results", "gauge",
           "Results waiting for Redis: refused (OOM, READONLY, ACL, ...) or Redis unreachable; not ready while above 0.",
           s.farm->held_results);
    single("umi_redis_stale_results_total", "counter",
           "Results dropped because another host held the task's entry by then (this host's lease had lapsed).",
           s.farm->stale_results);
    single("umi_redis_redirected_results_total", "counter",
           "Results whose reply_to could not take a stream entry, sent to umi:results with the reason.",
           s.farm->redirected_results);
    single("umi_redeliveries_total", "counter", "Stream entries this host took from another's lapsed lease.",
           s.farm->redeliveries);
    single("umi_redis_leases_lost_total", "counter",
           "Stream entries another host took from this one while it could not renew their leases.",
           s.farm->leases_lost);
  }
  family("umi_loop_last_tick_seconds", "gauge", "Unix time of the event loop's last turn (/healthz fails when stale).");
  // Unix time of the tick, from how long ago it was on the steady clock.
  const double tick_age = std::chrono::duration<double>(std::chrono::steady_clock::now() - s.last_tick).count();
  out << "umi_loop_last_tick_seconds "
      << std::to_string(s.last_tick == std::chrono::steady_clock::time_point() ? 0.0 : UnixNow() - tick_age) << '\n';
  family("umi_config_reloads_total", "counter", "Config reloads, by result.");
  out << "umi_config_reloads_total{result=\"ok\"} " << s.reloads << '\n';
  out << "umi_config_reloads_total{result=\"refused\"} " << s.failed_reloads << '\n';

  const auto& bounds = bounds_;
  auto histogram = [&](const char* name, const char* help, auto member) {
    family(name, "histogram", help);
    for (const auto& [plugin, stats] : s.plugins) {
      if (plugin.empty()) continue;
      const Histogram& h = stats.*member;
      const std::string labels = "plugin=" + Label(plugin);
      uint64_t cumulative = 0;
      for (size_t i = 0; i <= bounds.size(); ++i) {
        cumulative += i < h.counts.size() ? h.counts[i] : 0;  // never observed: no counts yet
        out << name << "_bucket{" << labels << ",le=\""
            << (i < bounds.size() ? Number(bounds[i]) : "+Inf") << "\"} " << cumulative << '\n';
      }
      out << name << "_sum{" << labels << "} " << Number(h.sum) << '\n';
      out << name << "_count{" << labels << "} " << h.count << '\n';
    }
  };
  histogram("umi_task_queue_seconds", "Time from acceptance to start, per plugin.", &PluginStats::queue_seconds);
  histogram("umi_task_run_seconds", "Time the plugin ran, per plugin.", &PluginStats::run_seconds);

  // One family per resource and unit: used, then capacity.
  const PoolUsage& p = s.pool;
  auto resource = [&](const std::string& used_name, const std::string& capacity_name, const std::string& what,
                      double used, double capacity, const char* capacity_note) {
    family(used_name.c_str(), "gauge", (what + " in use by running tasks.").c_str());
    out << used_name << ' ' << Number(used) << '\n';
    family(capacity_name.c_str(), "gauge", (what + " the pool grants in all" + capacity_note + ".").c_str());
    out << capacity_name << ' ' << Number(capacity) << '\n';
  };
  resource("umi_pool_cpu_cores_used", "umi_pool_cpu_cores_capacity", "Physical CPU cores (fractional)",
           p.cpu_cores_used.ToDouble(), p.cpu_cores_total.ToDouble(), "");
  resource("umi_pool_cpu_threads_used", "umi_pool_cpu_threads_capacity", "CPU threads", double(p.cpu_threads_used),
           double(p.cpu_threads_total), "");
  resource("umi_pool_memory_used_bytes", "umi_pool_memory_capacity_bytes", "Memory in bytes",
           double(p.memory_mb_used) * 1048576.0, double(p.memory_mb_total) * 1048576.0, " (after overcommit)");
  resource("umi_pool_cpu_task_slots_used", "umi_pool_cpu_task_slots_capacity", "CPU task slots",
           double(p.cpu_tasks_running), double(p.max_concurrent_tasks), " (hardware.cpu.max_concurrent_tasks)");
  family("umi_gpu_used_ratio", "gauge", "Share of each GPU granted to running tasks (1 = the whole device).");
  // Labelled by the configured device id.
  auto gpu_id = [&p](size_t index) { return index < p.gpu_ids.size() ? p.gpu_ids[index] : static_cast<int>(index); };
  for (size_t gpu = 0; gpu < p.gpu_used.size(); ++gpu) {
    out << "umi_gpu_used_ratio{gpu=\"" << gpu_id(gpu) << "\"} " << Number(p.gpu_used[gpu].ToDouble()) << '\n';
  }
  family("umi_gpu_capacity_ratio", "gauge", "Share of each GPU the pool grants (1 = the whole device).");
  for (size_t gpu = 0; gpu < p.gpu_used.size(); ++gpu) {
    out << "umi_gpu_capacity_ratio{gpu=\"" << gpu_id(gpu) << "\"} 1\n";
  }

  const ProcessStats process = ReadProcessStats();
  auto number = [&](const char* name, const char* type, const char* help, double value) {
    family(name, type, help);
    out << name << ' ' << Number(value) << '\n';
  };
  number("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
         process.cpu_seconds);
  number("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.",
         process.start_time);
  number("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", process.resident_bytes);
  number("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", process.virtual_bytes);
  number("process_open_fds", "gauge", "Number of open file descriptors.", process.open_fds);
  number("process_max_fds", "gauge", "Maximum number of open file descriptors.", process.max_fds);
  return out.str();
}

std::string Telemetry::StatsJson() const { return Stats().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

nlohmann::json Telemetry::Stats() const {
  const Snapshot s = Take();
  nlohmann::json plugins = nlohmann::json::object();
  auto failures = [](const PluginStats& stats) {
    std::map<std::string, uint64_t> by_code;
    for (const auto& [key, count] : stats.failed) by_code[key.second] += count;
    return by_code;
  };
  auto count_of = [](const std::map<std::string, size_t>& counts, const std::string& name) {
    const auto found = counts.find(name);
    return found == counts.end() ? size_t{0} : found->second;
  };
  for (const auto& [name, stats] : s.plugins) {
    if (name.empty()) continue;
    plugins[name] = {{"done", stats.done},
                     {"failures", failures(stats)},
                     {"queued", count_of(s.queued_by_plugin, name)},
                     {"running", count_of(s.running_by_plugin, name)},
                     {"queued_ms", PercentilesJson(stats.queued_ms)},
                     {"run_ms", PercentilesJson(stats.run_ms)}};
  }
  for (const std::string& name : s.known_plugins) {  // loaded, nothing finished yet
    if (plugins.contains(name)) continue;
    plugins[name] = {{"done", nlohmann::json::object()},
                     {"failures", nlohmann::json::object()},
                     {"queued", count_of(s.queued_by_plugin, name)},
                     {"running", count_of(s.running_by_plugin, name)},
                     {"queued_ms", PercentilesJson({})},
                     {"run_ms", PercentilesJson({})}};
  }
  const auto all = s.plugins.find("");
  const PluginStats empty;
  const PluginStats& totals = all == s.plugins.end() ? empty : all->second;
  std::vector<double> gpus;
  for (const Quantity& used : s.pool.gpu_used) gpus.push_back(used.ToDouble());
  return {
      {"host", s.host},
      {"status", s.draining ? "draining" : s.ready ? "serving" : "starting"},
      {"queued", s.queued},
      {"running", s.running},
      {"unsent_results", s.unsent_results},
      {"malformed", s.malformed},
      {"deduplicated", s.deduplicated},
      {"dropped_replies", s.dropped_replies},
      {"config_fallback", s.config_fallback},
      {"plugin_load_failures", s.plugin_load_failures},
      {"reloads", {{"ok", s.reloads}, {"refused", s.failed_reloads}}},
      {"done", totals.done},
      {"failures", failures(totals)},
      {"oldest_queued_s",
       s.oldest_enqueued_at
           ? std::chrono::duration<double>(std::chrono::steady_clock::now() - *s.oldest_enqueued_at).count()
           : 0.0},
      {"reading_tasks", s.reading_tasks},
      {"queued_ms", PercentilesJson(totals.queued_ms)},
      {"run_ms", PercentilesJson(totals.run_ms)},
      {"plugins", plugins},
      {"pool",
       {{"cpu_cores", {{"used", s.pool.cpu_cores_used.ToDouble()}, {"total", s.pool.cpu_cores_total.ToDouble()}}},
        {"cpu_threads", {{"used", s.pool.cpu_threads_used}, {"total", s.pool.cpu_threads_total}}},
        {"memory_mb", {{"used", s.pool.memory_mb_used}, {"total", s.pool.memory_mb_total}}},
        {"cpu_tasks", {{"used", s.pool.cpu_tasks_running}, {"total", s.pool.max_concurrent_tasks}}},
        {"gpus", gpus},
        {"gpu_ids", s.pool.gpu_ids}}},
  };
}

std::string Telemetry::RecentJson(size_t limit) const {
  nlohmann::json tasks = nlohmann::json::array();
  for (const TaskRecord& record : Recent(limit)) tasks.push_back(RecordJson(record));
  const Snapshot s = Take();
  return nlohmann::json{{"host", s.host},
                        {"now", UnixNow()},
                        {"cpu_threads", s.pool.cpu_threads_total},
                        {"gpus", s.pool.gpu_used.size()},
                        {"gpu_ids", s.pool.gpu_ids},
                        {"tasks", std::move(tasks)}}
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace umi
