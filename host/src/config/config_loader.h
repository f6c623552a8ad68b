// Choosing the config in force, the seed's way.
//
// LoadConfig tries, in order: the YAML file (--config FILE, else
// config/hardware/${HARDWARE_CONFIG:-default}.yaml), then the environment
// (UMI_CPU_CORES, UMI_CPU_THREADS, UMI_GPU_COUNT, UMI_MEMORY_MB,
// UMI_MAX_CONCURRENT_TASKS; unset ones from the detected machine), then the
// detected machine. Each step that fails is reported as an error naming what
// failed and which source is now in force.
//
// A file the operator named (--config, or HARDWARE_CONFIG) that cannot be
// used is final unless `allow_fallback`: a typo must not leave a host
// serving on the wrong hardware while it says ready. Only the default path
// falls back on its own. With `strict`, the first failure is always final.
//
// Thread safety: stateless functions.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "config/hardware_config.h"
#include "config/machine.h"
#include "common/status_or.h"

namespace umi {

using EnvLookup = std::function<const char*(const char* name)>;

struct ConfigChoice {
  std::optional<std::filesystem::path> explicit_path;
  std::vector<std::filesystem::path> search_dirs;
  bool strict = false;
  bool allow_fallback = false;  // a named file may fall back too (--allow-fallback)
  // A pool larger than the machine is an error unless the config says
  // `oversubscribe: true` (--strict-config); else a warning.
  bool refuse_oversubscribe = false;
};

struct LoadedConfig {
  HardwareConfig config;
  std::string fallback;  // why the chosen file is not in force; empty: it is
  std::vector<std::string> errors;    // what failed on the way (ERROR level)
  std::vector<std::string> warnings;  // config vs detected machine
};

StatusOr<LoadedConfig> LoadConfig(const ConfigChoice& choice, const EnvLookup& env, const Machine& machine);

// The fallbacks, exposed for tests.
StatusOr<HardwareConfig> ConfigFromEnvironment(const EnvLookup& env, const Machine& machine);
HardwareConfig ConfigFromMachine(const Machine& machine);
// Errors that make the config unusable on this machine (pinning beyond it).
Status CheckRunnableOn(const HardwareConfig& config, const Machine& machine);
// Where the config promises more than the machine has.
std::vector<std::string> CompareWithMachine(const HardwareConfig& config, const Machine& machine);

// Which file to load: `explicit_path` if given, else
// <dir>/<HARDWARE_CONFIG or "default">.yaml for the first of `search_dirs`
// that has it.
StatusOr<std::filesystem::path> ResolveConfigPath(
    const std::optional<std::filesystem::path>& explicit_path, const char* hardware_config_env,
    const std::vector<std::filesystem::path>& search_dirs);

}  // namespace umi
