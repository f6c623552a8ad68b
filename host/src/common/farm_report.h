// FarmReport: what the Redis Streams side of a host has seen, handed by the
// transport to telemetry at each heartbeat (/metrics). A plain value.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>

namespace umi {

struct FarmReport {
  // Per plugin stream: {waiting, pending} entries of group umi.
  std::map<std::string, std::pair<int64_t, int64_t>> backlog;
  size_t held_results = 0;  // results waiting for Redis (refused, or Redis away)
  uint64_t stale_results = 0;  // dropped: another host held the entry by then
  uint64_t redirected_results = 0;  // reply_to could not take them: sent to umi:results
  uint64_t redeliveries = 0;  // entries this host took from a lapsed lease
  uint64_t leases_lost = 0;  // entries another host took from this one
  // Plugins with tasks waiting in Redis that no live host offers to run:
  // plugin -> tasks waiting (read every few seconds, from the whole farm).
  std::map<std::string, int64_t> unserved;
};

}  // namespace umi
