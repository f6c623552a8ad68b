// ReloadPlan: what a config reload changes, decided from the config in
// force and the one just read, section by section (each section compares
// with its defaulted operator==, so a key added to a section is never
// silently ignored: a change nobody applies is listed as restart_needed).
//
// Most keys apply at once (LiveKeys: the pool, allocation, task groups,
// plugin resources, caps and isolation, allow_task_overrides, scheduler,
// shutdown, dedup, transport.max_pending_results). The keys in RestartKeys()
// are fixed when sockets, the HTTP listener or a plugin instance are set up:
// a change to one is listed in restart_needed and never reported as applied.
//
// Applying is two-phase, like a LevelDB VersionEdit: PlanReload is pure; the
// host then builds the new version (PluginRegistry::PlanVersion: the config,
// every plugin's requirement and the pool's capacity under it) and checks
// what it needs (security.curve key files, the new pool against running
// tasks), changing nothing; only when all pass does it install the version
// in one step (PluginRegistry::Install) and apply what follows from it.
//
// Thread safety: stateless functions.
#pragma once

#include <string>
#include <vector>

#include "config/hardware_config.h"

namespace umi {

struct ReloadPlan {
  // Changed keys that are in force once the reload is applied,
  // e.g. "hardware", "scheduler", "plugins.probe".
  std::vector<std::string> applied;
  // Changed keys whose new values wait for a restart,
  // e.g. "transport.tasks_hwm", "security.curve", "plugins.probe.settings".
  std::vector<std::string> restart_needed;
  // The new config names CURVE key files: the host reads and validates them
  // before it applies anything (a missing or bad file refuses the reload).
  bool check_curve_keys = false;
};

// Every key a reload applies at once, and every key it cannot apply
// ("<name>" stands for a plugin's name). docs/operations.md lists both.
const std::vector<std::string>& LiveKeys();
const std::vector<std::string>& RestartKeys();

// `loaded_plugins`: the plugins whose settings were given to an instance.
ReloadPlan PlanReload(const HardwareConfig& current, const HardwareConfig& next,
                      const std::vector<std::string>& loaded_plugins);

}  // namespace umi
