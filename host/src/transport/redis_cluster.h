// ReadCluster: what a farm on Redis Streams looks like right now, read from
// Redis alone (no host is asked): the live hosts, from their heartbeat
// hashes umi:hosts:<name> (plugins, running, queued, draining, pool use;
// numbers as numbers), hosts whose heartbeat lapsed within the last hour
// (from umi:hosts-seen: alive false, last_seen_s), and per plugin (its
// priority levels' streams added up) its backlog in group `umi`: length,
// pending (taken by a host, not answered yet), waiting (not taken yet),
// oldest_waiting_s, and whether a live host offers it (`served`).
// `unserved_plugins` names those with tasks that no live host serves: they
// wait for ever unless one comes. `umi-submit --op cluster` prints it; a
// host on Redis serves it at /api/cluster for its dashboard.
//
//   {"hosts": [{"name": ..., "alive": true, "plugins": "a,b", "running": 2, ...},
//              {"name": ..., "alive": false, "last_seen_s": 41.5}],
//    "plugins": {"<plugin>": {"length": 3, "pending": 1, "waiting": 2, "oldest_waiting_s": 0.4, "served": true}},
//    "unserved_plugins": []}
//
// Keys are found with SCAN, never KEYS (which blocks a busy server).
//
// Thread safety: as the connection it is given.
#pragma once

#include <nlohmann/json.hpp>

#include "transport/redis_connection.h"

namespace umi {

// A hash: host name -> unix ms of its latest heartbeat (no TTL).
inline constexpr const char* kHostsSeenKey = "umi:hosts-seen";

nlohmann::json ReadCluster(RedisConnection& redis);

}  // namespace umi
