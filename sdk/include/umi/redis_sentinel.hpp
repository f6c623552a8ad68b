// umi/redis_sentinel.hpp: the master that Redis Sentinel names for a
// redis+sentinel:// URL (umi/redis_url.hpp). umi-host, umi-submit and
// umi/redis_client.hpp ask at every (re)connect, so after a failover they
// reach the promoted replica. Header-only; needs hiredis.
//
// Sentinels are asked in the order the URL lists them; the first that
// names the master wins. The password of the URL is the master's, not the
// sentinels' (sentinels without AUTH, as Debian's redis-sentinel ships).
//
// Thread safety: free functions.
#pragma once

#include <hiredis/hiredis.h>
#include <sys/time.h>

#include <optional>
#include <string>

#include "redis_url.hpp"

namespace umi {

struct RedisAddress {
  std::string host;
  int port = 0;
};

// Where the master of `endpoint` is now, or nothing with `*error` saying why.
inline std::optional<RedisAddress> AskSentinels(const RedisEndpoint& endpoint, timeval timeout, std::string* error) {
  std::string why;
  for (const auto& [host, port] : endpoint.sentinels) {
    const std::string where = host + ":" + std::to_string(port);
    redisContext* sentinel = redisConnectWithTimeout(host.c_str(), port, timeout);
    if (!sentinel || sentinel->err) {
      why += (why.empty() ? "" : "; ") + where + ": " + (sentinel ? sentinel->errstr : "out of memory");
      if (sentinel) redisFree(sentinel);
      continue;
    }
    redisSetTimeout(sentinel, timeout);
    auto* reply = static_cast<redisReply*>(
        redisCommand(sentinel, "SENTINEL get-master-addr-by-name %s", endpoint.master.c_str()));
    std::optional<RedisAddress> found;
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
        reply->element[0]->type == REDIS_REPLY_STRING && reply->element[1]->type == REDIS_REPLY_STRING) {
      found = RedisAddress{reply->element[0]->str, std::atoi(reply->element[1]->str)};
    } else {
      why += (why.empty() ? "" : "; ") + where + ": " +
             (reply ? "knows no master named '" + endpoint.master + "'" : std::string(sentinel->errstr));
    }
    if (reply) freeReplyObject(reply);
    redisFree(sentinel);
    if (found) return found;
  }
  if (error) *error = "no sentinel named the master '" + endpoint.master + "' (" + why + ")";
  return std::nullopt;
}

// Whether the server behind `context` says it is a master (ROLE): a
// demoted master, or a replica still being promoted, is not.
inline bool IsRedisMaster(redisContext* context) {
  auto* reply = static_cast<redisReply*>(redisCommand(context, "ROLE"));
  const bool master = reply && reply->type == REDIS_REPLY_ARRAY && reply->elements > 0 &&
                      reply->element[0]->type == REDIS_REPLY_STRING && std::string(reply->element[0]->str) == "master";
  if (reply) freeReplyObject(reply);
  return master;
}

}  // namespace umi
