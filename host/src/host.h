// Host: umi-host's event loop. One thread owns the ZeroMQ sockets, the
// scheduler and the resource pool; plugin calls run on a WorkerPool and
// report back through a mailbox the loop polls (an eventfd).
//
// Sockets (protocol v1, docs/protocol.md): tasks PULL, results PUSH,
// rpc ROUTER, events XPUB (PUB to subscribers; it also tells the host
// whether anyone listens). An endpoint "tcp://..." or "@tcp://..." binds;
// ">tcp://..." connects.
//
// Lifecycle: Open() binds/connects; Run() serves until SIGINT/SIGTERM
// (read from `signal_fd`, a signalfd) or a `drain` request, then drains:
// takes no new tasks, answers queued ones rejected/shutting_down, lets
// running ones finish within shutdown.drain_timeout_s (then cancels them),
// flushes results and returns 0. Every task received gets exactly one result.
//
// Enforcement: a task runs on a worker thread pinned to its granted logical
// CPUs when hardware.cpu.pinning is on (threads the plugin starts inherit
// it), with its first granted GPU as the thread's CUDA device.
//
// Reload (SIGHUP or the `reload` rpc op): the config is read again through
// HostOptions::reload_config. A valid one replaces the pool's capacity,
// task groups, plugin overrides and scheduler settings for every task not
// yet started (queued tasks are re-resolved), and new plugin libraries in
// the plugin directories are loaded. An invalid one is refused with the
// reason and the old config stays. Running tasks are never touched.
// Transport, HTTP and plugin settings changes need a restart; the reply
// lists them.
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

#include "hardware_config.h"
#include "plugin_registry.h"

namespace umi {

struct HostOptions {
  std::string name;  // the `host` field of results; default: hostname
  std::string tasks_endpoint = "tcp://127.0.0.1:5555";
  std::string results_endpoint = "tcp://127.0.0.1:5556";
  std::string rpc_endpoint = "tcp://127.0.0.1:5557";
  std::string events_endpoint = "tcp://127.0.0.1:5558";
  // Logical CPUs per physical core (from Machine), for hardware.cpu.pinning.
  std::vector<std::vector<int>> machine_cores;
  std::string http_listen;  // "host:port" (port 0 picks one); empty: no HTTP endpoint
  std::vector<std::filesystem::path> plugin_dirs;  // scanned again on reload
  std::string config_fallback;  // why the config in force is a fallback; empty: it is the one chosen
  std::filesystem::path self_binary;  // umi-host itself, re-executed for isolation: process
  // Reads the config again for a reload; an error says why it is invalid.
  // Unset: reloads are refused.
  std::function<StatusOr<HardwareConfig>()> reload_config;
};

class Host {
 public:
  Host(HostOptions options, const HardwareConfig& config, PluginRegistry& plugins);
  ~Host();

  // Empty on success, else why a socket could not be set up.
  std::string Open();
  // The endpoints as bound (ports resolved), by socket name.
  std::map<std::string, std::string> endpoints() const;
  int Run(int signal_fd);

 private:
  class Loop;
  std::unique_ptr<Loop> loop_;
};

}  // namespace umi
