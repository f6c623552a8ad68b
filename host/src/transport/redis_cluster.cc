#include "transport/redis_cluster.h"

#include <algorithm>
#include <chrono>
#include <map>

#include <umi/redis_streams.hpp>

namespace umi {
namespace {

// Keys matching `pattern`, by SCAN (never KEYS: it blocks a busy server).
std::vector<std::string> ScanKeys(RedisConnection& redis, const std::string& pattern) {
  std::vector<std::string> keys;
  std::string cursor = "0";
  do {
    auto reply = redis.Command({"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"});
    if (!reply.ok() || reply.value()->type != REDIS_REPLY_ARRAY) break;
    cursor = ReplyText(reply.value()->element[0]);
    const redisReply* found = reply.value()->element[1];
    for (size_t i = 0; i < found->elements; ++i) keys.push_back(ReplyText(found->element[i]));
  } while (cursor != "0");
  std::sort(keys.begin(), keys.end());
  return keys;
}

// Seconds since the entry `id` ("<unix ms>-<seq>") was added.
double AgeOf(const std::string& id) {
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count();
  return static_cast<double>(now_ms - std::stoll(id.substr(0, id.find('-')))) / 1000.0;
}

}  // namespace

nlohmann::json ReadCluster(RedisConnection& redis) {
  using json = nlohmann::json;
  json hosts = json::array();
  for (const std::string& key : ScanKeys(redis, "umi:hosts:*")) {
    auto fields = redis.Command({"HGETALL", key});
    if (!fields.ok() || fields.value()->type != REDIS_REPLY_ARRAY) continue;
    json host = {{"name", key.substr(std::string("umi:hosts:").size())}};
    for (size_t f = 0; f + 1 < fields.value()->elements; f += 2) {
      host[ReplyText(fields.value()->element[f])] = ReplyText(fields.value()->element[f + 1]);
    }
    hosts.push_back(std::move(host));
  }
  json plugins = json::object();
  for (const std::string& stream : ScanKeys(redis, "umi:tasks:*")) {
    // A plugin's priority levels add up to one backlog.
    json& backlog = plugins[RedisStreamPlugin(stream)];
    if (backlog.is_null()) backlog = {{"length", 0}, {"pending", 0}, {"waiting", 0}};
    if (auto length = redis.Command({"XLEN", stream}); length.ok()) {
      backlog["length"] = backlog["length"].get<int64_t>() + length.value()->integer;
    }
    auto groups = redis.Command({"XINFO", "GROUPS", stream});
    for (size_t g = 0; groups.ok() && g < groups.value()->elements; ++g) {
      const redisReply* group = groups.value()->element[g];
      std::map<std::string, const redisReply*> info;
      for (size_t f = 0; f + 1 < group->elements; f += 2) info[ReplyText(group->element[f])] = group->element[f + 1];
      if (ReplyText(info["name"]) != "umi") continue;
      backlog["pending"] = backlog["pending"].get<int64_t>() + info["pending"]->integer;
      if (info.count("lag") && info["lag"]->type == REDIS_REPLY_INTEGER) {
        backlog["waiting"] = backlog["waiting"].get<int64_t>() + info["lag"]->integer;
      }
      // The oldest entry no host has taken yet.
      auto next = redis.Command({"XRANGE", stream, "(" + ReplyText(info["last-delivered-id"]), "+", "COUNT", "1"});
      if (next.ok() && next.value()->elements > 0) {
        const double age = AgeOf(ReplyText(next.value()->element[0]->element[0]));
        backlog["oldest_waiting_s"] = std::max(age, backlog.value("oldest_waiting_s", 0.0));
      }
    }
  }
  return json{{"hosts", std::move(hosts)}, {"plugins", std::move(plugins)}};
}


}  // namespace umi
