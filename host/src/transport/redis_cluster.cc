#include "transport/redis_cluster.h"

#include <algorithm>
#include <chrono>
#include <charconv>
#include <map>
#include <set>

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


// A heartbeat field's value: a number when it is one ("3"), else the text ("3/48").
nlohmann::json FieldValue(const std::string& text) {
  int64_t integer = 0;
  const auto parsed = std::from_chars(text.data(), text.data() + text.size(), integer);
  if (!text.empty() && parsed.ec == std::errc() && parsed.ptr == text.data() + text.size()) return integer;
  return text;
}

}  // namespace

nlohmann::json ReadCluster(RedisConnection& redis) {
  using json = nlohmann::json;
  json hosts = json::array();
  std::set<std::string> live, served;
  for (const std::string& key : ScanKeys(redis, "umi:hosts:*")) {
    auto fields = redis.Command({"HGETALL", key});
    if (!fields.ok() || fields.value()->type != REDIS_REPLY_ARRAY) continue;
    json host = {{"name", key.substr(std::string("umi:hosts:").size())}, {"alive", true}};
    for (size_t f = 0; f + 1 < fields.value()->elements; f += 2) {
      const std::string field = ReplyText(fields.value()->element[f]);
      const std::string value = ReplyText(fields.value()->element[f + 1]);
      host[field] = field == "plugins" || field == "consumer" ? json(value) : FieldValue(value);
      if (field == "plugins") {
        for (size_t from = 0; from < value.size();) {
          const size_t comma = std::min(value.find(',', from), value.size());
          served.insert(value.substr(from, comma - from));
          from = comma + 1;
        }
      }
    }
    live.insert(host["name"].get<std::string>());
    hosts.push_back(std::move(host));
  }
  // Hosts whose heartbeat lapsed within the last hour stay in view, marked.
  if (auto seen = redis.Command({"HGETALL", kHostsSeenKey}); seen.ok() && seen.value()->type == REDIS_REPLY_ARRAY) {
    for (size_t f = 0; f + 1 < seen.value()->elements; f += 2) {
      const std::string name = ReplyText(seen.value()->element[f]);
      const double age = AgeOf(ReplyText(seen.value()->element[f + 1]) + "-0");
      if (live.count(name) || age > 3600) continue;
      hosts.push_back({{"name", name}, {"alive", false}, {"last_seen_s", age}});
    }
  }
  json plugins = json::object();
  for (const std::string& stream : ScanKeys(redis, "umi:tasks:*")) {
    // A plugin's priority levels add up to one backlog.
    json& backlog = plugins[RedisStreamPlugin(stream)];
    if (backlog.is_null()) backlog = {{"length", 0}, {"pending", 0}, {"waiting", 0}};
    int64_t length = 0;
    if (auto counted = redis.Command({"XLEN", stream}); counted.ok()) length = counted.value()->integer;
    backlog["length"] = backlog["length"].get<int64_t>() + length;
    // No group umi yet (no host ever offered the plugin): every entry waits.
    std::string waiting_after = "-";
    auto groups = redis.Command({"XINFO", "GROUPS", stream});
    bool grouped = false;
    for (size_t g = 0; groups.ok() && g < groups.value()->elements; ++g) {
      const redisReply* group = groups.value()->element[g];
      std::map<std::string, const redisReply*> info;
      for (size_t f = 0; f + 1 < group->elements; f += 2) info[ReplyText(group->element[f])] = group->element[f + 1];
      if (ReplyText(info["name"]) != "umi") continue;
      grouped = true;
      backlog["pending"] = backlog["pending"].get<int64_t>() + info["pending"]->integer;
      if (info.count("lag") && info["lag"]->type == REDIS_REPLY_INTEGER) {
        backlog["waiting"] = backlog["waiting"].get<int64_t>() + info["lag"]->integer;
      }
      waiting_after = "(" + ReplyText(info["last-delivered-id"]);
    }
    if (!grouped) backlog["waiting"] = backlog["waiting"].get<int64_t>() + length;
    // The oldest entry no host has taken yet.
    auto next = redis.Command({"XRANGE", stream, waiting_after, "+", "COUNT", "1"});
    if (next.ok() && next.value()->type == REDIS_REPLY_ARRAY && next.value()->elements > 0) {
      const double age = AgeOf(ReplyText(next.value()->element[0]->element[0]));
      backlog["oldest_waiting_s"] = std::max(age, backlog.value("oldest_waiting_s", 0.0));
    }
  }
  // Streams with tasks that no live host offers to run wait for ever.
  json unserved = json::array();
  for (auto& [plugin, backlog] : plugins.items()) {
    backlog["served"] = served.count(plugin) > 0;
    if (!served.count(plugin) && backlog["waiting"].get<int64_t>() + backlog["pending"].get<int64_t>() > 0) {
      unserved.push_back(plugin);
    }
  }
  return json{{"hosts", std::move(hosts)}, {"plugins", std::move(plugins)}, {"unserved_plugins", std::move(unserved)}};
}


}  // namespace umi
