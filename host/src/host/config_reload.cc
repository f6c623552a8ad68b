#include "host/config_reload.h"

#include <spdlog/spdlog.h>

#include <set>

#include "host/host_wiring.h"
#include "transport/curve_auth.h"

namespace umi {
namespace {

// Key files named by a reloaded config must be usable before anything is
// said about them; they take effect at the next start.
Status CheckCurveKeyFiles(const HardwareConfig& config) {
  if (auto keys = ReadCurveKeyPair(config.security.curve.secret_key_file); !keys.ok()) {
    return Status(ErrorCode::kInvalidConfig, keys.status().Prefixed("security.curve.secret_key_file").message());
  }
  if (auto authorized = ReadCurvePublicKeys(config.security.curve.authorized_keys_file); !authorized.ok()) {
    return Status(ErrorCode::kInvalidConfig,
                  authorized.status().Prefixed("security.curve.authorized_keys_file").message());
  }
  return {};
}

std::set<std::string> LoadedNames(const PluginRegistry& plugins) {
  std::set<std::string> names;
  for (const auto& [name, plugin] : plugins.plugins()) names.insert(name);
  return names;
}

// Phase two, after the version is installed: what follows from it.
void ApplyInstalled(const ReloadTargets& targets, ReloadOutcome& outcome) {
  PluginRegistry& plugins = targets.plugins;
  PluginRegistry::LoadReport libraries = plugins.LoadDirectories(targets.plugin_dirs);
  outcome.loaded = std::move(libraries.loaded);
  outcome.refused = std::move(libraries.refused);
  for (const std::string& name : plugins.ChangedOnDisk()) {
    spdlog::warn("plugin {}: {} changed on disk since it was loaded; restart the host to run the new version", name,
                 plugins.Find(name)->path.string());
    outcome.plan.restart_needed.push_back("plugins." + name + ".library");
  }
  for (const std::string& unmatched : plugins.ConfigWarnings()) spdlog::warn("{}", unmatched);
  const std::set<std::string> names = LoadedNames(plugins);
  targets.telemetry.SetPlugins(plugins.refusals_total(), static_cast<int64_t>(plugins.plugins().size()),
                               static_cast<int64_t>(plugins.refused().size()));
  targets.telemetry.SetKnownPlugins(names);
  for (const auto& transport : targets.transports) {
    transport->SetMaxPendingResults(plugins.config().transport.max_pending_results);
    transport->KeepResultsFor(KeptResults(plugins.config()));
    transport->SetPlugins(names);
  }
  targets.flow.Reconfigure();  // after the new libraries: their caps join the pool
}

}  // namespace

StatusOr<ReloadOutcome> ApplyReload(HardwareConfig next, const ReloadTargets& targets) {
  // Phase one: plan, build and check; nothing changes.
  ReloadOutcome outcome;
  const std::set<std::string> instances = LoadedNames(targets.plugins);
  outcome.plan =
      PlanReload(targets.plugins.config(), next, std::vector<std::string>(instances.begin(), instances.end()));
  if (outcome.plan.check_curve_keys) {
    if (Status keys = CheckCurveKeyFiles(next); !keys.ok()) return keys;
  }
  StatusOr<PluginRegistry::ConfigVersion> version = targets.plugins.PlanVersion(std::move(next));
  if (!version.ok()) return version.status();
  if (Status fits = targets.flow.PrepareReconfigure(version.value()); !fits.ok()) return fits;

  // Phase two: the new version in force in one step, then what follows from it.
  targets.plugins.Install(std::move(version).value());
  ApplyInstalled(targets, outcome);
  return outcome;
}

}  // namespace umi
