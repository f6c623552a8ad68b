// The names a farm's hosts use in Redis (docs/protocol.md, "Redis wire"),
// their retry bound, and stream entry ids ordered as Redis orders them. Shared by the parts
// of the Redis transport; producers use umi/redis_streams.hpp.
//
// Thread safety: constants and value types.
#pragma once

#include <charconv>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <umi/redis_streams.hpp>

#include "transport/redis_connection.h"

namespace umi::redis_keys {

inline constexpr const char* kGroup = "umi";  // the consumer group of every task stream
inline constexpr const char* kDefaultResults = "umi:results";
inline constexpr const char* kFence = "umi:fence";  // incremented by every claim (redis_scripts::kClaimLapsed)

// Reconnects and refused results retry at most this far apart: below a
// lease, so a host back from an outage renews before anyone claims.
inline constexpr auto kMaxBackoff = std::chrono::milliseconds(1000);

// A plugin's task streams, one per priority level, highest first.
inline std::vector<std::string> LevelStreams(const std::string& plugin) {
  std::vector<std::string> streams;
  for (const int64_t level : kRedisPriorityLevels) streams.push_back(RedisLevelStream(plugin, level));
  return streams;
}
inline std::string PluginOf(const std::string& stream) { return RedisStreamPlugin(stream); }

// The key the farm's hosts fingerprint tasks with, so that a second
// submission of an id read by any host compares with the fingerprint kept
// in umi:result:<id> (protocol.h, WithFingerprint).
inline constexpr const char* kFingerprintKey = "umi:fingerprint-key";

inline std::string HostKey(const std::string& host) { return "umi:hosts:" + host; }
// Entries of a plugin's stream that began to run inside a host process.
inline std::string StartedKey(const std::string& stream) {
  return "umi:started:" + stream.substr(std::string("umi:tasks:").size());
}

inline std::string Text(const redisReply* reply) { return ReplyText(reply); }

// A stream entry id, <ms>-<seq>, ordered as Redis orders them.
struct StreamId {
  uint64_t ms = 0, seq = 0;
  static std::optional<StreamId> Parse(const std::string& text) {
    StreamId id;
    const size_t dash = text.find('-');
    if (dash == std::string::npos) return std::nullopt;
    const auto ms = std::from_chars(text.data(), text.data() + dash, id.ms);
    const auto seq = std::from_chars(text.data() + dash + 1, text.data() + text.size(), id.seq);
    if (ms.ec != std::errc() || seq.ec != std::errc() || seq.ptr != text.data() + text.size()) return std::nullopt;
    return id;
  }
  std::string Text() const { return std::to_string(ms) + "-" + std::to_string(seq); }
  auto operator<=>(const StreamId&) const = default;
};

}  // namespace umi::redis_keys
