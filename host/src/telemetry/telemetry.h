// Telemetry: what the host has done and is doing, for the rpc `stats` op,
// the HTTP API (/api/stats, /api/tasks/recent) and Prometheus (/metrics).
//
// The event loop writes (counts, task starts and ends, queue and pool
// levels); HTTP threads read through Snapshot() or the renderers. Per
// plugin it keeps counts by status, queue-time and run-time histograms
// (fixed buckets, for Prometheus) and the last kTimingSamples times (for
// exact percentiles). The last `recent_capacity` finished tasks and all
// running ones are kept with their grants, for the dashboard's timeline.
//
// Thread safety: every method is safe from any thread (one mutex; the
// loop holds it for a few hundred nanoseconds per task).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>

#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/farm_report.h"
#include "scheduling/resource_pool.h"
#include "scheduling/task.h"

namespace umi {

// One task on the timeline; finished_at is empty while it runs.
struct TaskRecord {
  std::string id;
  std::string plugin;
  std::string status = "running";
  double started_at = 0;  // Unix seconds
  std::optional<double> finished_at;
  double queued_ms = 0;
  double cpu_cores = 0;
  int cpu_threads = 0;
  int64_t memory_mb = 0;
  std::vector<int> cpu_ids;  // with pinning
  std::vector<int> gpu_ids;
  double gpu_share = 0;
};

class Telemetry {
 public:
  static constexpr size_t kTimingSamples = 1024;
  // The built-in histogram bucket upper bounds, seconds (Prometheus `le`);
  // http.histogram_buckets_s replaces them.
  static const std::vector<double>& BucketBounds();

  struct WorkerProcesses {  // isolation: process and Python plugins
    int64_t live = 0;
    uint64_t ended = 0;  // died, killed or dropped: a rising rate is a crash loop
    uint64_t late_frames = 0;  // results and progress of an earlier task, dropped
    uint64_t sandbox_kills = 0;  // stopped by their sandbox (a denied call, a file too big)
  };
  struct Histogram {
    std::vector<uint64_t> counts;  // one per bound, then +Inf; sized at the first Observe
    double sum = 0;
    uint64_t count = 0;
    void Observe(double seconds, const std::vector<double>& bounds);
  };
  struct PluginStats {
    std::map<std::string, uint64_t> done;  // status -> count
    std::map<std::pair<std::string, std::string>, uint64_t> failed;  // (status, code) -> count; code bounded
    Histogram queue_seconds, run_seconds;
    std::vector<double> queued_ms, run_ms;  // rings of kTimingSamples
    size_t next_sample = 0;
  };
  struct Snapshot {
    std::string host;
    bool ready = false;
    bool draining = false;
    size_t queued = 0, running = 0, unsent_results = 0;
    uint64_t malformed = 0, deduplicated = 0, retried = 0, plugin_load_failures = 0, reloads = 0, failed_reloads = 0;
    int64_t plugins_loaded = 0, plugins_refused = 0;
    uint64_t dropped_replies = 0;
    std::string config_fallback;  // why the named config is not in force; empty: it is
    // The worker sandbox's mechanisms and whether this kernel offers each
    // (runtime/sandbox.h), and one line saying so.
    std::vector<std::pair<std::string, bool>> sandbox_mechanisms;
    std::string sandbox_summary;
    std::chrono::steady_clock::time_point last_tick;  // the loop's last SetLoad
    PoolUsage pool;
    std::map<std::string, PluginStats> plugins;  // "" = all plugins
    // Redis Streams: the transport's counters and, per plugin stream, entries
    // no host took yet and entries taken but not answered (group umi), as of
    // the last heartbeat; nullopt without Redis.
    std::optional<FarmReport> farm;
    // Sampled by the loop a few times a second (SetQueue, SetWorkerProcesses).
    std::map<std::string, size_t> queued_by_plugin;
    std::optional<std::chrono::steady_clock::time_point> oldest_enqueued_at;
    bool reading_tasks = true;  // false: backpressure (queue or unsent results at their limit) or draining
    std::map<std::string, WorkerProcesses> worker_processes;
    // Filled by Take: the loaded plugins, and running tasks per plugin.
    std::set<std::string> known_plugins;
    std::map<std::string, size_t> running_by_plugin;
  };

  // `bucket_bounds`: ascending, seconds; empty: BucketBounds().
  explicit Telemetry(std::string host, size_t recent_capacity = 1000, std::vector<double> bucket_bounds = {});

  // The label under which tasks for a plugin that is not loaded are
  // counted: names from the wire never become labels of their own.
  static constexpr const char* kUnknownPlugin = "_unknown";
  // The loaded plugins; until called, every name counts as loaded.
  void SetKnownPlugins(std::set<std::string> names);

  void SetReady(bool ready);
  void SetDraining(bool draining);
  // Refusals ever made (a counter), and the plugins loaded and libraries
  // refused now (gauges: a reload that refuses the same library again
  // leaves them as they were).
  void SetPlugins(uint64_t refusals_total, int64_t loaded, int64_t refused);
  void CountMalformed();
  void CountDeduplicated();
  void CountReload(bool ok);
  // Replies that could not be delivered: an rpc client gone before its
  // reply, or results left unsent when a drain gave up.
  void CountDroppedReply(uint64_t count = 1);
  // Why the host runs on detected hardware instead of the config it was given.
  void SetConfigFallback(std::string why);
  // What the kernel offers the workers' sandbox.
  void SetSandbox(std::vector<std::pair<std::string, bool>> mechanisms, std::string summary);
  // Redis Streams (see Snapshot::farm).
  void SetFarm(const FarmReport& report);
  // The queue's shape and whether the host reads tasks, sampled by the loop.
  void SetQueue(std::map<std::string, size_t> queued_by_plugin,
                std::optional<std::chrono::steady_clock::time_point> oldest_enqueued_at, bool reading_tasks);
  void SetWorkerProcesses(std::map<std::string, WorkerProcesses> workers);
  // Called on every turn of the event loop, as its heartbeat, and without
  // one (`heartbeat` false: no clock read) each time a task gives its grant back.
  void SetLoad(size_t queued, size_t running, size_t unsent_results, const PoolUsage& pool, bool heartbeat = true);

  // A loop that has not turned for this long is stuck (/healthz says 503).
  static constexpr auto kStuckAfter = std::chrono::seconds(10);
  // Empty when healthy at `now`, else why not.
  std::string Unhealthy(std::chrono::steady_clock::time_point now) const;

  void TaskStarted(uint64_t key, TaskRecord record);
  // Every terminal result: `key` is the one given to TaskStarted, or 0 for
  // a task that never started (rejected, cancelled while queued). `ran`: the
  // timeline record of a task that started and ended within one call of the
  // loop (run_inline), which skipped TaskStarted.
  void TaskFinished(uint64_t key, const TaskResult& result, TaskRecord* ran = nullptr);
  // A run that failed and will run again (its retry policy): counted as a
  // retry, not a result; its timeline record ends as "retrying".
  void RunRetried(uint64_t key, const TaskResult& failed_run, TaskRecord* ran = nullptr);

  Snapshot Take() const;
  // Finished (newest last, at most `limit`) then running tasks.
  std::vector<TaskRecord> Recent(size_t limit) const;

  std::string PrometheusText() const;
  // Counts, percentiles and pool use: /api/stats, and the rpc `stats` op
  // (as msgpack).
  nlohmann::json Stats() const;
  std::string StatsJson() const;
  std::string RecentJson(size_t limit) const;

  // Queued and running tasks over the last kBacklogSpan, one sample a
  // second (taken as the loop samples the queue): what a dashboard opened
  // now draws before its own polls add to it. /api/backlog.
  struct BacklogSample {
    int64_t unix_ms = 0;
    size_t queued = 0, running = 0;
  };
  static constexpr auto kBacklogSpan = std::chrono::minutes(5);
  std::vector<BacklogSample> Backlog() const;
  std::string BacklogJson() const;

 private:
  // Where a plugin's finished tasks are counted: pointers into
  // state_.plugins, whose entries are never erased (std::map nodes stay put),
  // so a task costs no lookup by name beyond this cache's.
  struct Counters {
    PluginStats* all = nullptr;  // "" (every plugin)
    PluginStats* own = nullptr;  // the plugin, or kUnknownPlugin; null for ""
    std::array<uint64_t*, kTaskStatusCount> all_done{}, own_done{};  // by TaskStatus, set when first used
  };
  static constexpr size_t kMaxCounterCacheEntries = 1024;
  Counters& CountersFor(const std::string& plugin);
  // Ends the timeline record of `key` (or `ran`) with `status`, into the
  // recent ring. Called with mutex_ held.
  void EndRecord(uint64_t key, const char* status, const TaskResult& result, TaskRecord* ran);

  mutable std::mutex mutex_;
  Snapshot state_;
  std::optional<std::set<std::string>> known_plugins_;
  std::unordered_map<std::string, Counters> counters_;
  size_t recent_capacity_;
  const std::vector<double> bounds_;
  std::vector<TaskRecord> recent_;  // a ring of recent_capacity_ once full
  size_t recent_oldest_ = 0;
  std::unordered_map<uint64_t, TaskRecord> running_;
  std::unordered_map<uint64_t, TaskRecord>::node_type spare_running_;  // reused by the next TaskStarted
  std::deque<BacklogSample> backlog_;  // oldest first, kBacklogSpan of them at most
};

// Nearest-rank percentile of `samples` (copied); 0 when empty.
double Percentile(std::vector<double> samples, double q);

}  // namespace umi
