// umi-host: the Universal Media Ingestion host process.
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <climits>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "hardware_config.h"
#include "host.h"
#include "plugin_registry.h"
#include "plugin_report.h"
#include "version.h"

namespace fs = std::filesystem;

namespace {

fs::path ExecutableDir() {
  std::error_code error;
  const fs::path self = fs::read_symlink("/proc/self/exe", error);
  return error ? fs::current_path() : self.parent_path();
}

std::string Hostname() {
  char name[HOST_NAME_MAX + 1] = {};
  return gethostname(name, sizeof(name)) == 0 ? name : "umi-host";
}

std::string JsonQuote(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"umi-host: runs media-processing plugins on a resource pool, fed over ZeroMQ"};
  app.set_version_flag("--version", std::string("umi-host ") + UMI_VERSION);

  std::optional<fs::path> config_path;
  std::vector<fs::path> plugin_dirs;
  umi::HostOptions options;
  options.name = Hostname();
  std::string log_level = "info";

  app.add_option("--config", config_path,
                 "Hardware config YAML (default: config/hardware/${HARDWARE_CONFIG:-default}.yaml)")
      ->check(CLI::ExistingFile);
  app.add_option("--plugins", plugin_dirs,
                 "Plugin directory, repeatable (default: <prefix>/lib/umi/plugins)")
      ->check(CLI::ExistingDirectory);
  app.add_option("--tasks", options.tasks_endpoint, "Tasks PULL endpoint; '>' prefix connects")
      ->capture_default_str();
  app.add_option("--results", options.results_endpoint, "Results PUSH endpoint")->capture_default_str();
  app.add_option("--rpc", options.rpc_endpoint, "RPC ROUTER endpoint")->capture_default_str();
  app.add_option("--events", options.events_endpoint, "Events PUB endpoint")->capture_default_str();
  app.add_option("--name", options.name, "Host name reported in results")->capture_default_str();
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}))
      ->capture_default_str();
  app.fallthrough();
  app.require_subcommand(0, 1);
  CLI::App* plugins_command =
      app.add_subcommand("plugins", "List the plugins found, their effective requirements, and refused "
                                    "libraries with why; exits 1 if any library was refused");
  bool json = false;
  plugins_command->add_flag("--json", json, "Print JSON instead of a table");
  CLI11_PARSE(app, argc, argv);

  auto logger = spdlog::stderr_color_mt("umi");
  spdlog::set_default_logger(logger);
  // Subcommands print reports; keep their stderr to warnings unless asked.
  const bool level_given = app.get_option("--log-level")->count() > 0;
  spdlog::set_level(spdlog::level::from_str(level_given || !plugins_command->parsed() ? log_level : "warn"));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ %v");

  const fs::path exe_dir = ExecutableDir();
  const auto resolved = umi::ResolveConfigPath(
      config_path, std::getenv("HARDWARE_CONFIG"),
      {fs::current_path() / "config/hardware", exe_dir / "../share/umi/config/hardware"});
  if (!resolved.ok()) {
    spdlog::critical("{}", resolved.error());
    return 2;
  }
  const auto config = umi::LoadHardwareConfig(resolved.value());
  if (!config.ok()) {
    spdlog::critical("{}", config.error());
    return 2;
  }
  spdlog::info("config {}: {} cores, {} threads, {} MiB memory, {} GPU(s), {} concurrent CPU tasks",
               resolved.value().string(), config->cpu_cores, config->cpu_threads,
               config->memory_capacity_mb(), config->gpus.size(), config->max_concurrent_tasks);

  // Signals are read from a signalfd by the event loop, so block them in
  // every thread, before ZeroMQ or the workers start any.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  const int signal_fd = signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
  if (signal_fd < 0) {
    spdlog::critical("signalfd: {}", std::strerror(errno));
    return 1;
  }

  if (plugin_dirs.empty()) plugin_dirs.push_back(exe_dir / "../lib/umi/plugins");
  umi::PluginRegistry registry(config.value());
  for (const fs::path& dir : plugin_dirs) registry.LoadDirectory(dir);
  spdlog::info("{} plugin(s) loaded, {} library(ies) refused", registry.plugins().size(),
               registry.refused().size());
  if (plugins_command->parsed()) {
    if (json) {
      std::cout << umi::PluginsJson(registry).dump(2) << std::endl;
    } else {
      std::cout << umi::PluginsTable(registry);
    }
    return registry.refused().empty() ? 0 : 1;
  }

  umi::Host host(options, config.value(), registry);
  if (const std::string error = host.Open(); !error.empty()) {
    spdlog::critical("{}", error);
    return 1;
  }
  // One machine-readable line on stdout: tests and scripts wait for it.
  std::string ready = "{\"ready\":true";
  for (const auto& [name, endpoint] : host.endpoints()) {
    ready += "," + JsonQuote(name) + ":" + JsonQuote(endpoint);
  }
  std::cout << ready << "}" << std::endl;
  for (const auto& [name, endpoint] : host.endpoints()) spdlog::info("{} socket on {}", name, endpoint);

  const int code = host.Run(signal_fd);
  close(signal_fd);
  return code;
}
