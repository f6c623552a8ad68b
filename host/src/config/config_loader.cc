#include "config/config_loader.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <regex>

namespace umi {
namespace {

std::string Describe(const HardwareConfig& c) {
  return std::to_string(c.hardware.cpu.threads) + " threads, " + Quantity::FromDouble(c.hardware.cpu.cores).ToString() +
         " cores, " + std::to_string(c.memory_capacity_mb()) + " MiB, " + std::to_string(c.hardware.gpus.size()) +
         " GPU(s)";
}

// A non-negative number from the environment; empty error when unset.
std::optional<double> EnvNumber(const EnvLookup& env, const char* name, bool whole, double min_value,
                                std::string& error) {
  const char* text = env(name);
  if (!text || !*text) return std::nullopt;
  double value = 0;
  const char* end = text + std::char_traits<char>::length(text);
  const auto [ptr, ec] = std::from_chars(text, end, value);
  if (ec != std::errc() || ptr != end || !std::isfinite(value) || value < min_value ||
      (whole && value != std::floor(value))) {
    error += std::string(error.empty() ? "" : "; ") + name + "='" + text + "' is not " +
             (whole ? "a whole number" : "a number") + " >= " + Quantity::FromDouble(min_value).ToString();
    return std::nullopt;
  }
  return value;
}

}  // namespace

HardwareConfig ConfigFromMachine(const Machine& machine) {
  HardwareConfig config;
  config.origin = "detected";
  config.hardware.cpu.cores = static_cast<double>(machine.cores.size());
  config.hardware.cpu.threads = machine.logical_cpus();
  config.hardware.cpu.max_concurrent_tasks = config.hardware.cpu.threads;
  config.hardware.memory.total_gb = static_cast<double>(machine.memory_mb) / 1024.0;
  config.hardware.gpus = machine.gpus;
  return config;
}

StatusOr<HardwareConfig> ConfigFromEnvironment(const EnvLookup& env, const Machine& machine) {
  std::string error;
  const auto cores = EnvNumber(env, "UMI_CPU_CORES", false, 0.0001, error);
  const auto threads = EnvNumber(env, "UMI_CPU_THREADS", true, 1, error);
  const auto gpus = EnvNumber(env, "UMI_GPU_COUNT", true, 0, error);
  const auto memory = EnvNumber(env, "UMI_MEMORY_MB", true, 1, error);
  const auto concurrent = EnvNumber(env, "UMI_MAX_CONCURRENT_TASKS", true, 1, error);
  if (!error.empty()) return Status(ErrorCode::kInvalidConfig, error);
  if (!cores && !threads && !gpus && !memory && !concurrent) {
    return Status(ErrorCode::kInvalidConfig, "no UMI_* environment variables are set");
  }
  HardwareConfig config = ConfigFromMachine(machine);
  config.origin = "environment";
  if (cores) config.hardware.cpu.cores = *cores;
  if (threads) config.hardware.cpu.threads = static_cast<int>(*threads);
  config.hardware.cpu.max_concurrent_tasks = concurrent ? static_cast<int>(*concurrent) : config.hardware.cpu.threads;
  if (memory) config.hardware.memory.total_gb = *memory / 1024.0;
  if (gpus) {
    config.hardware.gpus.clear();
    for (int id = 0; id < static_cast<int>(*gpus); ++id) {
      config.hardware.gpus.push_back(id < static_cast<int>(machine.gpus.size()) ? machine.gpus[id] : GpuDevice{id, "", 0});
    }
  }
  return config;
}

Status CheckRunnableOn(const HardwareConfig& config, const Machine& machine) {
  if (config.hardware.cpu.pinning && config.hardware.cpu.threads > machine.logical_cpus()) {
    return Status(ErrorCode::kInvalidConfig,
                  config.source.string() + ": hardware.cpu.pinning needs hardware.cpu.threads (" +
                      std::to_string(config.hardware.cpu.threads) + ") <= this machine's logical CPUs (" +
                      std::to_string(machine.logical_cpus()) + ")");
  }
  return {};
}

std::vector<std::string> CompareWithMachine(const HardwareConfig& config, const Machine& machine) {
  std::vector<std::string> warnings;
  auto exceeds = [&](const std::string& what, const std::string& configured, const std::string& detected) {
    warnings.push_back("config " + what + " " + configured + " exceeds this machine's " + detected);
  };
  if (Quantity::FromDouble(config.hardware.cpu.cores) > Quantity::Whole(static_cast<int64_t>(machine.cores.size()))) {
    exceeds("cpu cores", Quantity::FromDouble(config.hardware.cpu.cores).ToString(),
            std::to_string(machine.cores.size()) + " physical cores");
  }
  if (config.hardware.cpu.threads > machine.logical_cpus()) {
    exceeds("cpu threads", std::to_string(config.hardware.cpu.threads),
            std::to_string(machine.logical_cpus()) + " logical CPUs");
  }
  if (config.hardware.memory.total_gb * 1024 > static_cast<double>(machine.memory_mb)) {
    exceeds("memory", std::to_string(static_cast<int64_t>(config.hardware.memory.total_gb * 1024)) + " MiB",
            std::to_string(machine.memory_mb) + " MiB");
  }
  if (config.hardware.gpus.size() > machine.gpus.size()) {
    exceeds("GPU count", std::to_string(config.hardware.gpus.size()),
            std::to_string(machine.gpus.size()) + " GPU(s)" +
                (machine.gpu_note.empty() ? "" : " (" + machine.gpu_note + ")"));
  }
  return warnings;
}

StatusOr<LoadedConfig> LoadConfig(const ConfigChoice& choice, const EnvLookup& env, const Machine& machine) {
  LoadedConfig loaded;
  std::string failure;
  const auto path = ResolveConfigPath(choice.explicit_path, env("HARDWARE_CONFIG"), choice.search_dirs);
  if (!path.ok()) {
    failure = path.error();
  } else if (auto parsed = LoadHardwareConfig(path.value(), &machine); !parsed.ok()) {
    failure = parsed.error();
  } else if (const Status runnable = CheckRunnableOn(parsed.value(), machine); !runnable.ok()) {
    failure = runnable.message();
  } else if (const std::vector<std::string> larger = CompareWithMachine(parsed.value(), machine);
             choice.refuse_oversubscribe && !parsed->oversubscribe && !larger.empty()) {
    failure = path.value().string() + ": the pool is larger than this machine (" + larger.front() +
              (larger.size() > 1 ? ", and " + std::to_string(larger.size() - 1) + " more" : "") +
              "); size it to the machine (hardware: detect), or say `oversubscribe: true` if that is meant";
  } else {
    loaded.config = std::move(parsed).value();
  }

  if (!failure.empty()) {
    if (choice.strict) return Status(ErrorCode::kInvalidConfig, failure);
    const char* named_by_env = env("HARDWARE_CONFIG");
    if ((choice.explicit_path || (named_by_env && *named_by_env)) && !choice.allow_fallback) {
      return Status(ErrorCode::kInvalidConfig, 
          failure + " (the config was named by " + (choice.explicit_path ? "--config" : "HARDWARE_CONFIG") +
          "; --allow-fallback would run on the UMI_* variables or the detected hardware instead)");
    }
    loaded.fallback = failure;
    auto from_env = ConfigFromEnvironment(env, machine);
    if (from_env.ok()) {
      loaded.config = std::move(from_env).value();
      loaded.errors.push_back(failure + "; using the UMI_* environment variables instead (" +
                              Describe(loaded.config) + ")");
    } else {
      loaded.config = ConfigFromMachine(machine);
      loaded.errors.push_back(failure + "; environment fallback: " + from_env.error() +
                              "; using the detected hardware instead (" + Describe(loaded.config) + ")");
    }
  }
  if (!loaded.config.oversubscribe) loaded.warnings = CompareWithMachine(loaded.config, machine);
  return loaded;
}

StatusOr<std::filesystem::path> ResolveConfigPath(
    const std::optional<std::filesystem::path>& explicit_path, const char* hardware_config_env,
    const std::vector<std::filesystem::path>& search_dirs) {
  if (explicit_path) return *explicit_path;
  const std::string name =
      hardware_config_env && *hardware_config_env ? hardware_config_env : "default";
  if (!std::regex_match(name, std::regex("[A-Za-z0-9_.-]+")) || name.find("..") != std::string::npos) {
    return Status(ErrorCode::kInvalidConfig,
        "HARDWARE_CONFIG='" + name + "' is not a config name (letters, digits, '_', '-', '.')");
  }
  std::string tried;
  for (const auto& dir : search_dirs) {
    const std::filesystem::path candidate = dir / (name + ".yaml");
    if (std::filesystem::is_regular_file(candidate)) return candidate;
    tried += "\n  " + candidate.string();
  }
  return Status(ErrorCode::kInvalidConfig, "no hardware config '" + name + "'; looked for:" +
                                                tried);
}

}  // namespace umi
