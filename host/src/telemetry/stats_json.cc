#include "telemetry/stats_json.h"

#include <chrono>
#include <map>
#include <set>

namespace umi {
namespace {

double UnixNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
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

nlohmann::json RenderStats(const Telemetry::Snapshot& s) {
  nlohmann::json plugins = nlohmann::json::object();
  auto failures = [](const Telemetry::PluginStats& stats) {
    std::map<std::string, uint64_t> by_code;
    for (const auto& [key, count] : stats.failed) by_code[key.second] += count;
    return by_code;
  };
  auto count_of = [](const std::map<std::string, size_t>& counts, const std::string& name) {
    const auto found = counts.find(name);
    return found == counts.end() ? size_t{0} : found->second;
  };
  // Every plugin that ran, and every loaded one that has not yet: its counts from zero.
  std::set<std::string> names = s.known_plugins;
  for (const auto& [name, stats] : s.plugins) {
    if (!name.empty()) names.insert(name);
  }
  const Telemetry::PluginStats none;
  for (const std::string& name : names) {
    const auto found = s.plugins.find(name);
    const Telemetry::PluginStats& stats = found == s.plugins.end() ? none : found->second;
    plugins[name] = {{"done", stats.done},
                     {"failures", failures(stats)},
                     {"queued", count_of(s.queued_by_plugin, name)},
                     {"running", count_of(s.running_by_plugin, name)},
                     {"queued_ms", PercentilesJson(stats.queued_ms)},
                     {"run_ms", PercentilesJson(stats.run_ms)}};
  }
  const auto all = s.plugins.find("");
  const Telemetry::PluginStats& totals = all == s.plugins.end() ? none : all->second;
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
      {"retried", s.retried},
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

std::string RenderRecent(const Telemetry::Snapshot& s, const std::vector<TaskRecord>& records) {
  nlohmann::json tasks = nlohmann::json::array();
  for (const TaskRecord& record : records) tasks.push_back(RecordJson(record));
  return nlohmann::json{{"host", s.host},
                        {"now", UnixNow()},
                        {"cpu_threads", s.pool.cpu_threads_total},
                        {"gpus", s.pool.gpu_used.size()},
                        {"gpu_ids", s.pool.gpu_ids},
                        {"tasks", std::move(tasks)}}
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace umi
