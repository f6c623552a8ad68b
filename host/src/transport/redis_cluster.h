// ReadCluster: what a farm on Redis Streams looks like right now, read from
// Redis alone (no host is asked): the live hosts, from their heartbeat
// hashes umi:hosts:<name> (plugins, running, queued, draining, pool use), and
// per plugin stream its backlog in group `umi`: length, pending (taken by a
// host, not answered yet), waiting (not taken yet) and oldest_waiting_s.
// `umi-submit --op cluster` prints it; a host on Redis serves it at
// /api/cluster for its dashboard.
//
//   {"hosts": [{"name": ..., "plugins": "a,b", ...}, ...],
//    "plugins": {"<plugin>": {"length": 3, "pending": 1, "waiting": 2, "oldest_waiting_s": 0.4}}}
//
// Keys are found with SCAN, never KEYS (which blocks a busy server).
//
// Thread safety: as the connection it is given.
#pragma once

#include <nlohmann/json.hpp>

#include "transport/redis_connection.h"

namespace umi {

nlohmann::json ReadCluster(RedisConnection& redis);

}  // namespace umi
