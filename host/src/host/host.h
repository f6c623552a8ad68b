// Host: umi-host's event loop, a router between small parts. One thread
// owns the transport, the scheduler and the resource pool; plugin calls run
// on the Executor and report back through its mailbox (an eventfd the
// Poller watches beside the transport's sockets).
//
// The path of one task (docs/architecture.md draws it): Transport ->
// Inbox::Deliver -> DecodeMessage -> Admit -> Scheduler -> Executor ->
// Finished -> CompleteRun -> EncodeResult -> ResultCache + the route's
// ResultSink. Every task received gets exactly one result.
//
// Lifecycle: Open() binds or connects; Run() serves until SIGINT/SIGTERM
// (read from `signal_fd`, a signalfd) or a `drain` request, then drains:
// takes no new tasks, answers queued ones rejected/shutting_down, lets
// running ones finish within shutdown.drain_timeout_s (then cancels them),
// flushes results and returns 0.
//
// Reload (SIGHUP or the `reload` rpc op): the config is read again through
// HostOptions::reload_config and applied as config/reload_plan.h says: the
// live keys for every task not yet started (queued tasks are re-resolved),
// new plugin libraries loaded; keys that need a restart are listed, never
// reported as applied. An invalid config, or key files that cannot be read,
// refuse the reload with the reason and change nothing.
//
// Transports come from outside (host_wiring.h builds the ZeroMQ and Redis
// ones; a test hands in its own): the loop opens them in order and routes
// between them and the parts that run tasks, knowing none of their wires.
//
// Operators: an optional HTTP endpoint (http_server.h) and sd_notify
// (READY, RELOADING, STOPPING) when started by systemd.
//
// Thread safety: Open and Run are called from one thread.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "config/hardware_config.h"
#include "host/host_wiring.h"
#include "runtime/plugin_registry.h"

namespace umi {

struct HostOptions {
  std::string name;  // the `host` field of results; default: hostname
  std::string tasks_endpoint = "tcp://127.0.0.1:5555";
  std::string results_endpoint = "tcp://127.0.0.1:5556";
  std::string rpc_endpoint = "tcp://127.0.0.1:5557";
  std::string events_endpoint = "tcp://127.0.0.1:5558";
  // Logical CPUs per physical core (from Machine), for hardware.cpu.pinning.
  std::vector<std::vector<int>> machine_cores;
  std::string redis_url;  // Redis Streams transport (host_wiring.h); empty: transport.redis, else off
  std::string http_listen;  // "host:port" (port 0 picks one); empty: no HTTP endpoint
  std::vector<std::filesystem::path> plugin_dirs;  // scanned again on reload
  std::string config_fallback;  // why the config in force is a fallback; empty: it is the one chosen
  std::filesystem::path self_binary;  // umi-host itself, re-executed for isolation: process
  // Reads the config again for a reload; an error says why it is invalid.
  // Unset: reloads are refused.
  std::function<StatusOr<HardwareConfig>()> reload_config;
  // Where the loop reads time; null: the system clock.
  const Clock* clock = nullptr;
};

class Host {
 public:
  // The config in force is the registry's (PluginRegistry::config).
  Host(HostOptions options, PluginRegistry& plugins, HostTransports transports);
  ~Host();

  // Binds or connects every endpoint and starts what serves them; else why not.
  Status Open();
  // The endpoints as bound (ports resolved), by socket name.
  std::map<std::string, std::string> endpoints() const;
  int Run(int signal_fd);

 private:
  class Loop;
  std::unique_ptr<Loop> loop_;
};

}  // namespace umi
