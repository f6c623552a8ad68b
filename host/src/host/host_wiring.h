// Host wiring: the transports a host's options and config ask for, built
// before the loop exists, so the loop only routes between them.
//
//   ZeroMQ        always: tasks, results, rpc and events sockets
//                 (HostOptions endpoints; security.curve, transport.* limits);
//                 also the events sink.
//   Redis Streams with a URL (--redis, else transport.redis): tasks from
//                 the farm's streams; the password from the URL or
//                 transport.redis_password_file; and a view of the farm for
//                 the dashboard (/api/cluster) on a connection of its own.
//
// Nothing is opened here: Host::Open opens each transport in order.
//
// Thread safety: WireTransports is called once, before the loop runs. The
// cluster view is called from the HTTP server's thread (it locks).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/status_or.h"
#include "config/hardware_config.h"
#include "transport/transport.h"

namespace umi {

struct HostOptions;

struct HostTransports {
  std::vector<std::unique_ptr<Transport>> transports;  // opened in this order
  EventSink* events = nullptr;  // task.* events: one of `transports`, or null: none
  // The farm's view as JSON (/api/cluster); empty: no farm.
  std::function<StatusOr<std::string>()> cluster_view;
};

// An error names the setting at fault (a bad URL, an unreadable password file).
// How long a farm keeps each result for lookups by id: the dedup window,
// unless transport.keep_results is false.
inline std::chrono::milliseconds KeptResults(const HardwareConfig& config) {
  if (!config.transport.keep_results) return std::chrono::milliseconds(0);
  return std::chrono::milliseconds(static_cast<int64_t>(config.dedup.window_s * 1000));
}

StatusOr<HostTransports> WireTransports(const HostOptions& options, const HardwareConfig& config);

}  // namespace umi
