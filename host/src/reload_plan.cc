#include "reload_plan.h"

namespace umi {

const std::vector<std::string>& RestartKeys() {
  static const std::vector<std::string> keys = {
      "transport.tasks",       "transport.results",           "transport.rpc", "transport.events",
      "transport.tasks_hwm",   "transport.max_message_bytes", "security.curve", "http",
      "plugins.<name>.settings",
  };
  return keys;
}

ReloadPlan PlanReload(const HardwareConfig& current, const HardwareConfig& next,
                      const std::vector<std::string>& loaded_plugins) {
  ReloadPlan plan;
  auto changed = [&plan](bool differs, std::string key) {
    if (differs) plan.restart_needed.push_back(std::move(key));
  };
  for (const char* socket : {"tasks", "results", "rpc", "events"}) {
    const auto before = current.endpoints.find(socket), after = next.endpoints.find(socket);
    const std::string old_endpoint = before == current.endpoints.end() ? "" : before->second;
    const std::string new_endpoint = after == next.endpoints.end() ? "" : after->second;
    changed(old_endpoint != new_endpoint, std::string("transport.") + socket);
  }
  changed(current.tasks_hwm != next.tasks_hwm, "transport.tasks_hwm");
  changed(current.max_message_bytes != next.max_message_bytes, "transport.max_message_bytes");
  changed(current.curve_secret_key_file != next.curve_secret_key_file ||
              current.curve_authorized_keys_file != next.curve_authorized_keys_file,
          "security.curve");
  changed(current.http_listen != next.http_listen || current.http_enabled != next.http_enabled, "http");
  for (const std::string& name : loaded_plugins) {
    const auto before = current.plugins.find(name), after = next.plugins.find(name);
    const std::string old_settings = before == current.plugins.end() ? "" : before->second.settings_msgpack;
    const std::string new_settings = after == next.plugins.end() ? "" : after->second.settings_msgpack;
    changed(old_settings != new_settings, "plugins." + name + ".settings");
  }
  return plan;
}

}  // namespace umi
