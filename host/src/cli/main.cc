// umi-host: the Universal Media Ingestion host process.
//
//   umi-host [options]                 serve tasks until SIGINT/SIGTERM;
//                                      SIGHUP reloads the config
//   umi-host plugins [--json]          list plugins and refused libraries
//   umi-host check-config [FILE]       validate a config, print the pool
//   umi-host keygen --out PREFIX       make a CURVE key pair (PREFIX.key, PREFIX.pub)
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <tuple>

#include "config/config_loader.h"
#include "cli/config_report.h"
#include "common/text.h"
#include "transport/curve_auth.h"
#include "host/host.h"
#include "common/log_format.h"
#include "config/machine.h"
#include "runtime/plugin_registry.h"
#include "cli/plugin_report.h"
#include "runtime/plugin_worker.h"
#include "common/version.h"

namespace fs = std::filesystem;

namespace {

constexpr int kExitConfigError = 2;

fs::path ExecutableDir() {
  std::error_code error;
  const fs::path self = fs::read_symlink("/proc/self/exe", error);
  return error ? fs::current_path() : self.parent_path();
}

std::string Hostname() {
  char name[HOST_NAME_MAX + 1] = {};
  return gethostname(name, sizeof(name)) == 0 ? name : "umi-host";
}

// Signals are read from a signalfd by the event loop, so they are blocked
// in every thread: call before ZeroMQ or the workers start any.
int BlockSignalsIntoFd() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  sigaddset(&signals, SIGCHLD);  // a worker process ended (process_pool.h)
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  return signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
}

}  // namespace

int main(int argc, char** argv) {
  // A worker process for a plugin with isolation: process (plugin_worker.h).
  if ((argc == 6 || argc == 7) && std::string_view(argv[1]) == "__worker") {
    return umi::RunPluginWorker(std::atoi(argv[3]), argv[5], argc == 7 && std::string_view(argv[6]) == "--sandbox");
  }
  CLI::App app{"umi-host: runs media-processing plugins on a resource pool, fed over ZeroMQ"};
  app.set_version_flag("--version", std::string("umi-host ") + UMI_VERSION);

  umi::ConfigChoice choice;
  std::vector<fs::path> plugin_dirs;
  umi::HostOptions options;
  options.name = Hostname();
  std::string log_level = "info";

  app.add_option("--config", choice.explicit_path,
                 "Hardware config YAML (default: config/hardware/${HARDWARE_CONFIG:-default}.yaml)");
  app.add_flag("--strict-config", choice.strict,
               "Exit on any config error, even in the default config path, instead of falling back to UMI_* "
               "variables, then detected hardware");
  app.add_flag("--allow-fallback", choice.allow_fallback,
               "Run on UMI_* variables or detected hardware when the config named by --config or "
               "HARDWARE_CONFIG cannot be used (default: exit; /readyz and umi_config_fallback say when a "
               "fallback is in force)");
  app.add_option("--plugins", plugin_dirs, "Plugin directory, or one plugin file (.so, .py); repeatable (default: UMI_PLUGIN_DIRS, else the config's plugin_dirs, else <prefix>/lib/umi/plugins)");
  app.add_option("--tasks", options.tasks_endpoint, "Tasks PULL endpoint; '>' prefix connects")
      ->capture_default_str();
  app.add_option("--results", options.results_endpoint, "Results PUSH endpoint")->capture_default_str();
  app.add_option("--rpc", options.rpc_endpoint, "RPC ROUTER endpoint")->capture_default_str();
  app.add_option("--events", options.events_endpoint, "Events PUB endpoint")->capture_default_str();
  std::string http_listen;
  app.add_option("--http", http_listen,
                 "HTTP endpoint (dashboard, /metrics) as host:port, or 'off' (default: http.listen in the "
                 "config, 127.0.0.1:9090)");
  app.add_option("--name", options.name,
                 "Host name reported in results; with --redis, this host's consumer name (unique in the farm)")
      ->capture_default_str();
  app.add_option("--redis", options.redis_url,
                 "Take tasks from Redis Streams (redis://[:password@]host:port/db or unix:///path); "
                 "wins over transport.redis");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}))
      ->capture_default_str();
  std::string log_format = "text";
  app.add_option("--log-format", log_format, "text (for people) or json (one object per line)")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  app.fallthrough();
  app.require_subcommand(0, 1);

  CLI::App* plugins_command = app.add_subcommand(
      "plugins", "List the plugins found with their effective requirements, and refused libraries with "
                 "why; exits 1 if any library was refused");
  bool json = false;
  plugins_command->add_flag("--json", json, "Print JSON instead of a table");

  CLI::App* check_command = app.add_subcommand(
      "check-config", "Validate a config and print the pool, task groups and plugin requirements it "
                      "gives; exits 1 on a config error (plugins that cannot run here are warnings); takes "
                      "--plugins as the host does");
  std::optional<fs::path> check_file;
  check_command->add_option("file", check_file, "Config to check (default: as the host would choose)");
  CLI::App* keygen_command = app.add_subcommand(
      "keygen", "Make a ZeroMQ CURVE key pair: PREFIX.key (secret, mode 0600) and PREFIX.pub (for "
                "security.curve.authorized_keys_file or a client's server key)");
  std::string keygen_prefix;
  keygen_command->add_option("--out", keygen_prefix, "Path prefix of the two files")->required();
  CLI11_PARSE(app, argc, argv);

  if (keygen_command->parsed()) {
    umi::CurveKeyPair keys;
    if (const umi::Status written = umi::WriteCurveKeyPair(keygen_prefix, &keys); !written.ok()) {
      std::cerr << "umi-host keygen: " << written.message() << "\n";
      return 1;
    }
    std::cout << "public key " << keys.public_z85 << "\nwrote " << keygen_prefix << ".key (secret) and "
              << keygen_prefix << ".pub\n";
    return 0;
  }

  const bool reporting = plugins_command->parsed() || check_command->parsed();
  // Reports go to stdout; keep their stderr to warnings unless asked.
  umi::ConfigureLogging(log_format == "json" ? umi::LogFormat::kJson : umi::LogFormat::kText,
                        app.get_option("--log-level")->count() > 0 || !reporting ? log_level : "warn", options.name);

  const fs::path exe_dir = ExecutableDir();
  choice.search_dirs = {fs::current_path() / "config/hardware",
                        (exe_dir / "../share/umi/config/hardware").lexically_normal()};
  if (check_command->parsed()) {
    if (check_file) choice.explicit_path = check_file;
    choice.strict = true;
  }
  const umi::Machine machine = umi::DetectMachine();
  const auto loaded = umi::LoadConfig(choice, [](const char* name) { return std::getenv(name); }, machine);
  if (!loaded.ok()) {
    spdlog::critical("{}", loaded.error());
    if (check_command->parsed()) std::cout << "ERROR: " << loaded.error() << "\n";
    return check_command->parsed() ? 1 : kExitConfigError;
  }
  const umi::HardwareConfig& config = loaded->config;
  for (const std::string& error : loaded->errors) spdlog::error("{}", error);
  if (!check_command->parsed()) {  // check-config prints them in its report
    for (const std::string& warning : loaded->warnings) spdlog::warn("{}", warning);
  }
  spdlog::info("config {} ({}): {} cores, {} threads, {} MiB memory, {} GPU(s), {} concurrent CPU tasks",
               config.origin == "file" ? config.source.string() : "-", config.origin, config.hardware.cpu.cores, config.hardware.cpu.threads,
               config.memory_capacity_mb(), config.hardware.gpus.size(), config.hardware.cpu.max_concurrent_tasks);

  const int signal_fd = reporting ? -1 : BlockSignalsIntoFd();
  if (!reporting && signal_fd < 0) {
    spdlog::critical("signalfd: {}", std::strerror(errno));
    return 1;
  }

  // --plugins, else UMI_PLUGIN_DIRS (a colon-separated list), else the
  // config's plugin_dirs, else <prefix>/lib/umi/plugins.
  if (plugin_dirs.empty()) {
    for (const std::string& dir : umi::SplitColonList(std::getenv("UMI_PLUGIN_DIRS"))) plugin_dirs.emplace_back(dir);
  }
  if (plugin_dirs.empty()) plugin_dirs = config.plugin_dirs;
  if (plugin_dirs.empty()) plugin_dirs.push_back((exe_dir / "../lib/umi/plugins").lexically_normal());
  umi::PluginRegistry registry(config);
  for (const fs::path& dir : plugin_dirs) registry.LoadDirectory(dir);
  spdlog::info("{} plugin(s) loaded, {} library(ies) refused", registry.plugins().size(),
               registry.refused().size());
  if (!check_command->parsed()) {  // check-config prints them in its report
    for (const std::string& unmatched : registry.ConfigWarnings()) spdlog::warn("{}", unmatched);
  }

  if (plugins_command->parsed()) {
    std::cout << (json ? umi::PluginsJson(registry, config).dump(2) + "\n" : umi::PluginsTable(registry));
    return registry.refused().empty() ? 0 : 1;
  }
  if (check_command->parsed()) {
    std::cout << umi::ConfigReport(loaded.value(), machine, registry);
    return loaded->errors.empty() ? 0 : 1;
  }

  // Endpoints: a flag wins over transport.<socket> in the YAML.
  for (auto [flag, socket, endpoint] :
       {std::tuple{"--tasks", "tasks", &options.tasks_endpoint}, std::tuple{"--results", "results", &options.results_endpoint},
        std::tuple{"--rpc", "rpc", &options.rpc_endpoint}, std::tuple{"--events", "events", &options.events_endpoint}}) {
    const auto configured = config.transport.endpoints.find(socket);
    if (app.get_option(flag)->count() == 0 && configured != config.transport.endpoints.end()) *endpoint = configured->second;
  }
  options.machine_cores = machine.cores;
  options.config_fallback = loaded->fallback;
  options.http_listen = !http_listen.empty() ? (http_listen == "off" ? "" : http_listen)
                                             : (config.http.enabled ? config.http.listen : "");
  options.plugin_dirs = plugin_dirs;
  options.self_binary = exe_dir / fs::path(argv[0]).filename();
  if (std::error_code error; fs::exists("/proc/self/exe", error)) options.self_binary = fs::read_symlink("/proc/self/exe");
  if (config.origin == "file") {
    // A reload reads the same file; a broken one is refused, never replaced
    // by the environment or detected fallbacks.
    umi::ConfigChoice reload_choice = choice;
    reload_choice.explicit_path = config.source;
    reload_choice.strict = true;
    options.reload_config = [reload_choice, machine]() -> umi::StatusOr<umi::HardwareConfig> {
      auto reloaded = umi::LoadConfig(reload_choice, [](const char* name) { return std::getenv(name); }, machine);
      if (!reloaded.ok()) return reloaded.status();
      for (const std::string& warning : reloaded->warnings) spdlog::warn("{}", warning);
      return reloaded->config;
    };
  }
  umi::StatusOr<umi::HostTransports> transports = umi::WireTransports(options, config);
  if (!transports.ok()) {
    spdlog::critical("{}", transports.status().message());
    return 1;
  }
  umi::Host host(options, registry, std::move(transports).value());
  if (const umi::Status opened = host.Open(); !opened.ok()) {
    spdlog::critical("{}", opened.message());
    return 1;
  }
  // One machine-readable line on stdout: tests and scripts wait for it.
  std::string ready = "{\"ready\":true";
  for (const auto& [name, endpoint] : host.endpoints()) {
    ready += "," + umi::JsonString(name) + ":" + umi::JsonString(endpoint);
  }
  std::cout << ready << "}" << std::endl;
  for (const auto& [name, endpoint] : host.endpoints()) spdlog::info("{} socket on {}", name, endpoint);

  const int code = host.Run(signal_fd);
  close(signal_fd);
  return code;
}
