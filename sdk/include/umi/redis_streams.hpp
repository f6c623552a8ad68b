// umi/redis_streams.hpp: which Redis stream a task goes to, the same rule in
// umi-host, umi-submit, umi/redis_client.hpp and the Python client
// (docs/scale-out.md, "Priority across the farm"). Header-only.
//
// A plugin has one stream per priority level, as Celery has a list per
// priority step: hosts take from the highest level first, so a late urgent
// task never waits behind a farm's backlog of ordinary ones. Within a host
// the queue orders tasks by their exact priority.
//
//   priority <= 0   umi:tasks:<plugin>        (the default level)
//   1 .. 3          umi:tasks:<plugin>:p3
//   4 .. 6          umi:tasks:<plugin>:p6
//   >= 7            umi:tasks:<plugin>:p9
//
// Thread safety: free functions and constants.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace umi {

// A finished task's result, kept by the host that wrote it for
// dedup.window_s (docs/flows.md, "Results by id"): its result map as it
// went to the reply stream.
inline std::string RedisResultKey(std::string_view task_id) { return "umi:result:" + std::string(task_id); }

// The levels, highest first: the order in which hosts take from them.
inline constexpr int64_t kRedisPriorityLevels[] = {9, 6, 3, 0};

inline int64_t RedisPriorityLevel(int64_t priority) {
  return priority >= 7 ? 9 : priority >= 4 ? 6 : priority >= 1 ? 3 : 0;
}

// The stream of `plugin`'s tasks at `level` (one of kRedisPriorityLevels).
inline std::string RedisLevelStream(std::string_view plugin, int64_t level) {
  std::string stream = "umi:tasks:" + std::string(plugin);
  if (level != 0) stream += ":p" + std::to_string(level);
  return stream;
}

// The stream a task of `plugin` with `priority` is added to.
inline std::string RedisTaskStream(std::string_view plugin, int64_t priority = 0) {
  return RedisLevelStream(plugin, RedisPriorityLevel(priority));
}

// The plugin whose tasks `stream` holds ("" when it is no task stream).
inline std::string RedisStreamPlugin(std::string_view stream) {
  constexpr std::string_view kPrefix = "umi:tasks:";
  if (stream.substr(0, kPrefix.size()) != kPrefix) return "";
  std::string_view plugin = stream.substr(kPrefix.size());
  for (const int64_t level : kRedisPriorityLevels) {
    const std::string suffix = ":p" + std::to_string(level);
    if (level != 0 && plugin.size() > suffix.size() && plugin.substr(plugin.size() - suffix.size()) == suffix) {
      return std::string(plugin.substr(0, plugin.size() - suffix.size()));
    }
  }
  return std::string(plugin);
}

}  // namespace umi
