#include "config/reload_plan.h"

#include <algorithm>
#include <set>

namespace umi {

const std::vector<std::string>& LiveKeys() {
  static const std::vector<std::string> keys = {
      "hardware", "allocation", "task_groups", "plugins.<name>", "allow_task_overrides", "oversubscribe",
      "scheduler", "shutdown", "dedup", "transport.max_pending_results", "transport.keep_results",
  };
  return keys;
}

const std::vector<std::string>& RestartKeys() {
  static const std::vector<std::string> keys = {
      "transport.tasks",       "transport.results",           "transport.rpc", "transport.events",
      "transport.tasks_hwm",   "transport.max_message_bytes", "transport.redis", "transport.redis_password_file",
      "transport.max_deliveries", "transport.prefetch",    "security.curve",        "http",
      "plugins.<name>.settings", "plugin_dirs",
  };
  return keys;
}

namespace {

std::string EndpointOf(const TransportSection& transport, const std::string& socket) {
  const auto found = transport.endpoints.find(socket);
  return found == transport.endpoints.end() ? "" : found->second;
}

}  // namespace

ReloadPlan PlanReload(const HardwareConfig& current, const HardwareConfig& next,
                      const std::vector<std::string>& loaded_plugins) {
  ReloadPlan plan;
  auto live = [&plan](bool differs, std::string key) {
    if (differs) plan.applied.push_back(std::move(key));
  };
  auto restart = [&plan](bool differs, std::string key) {
    if (differs) plan.restart_needed.push_back(std::move(key));
  };

  live(current.hardware != next.hardware, "hardware");
  live(current.allocation != next.allocation, "allocation");
  live(current.task_groups != next.task_groups, "task_groups");
  live(current.allow_task_overrides != next.allow_task_overrides, "allow_task_overrides");
  live(current.oversubscribe != next.oversubscribe, "oversubscribe");
  live(current.scheduler != next.scheduler, "scheduler");
  live(current.shutdown != next.shutdown, "shutdown");
  live(current.dedup != next.dedup, "dedup");

  // Plugins: settings reach an instance once, when it starts; the rest is
  // read for every task.
  std::set<std::string> names;
  for (const auto& [name, plugin] : current.plugins) names.insert(name);
  for (const auto& [name, plugin] : next.plugins) names.insert(name);
  for (const std::string& name : names) {
    const auto before = current.plugins.find(name), after = next.plugins.find(name);
    PluginConfig old_plugin = before == current.plugins.end() ? PluginConfig{} : before->second;
    PluginConfig new_plugin = after == next.plugins.end() ? PluginConfig{} : after->second;
    const bool has_instance = std::find(loaded_plugins.begin(), loaded_plugins.end(), name) != loaded_plugins.end();
    if (has_instance) {
      restart(old_plugin.settings_msgpack != new_plugin.settings_msgpack, "plugins." + name + ".settings");
      new_plugin.settings_msgpack = old_plugin.settings_msgpack;
      restart(old_plugin.sandbox != new_plugin.sandbox, "plugins." + name + ".sandbox");  // its workers are running
      new_plugin.sandbox = old_plugin.sandbox;
    }
    live(old_plugin != new_plugin, "plugins." + name);
  }

  for (const char* socket : {"tasks", "results", "rpc", "events"}) {
    restart(EndpointOf(current.transport, socket) != EndpointOf(next.transport, socket),
            std::string("transport.") + socket);
  }
  restart(current.transport.tasks_hwm != next.transport.tasks_hwm, "transport.tasks_hwm");
  restart(current.transport.max_message_bytes != next.transport.max_message_bytes, "transport.max_message_bytes");
  restart(current.transport.redis != next.transport.redis, "transport.redis");
  restart(current.transport.redis_password_file != next.transport.redis_password_file,
          "transport.redis_password_file");
  restart(current.transport.max_deliveries != next.transport.max_deliveries, "transport.max_deliveries");
  restart(current.transport.prefetch != next.transport.prefetch, "transport.prefetch");
  live(current.transport.max_pending_results != next.transport.max_pending_results, "transport.max_pending_results");
  live(current.transport.keep_results != next.transport.keep_results, "transport.keep_results");
  // A transport key this function does not know yet is not in force either.
  TransportSection known = next.transport;
  known.endpoints = current.transport.endpoints;
  known.tasks_hwm = current.transport.tasks_hwm;
  known.max_message_bytes = current.transport.max_message_bytes;
  known.max_pending_results = current.transport.max_pending_results;
  known.redis = current.transport.redis;
  known.redis_password_file = current.transport.redis_password_file;
  known.max_deliveries = current.transport.max_deliveries;
  known.prefetch = current.transport.prefetch;
  known.keep_results = current.transport.keep_results;
  restart(known != current.transport, "transport");

  restart(current.plugin_dirs != next.plugin_dirs, "plugin_dirs");
  restart(current.security != next.security, "security.curve");
  restart(current.http != next.http, "http");
  plan.check_curve_keys = !next.security.curve.secret_key_file.empty();
  return plan;
}

}  // namespace umi
