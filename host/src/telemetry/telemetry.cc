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

#include "telemetry/prometheus_text.h"
#include "telemetry/stats_json.h"

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

double UnixNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
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
  const int64_t unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count();
  std::lock_guard lock(mutex_);
  state_.queued_by_plugin = std::move(queued_by_plugin);
  state_.oldest_enqueued_at = oldest_enqueued_at;
  state_.reading_tasks = reading_tasks;
  if (backlog_.empty() || unix_ms - backlog_.back().unix_ms >= 1000) {
    backlog_.push_back({unix_ms, state_.queued, state_.running});
    const int64_t span_ms = std::chrono::duration_cast<std::chrono::milliseconds>(kBacklogSpan).count();
    while (backlog_.front().unix_ms < unix_ms - span_ms) backlog_.pop_front();
  }
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
  EndRecord(key, ToString(result.status), result, ran);
}

void Telemetry::RunRetried(uint64_t key, const TaskResult& failed_run, TaskRecord* ran) {
  std::lock_guard lock(mutex_);
  ++state_.retried;
  EndRecord(key, "retrying", failed_run, ran);
}

void Telemetry::EndRecord(uint64_t key, const char* status, const TaskResult& result, TaskRecord* ran) {
  const auto found = ran ? running_.end() : running_.find(key);
  if (!ran && found == running_.end()) return;
  TaskRecord& record = ran ? *ran : found->second;
  record.status = status;
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

std::string Telemetry::PrometheusText() const { return RenderPrometheus(Take(), bounds_); }

nlohmann::json Telemetry::Stats() const { return RenderStats(Take()); }

std::string Telemetry::StatsJson() const { return Stats().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

std::string Telemetry::RecentJson(size_t limit) const { return RenderRecent(Take(), Recent(limit)); }

std::vector<Telemetry::BacklogSample> Telemetry::Backlog() const {
  std::lock_guard lock(mutex_);
  return {backlog_.begin(), backlog_.end()};
}

std::string Telemetry::BacklogJson() const {
  nlohmann::json samples = nlohmann::json::array();
  for (const BacklogSample& sample : Backlog()) {
    samples.push_back({{"t", sample.unix_ms}, {"queued", sample.queued}, {"running", sample.running}});
  }
  return samples.dump();
}


}  // namespace umi
