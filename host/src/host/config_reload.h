// ApplyReload: a config reload, in two phases (like LevelDB's VersionEdit).
//
// Phase one plans (config/reload_plan.h: which changed keys apply now, which
// need a restart), checks the key files a changed security.curve names,
// builds the new config version (PluginRegistry::PlanVersion: the config,
// every plugin's requirement and the pool's capacity under it) and checks
// that the running tasks fit the new pool (TaskFlow::PrepareReconfigure).
// Nothing changes in phase one: a refusal leaves the running config whole.
// Phase two installs the version in one step (PluginRegistry::Install) and
// applies what follows from it: new plugin libraries, telemetry's plugin
// counts, the transports' plugin names and result bound, the pool and caps.
//
// Thread safety: the loop's thread, like everything it reaches.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/status_or.h"
#include "config/hardware_config.h"
#include "config/reload_plan.h"
#include "host/task_flow.h"
#include "runtime/plugin_registry.h"
#include "telemetry/telemetry.h"
#include "transport/transport.h"

namespace umi {

struct ReloadOutcome {
  ReloadPlan plan;
  std::vector<std::string> loaded;   // plugins loaded by this reload
  std::vector<std::string> refused;  // libraries refused by this reload: "path: why"
};

// What a reload changes. The config in force is the registry's alone.
struct ReloadTargets {
  PluginRegistry& plugins;
  TaskFlow& flow;
  Telemetry& telemetry;
  const std::vector<std::unique_ptr<Transport>>& transports;
  const std::vector<std::filesystem::path>& plugin_dirs;  // scanned again for new libraries
};

// Puts `next` (a config just read and validated) in force, or says why not
// with nothing changed (kInvalidConfig, or kUnavailable for a pool the
// running tasks do not fit).
StatusOr<ReloadOutcome> ApplyReload(HardwareConfig next, const ReloadTargets& targets);

}  // namespace umi
