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
#include <optional>
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

// What the command line says, and the subcommands it may name.
struct CommandLine {
  umi::ConfigChoice choice;
  std::vector<fs::path> plugin_dirs;
  umi::HostOptions options;
  std::string log_level = "info";
  std::string log_format = "text";
  std::string http_listen;
  bool json = false;
  std::optional<fs::path> check_file;
  std::string keygen_prefix;
  CLI::App* plugins_command = nullptr;
  CLI::App* check_command = nullptr;
  CLI::App* keygen_command = nullptr;
};

void AddOptions(CLI::App& app, CommandLine& line) {
  app.set_version_flag("--version", std::string("umi-host ") + UMI_VERSION);
  umi::HostOptions& options = line.options;
  options.name = Hostname();
  app.add_option("--config", line.choice.explicit_path,
                 "Hardware config YAML (default: config/hardware/${HARDWARE_CONFIG:-default}.yaml)");
  app.add_flag("--strict-config", line.choice.strict,
               "Exit on any config error, even in the default config path, instead of falling back to UMI_* "
               "variables, then detected hardware; and on a pool larger than this machine unless the config "
               "says oversubscribe: true");
  app.add_flag("--allow-fallback", line.choice.allow_fallback,
               "Run on UMI_* variables or detected hardware when the config named by --config or "
               "HARDWARE_CONFIG cannot be used (default: exit; /readyz and umi_config_fallback say when a "
               "fallback is in force)");
  app.add_option("--plugins", line.plugin_dirs,
                 "Plugin directory, or one plugin file (.so, .py); repeatable (default: UMI_PLUGIN_DIRS, else the "
                 "config's plugin_dirs, else <prefix>/lib/umi/plugins)");
  app.add_option("--tasks", options.tasks_endpoint, "Tasks PULL endpoint; '>' prefix connects")
      ->capture_default_str();
  app.add_option("--results", options.results_endpoint, "Results PUSH endpoint")->capture_default_str();
  app.add_option("--rpc", options.rpc_endpoint, "RPC ROUTER endpoint")->capture_default_str();
  app.add_option("--events", options.events_endpoint, "Events PUB endpoint")->capture_default_str();
  app.add_option("--http", line.http_listen,
                 "HTTP endpoint (dashboard, /metrics) as host:port, or 'off' (default: http.listen in the "
                 "config, 127.0.0.1:9090)");
  app.add_option("--name", options.name,
                 "Host name reported in results; with --redis, this host's consumer name (unique in the farm)")
      ->capture_default_str();
  app.add_option("--redis", options.redis_url,
                 "Take tasks from Redis Streams (redis://[:password@]host:port/db or unix:///path); "
                 "wins over transport.redis");
  app.add_option("--log-level", line.log_level, "trace, debug, info, warn, error or off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}))
      ->capture_default_str();
  app.add_option("--log-format", line.log_format, "text (for people) or json (one object per line)")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  app.fallthrough();
  app.require_subcommand(0, 1);

  line.plugins_command = app.add_subcommand(
      "plugins", "List the plugins found with their effective requirements, and refused libraries with "
                 "why; exits 1 if any library was refused");
  line.plugins_command->add_flag("--json", line.json, "Print JSON instead of a table");
  line.check_command = app.add_subcommand(
      "check-config", "Validate a config and print the pool, task groups and plugin requirements it "
                      "gives; exits 1 on a config error (plugins that cannot run here are warnings); takes "
                      "--plugins as the host does");
  line.check_command->add_option("file", line.check_file, "Config to check (default: as the host would choose)");
  line.keygen_command = app.add_subcommand(
      "keygen", "Make a ZeroMQ CURVE key pair: PREFIX.key (secret, mode 0600) and PREFIX.pub (for "
                "security.curve.authorized_keys_file or a client's server key)");
  line.keygen_command->add_option("--out", line.keygen_prefix, "Path prefix of the two files")->required();
}

int Keygen(const std::string& prefix) {
  umi::CurveKeyPair keys;
  if (const umi::Status written = umi::WriteCurveKeyPair(prefix, &keys); !written.ok()) {
    std::cerr << "umi-host keygen: " << written.message() << "\n";
    return 1;
  }
  std::cout << "public key " << keys.public_z85 << "\nwrote " << prefix << ".key (secret) and " << prefix << ".pub\n";
  return 0;
}

// --plugins, else UMI_PLUGIN_DIRS (a colon-separated list), else the
// config's plugin_dirs, else <prefix>/lib/umi/plugins.
std::vector<fs::path> PluginDirs(std::vector<fs::path> flagged, const umi::HardwareConfig& config,
                                 const fs::path& exe_dir) {
  if (flagged.empty()) {
    for (const std::string& dir : umi::SplitColonList(std::getenv("UMI_PLUGIN_DIRS"))) flagged.emplace_back(dir);
  }
  if (flagged.empty()) flagged = config.plugin_dirs;
  if (flagged.empty()) flagged.push_back((exe_dir / "../lib/umi/plugins").lexically_normal());
  return flagged;
}

// What the host needs besides the flags: endpoints from the config where no
// flag names them, the HTTP listener, how to read the config again.
void CompleteHostOptions(CommandLine& line, const CLI::App& app, const umi::LoadedConfig& loaded,
                         const umi::Machine& machine, const fs::path& self_binary) {
  const umi::HardwareConfig& config = loaded.config;
  umi::HostOptions& options = line.options;
  for (auto [flag, socket, endpoint] :
       {std::tuple{"--tasks", "tasks", &options.tasks_endpoint}, std::tuple{"--results", "results", &options.results_endpoint},
        std::tuple{"--rpc", "rpc", &options.rpc_endpoint}, std::tuple{"--events", "events", &options.events_endpoint}}) {
    const auto configured = config.transport.endpoints.find(socket);
    if (app.get_option(flag)->count() == 0 && configured != config.transport.endpoints.end()) *endpoint = configured->second;
  }
  options.machine_cores = machine.cores;
  options.config_fallback = loaded.fallback;
  options.http_listen = !line.http_listen.empty() ? (line.http_listen == "off" ? "" : line.http_listen)
                                                  : (config.http.enabled ? config.http.listen : "");
  options.plugin_dirs = line.plugin_dirs;
  options.self_binary = self_binary;
  if (config.origin == "file") {
    // A reload reads the same file; a broken one is refused, never replaced
    // by the environment or detected fallbacks.
    umi::ConfigChoice reload_choice = line.choice;
    reload_choice.explicit_path = config.source;
    reload_choice.strict = true;
    options.reload_config = [reload_choice, machine]() -> umi::StatusOr<umi::HardwareConfig> {
      auto reloaded = umi::LoadConfig(reload_choice, [](const char* name) { return std::getenv(name); }, machine);
      if (!reloaded.ok()) return reloaded.status();
      for (const std::string& warning : reloaded->warnings) spdlog::warn("{}", warning);
      return reloaded->config;
    };
  }
}

// Wires the transports, opens them and serves until a stop signal.
int Serve(const umi::HostOptions& options, const umi::HardwareConfig& config, umi::PluginRegistry& registry,
          int signal_fd) {
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
  return host.Run(signal_fd);
}

}  // namespace

int main(int argc, char** argv) {
  // A worker process for a plugin with isolation: process (plugin_worker.h).
  if ((argc == 6 || argc == 7) && std::string_view(argv[1]) == "__worker") {
    return umi::RunPluginWorker(std::atoi(argv[3]), argv[5], argc == 7 && std::string_view(argv[6]) == "--sandbox");
  }
  CLI::App app{"umi-host: runs media-processing plugins on a resource pool, fed over ZeroMQ"};
  CommandLine line;
  AddOptions(app, line);
  CLI11_PARSE(app, argc, argv);
  if (line.keygen_command->parsed()) return Keygen(line.keygen_prefix);

  const bool checking = line.check_command->parsed();
  const bool reporting = line.plugins_command->parsed() || checking;
  // Reports go to stdout; keep their stderr to warnings unless asked.
  umi::ConfigureLogging(line.log_format == "json" ? umi::LogFormat::kJson : umi::LogFormat::kText,
                        app.get_option("--log-level")->count() > 0 || !reporting ? line.log_level : "warn",
                        line.options.name);

  const fs::path exe_dir = ExecutableDir();
  line.choice.search_dirs = {fs::current_path() / "config/hardware",
                             (exe_dir / "../share/umi/config/hardware").lexically_normal()};
  // --strict-config also refuses a pool larger than the machine; check-config
  // is strict only about errors (it lists what exceeds the machine).
  line.choice.refuse_oversubscribe = line.choice.strict && !checking;
  if (checking) {
    if (line.check_file) line.choice.explicit_path = line.check_file;
    line.choice.strict = true;
  }
  const umi::Machine machine = umi::DetectMachine();
  const auto loaded = umi::LoadConfig(line.choice, [](const char* name) { return std::getenv(name); }, machine);
  if (!loaded.ok()) {
    spdlog::critical("{}", loaded.error());
    if (checking) std::cout << "ERROR: " << loaded.error() << "\n";
    return checking ? 1 : kExitConfigError;
  }
  const umi::HardwareConfig& config = loaded->config;
  for (const std::string& error : loaded->errors) spdlog::error("{}", error);
  if (!checking) {  // check-config prints them in its report
    for (const std::string& warning : loaded->warnings) spdlog::warn("{}", warning);
  }
  spdlog::info("config {} ({}{}): {} cores, {} threads, {} MiB memory, {} GPU(s), {} concurrent CPU tasks",
               config.origin == "file" ? config.source.string() : "-", config.origin,
               config.hardware_detected ? ", hardware: detect" : "", config.hardware.cpu.cores,
               config.hardware.cpu.threads, config.memory_capacity_mb(), config.hardware.gpus.size(),
               config.hardware.cpu.max_concurrent_tasks);

  const int signal_fd = reporting ? -1 : BlockSignalsIntoFd();
  if (!reporting && signal_fd < 0) {
    spdlog::critical("signalfd: {}", std::strerror(errno));
    return 1;
  }

  line.plugin_dirs = PluginDirs(std::move(line.plugin_dirs), config, exe_dir);
  umi::PluginRegistry registry(config);
  for (const fs::path& dir : line.plugin_dirs) registry.LoadDirectory(dir);
  spdlog::info("{} plugin(s) loaded, {} library(ies) refused", registry.plugins().size(), registry.refused().size());
  if (!checking) {  // check-config prints them in its report
    for (const std::string& unmatched : registry.ConfigWarnings()) spdlog::warn("{}", unmatched);
  }
  if (line.plugins_command->parsed()) {
    std::cout << (line.json ? umi::PluginsJson(registry, config).dump(2) + "\n" : umi::PluginsTable(registry));
    return registry.refused().empty() ? 0 : 1;
  }
  if (checking) {
    std::cout << umi::ConfigReport(loaded.value(), machine, registry);
    return loaded->errors.empty() ? 0 : 1;
  }

  fs::path self_binary = exe_dir / fs::path(argv[0]).filename();
  if (std::error_code error; fs::exists("/proc/self/exe", error)) self_binary = fs::read_symlink("/proc/self/exe");
  CompleteHostOptions(line, app, loaded.value(), machine, self_binary);
  const int code = Serve(line.options, config, registry, signal_fd);
  close(signal_fd);
  return code;
}
