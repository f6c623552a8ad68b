// ReloadPlan: what a config reload may change, decided from the config in
// force and the one just read, key by key.
//
// Most keys apply at once (the pool, task groups, plugin resources and caps,
// scheduler, shutdown, dedup, allow_task_overrides, max_pending_results,
// a plugin's isolation). The keys in RestartKeys() are fixed when sockets,
// the HTTP listener or a plugin instance are set up: a change to one is
// listed in restart_needed and never reported as applied. PlanReload is
// pure; the host checks what needs the filesystem (security.curve key files)
// and applies the rest.
//
// Thread safety: stateless functions.
#pragma once

#include <string>
#include <vector>

#include "hardware_config.h"

namespace umi {

struct ReloadPlan {
  // The changed keys whose new values are not in force until a restart,
  // e.g. "transport.tasks_hwm", "security.curve", "plugins.probe.settings".
  std::vector<std::string> restart_needed;
};

// Every key a reload cannot apply ("<name>" stands for a plugin's name).
const std::vector<std::string>& RestartKeys();

// `loaded_plugins`: the plugins whose settings were given to an instance.
ReloadPlan PlanReload(const HardwareConfig& current, const HardwareConfig& next,
                      const std::vector<std::string>& loaded_plugins);

}  // namespace umi
