// RedisTransport, the farm's upkeep: the host's name and heartbeat, the
// leases on what it holds (renewed) and on what others held (claimed once
// lapsed), idle consumers, the backlog (and trimming done entries), tasks
// no host could start for long, plugins no host serves. Called from
// BeforeTasks at each heartbeat; Connect asks RedisWasCalm.
#include "transport/redis_transport.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <thread>

#include "transport/redis_cluster.h"
#include "transport/redis_keys.h"
#include "transport/redis_scripts.h"

namespace umi {

using redis_keys::HostKey;
using redis_keys::kGroup;
using redis_keys::kMaxBackoff;
using redis_keys::LevelStreams;
using redis_keys::PluginOf;
using redis_keys::StartedKey;
using redis_keys::StreamId;
using redis_keys::Text;

namespace {

constexpr size_t kClaimBatch = 64;

}  // namespace

bool RedisTransport::RedisWasCalm() {
  // A lapsed lease is a dead holder's unless Redis itself was away (restarted
  // or frozen): then every entry looks lapsed until live hosts reconnect and
  // renew. Calm: up, and hosts beating without a gap of two heartbeats (a
  // shorter stall cannot make a live lease lapse), for a lease and the
  // longest reconnect backoff; all in the server's clock.
  auto facts = writer_.Pipeline({{"INFO", "server"}, {"TIME"}, {"MGET", "umi:tick", "umi:resumed"}});
  if (!facts.ok() || facts.value().size() != 3) return false;
  const std::string info = Text(facts.value()[0].get());
  const size_t uptime_at = info.find("uptime_in_seconds:");
  const redisReply* time = facts.value()[1].get();
  const redisReply* ticks = facts.value()[2].get();
  if (uptime_at == std::string::npos || time->type != REDIS_REPLY_ARRAY || time->elements != 2 ||
      ticks->type != REDIS_REPLY_ARRAY || ticks->elements != 2 || ticks->element[0]->type != REDIS_REPLY_STRING ||
      ticks->element[1]->type != REDIS_REPLY_STRING) {
    return false;  // no host beats yet, or an answer not understood
  }
  const auto number = [](const std::string& text) { return std::atoll(text.c_str()); };
  const long long uptime_ms = 1000 * number(info.substr(uptime_at + std::string("uptime_in_seconds:").size()));
  const long long now_ms = 1000 * number(Text(time->element[0])) + number(Text(time->element[1])) / 1000;
  const long long tick_ms = number(Text(ticks->element[0]));
  const long long resumed_ms = number(Text(ticks->element[1]));
  const long long calm_for = (options_.lease + kMaxBackoff).count();
  return uptime_ms >= calm_for && now_ms - tick_ms <= 2 * options_.heartbeat.count() && now_ms - resumed_ms >= calm_for;
}

Status RedisTransport::CheckNameIsFree() {
  // A heartbeat that moves while we watch is a live process with our name;
  // one that stands still is an earlier run that died (its key expires).
  const std::string key = HostKey(options_.host);
  std::optional<std::string> first_beat;
  const Clock::time_point until = Clock::now() + 3 * options_.heartbeat + std::chrono::milliseconds(200);
  for (;;) {
    auto seen = writer_.Command({"HMGET", key, "consumer", "beat"});
    if (!seen.ok()) return seen.status().Prefixed("redis " + options_.url.Redacted());
    const redisReply* fields = seen.value().get();
    if (fields->type != REDIS_REPLY_ARRAY || fields->elements != 2 || fields->element[0]->type == REDIS_REPLY_NIL) {
      return {};
    }
    const std::string beat = Text(fields->element[1]);
    if (first_beat && beat != *first_beat) {
      return Status(ErrorCode::kInvalidConfig,
                    "another host named '" + options_.host + "' is alive on redis " + options_.url.Redacted() +
                        " (consumer " + Text(fields->element[0]) + ", heartbeat " + key +
                        " renewed while this one waited): give each host its own --name");
    }
    first_beat = beat;
    if (Clock::now() >= until) return {};
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

void RedisTransport::Heartbeat() {
  std::string plugins;
  for (const std::string& plugin : plugins_) plugins += (plugins.empty() ? "" : ",") + plugin;
  const auto unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch()).count();
  std::vector<std::string> args = {consumer_, std::to_string(3 * options_.heartbeat.count()),
                                   std::to_string(unix_ms), std::to_string(2 * options_.heartbeat.count()),
                                   "plugins", plugins};
  // What `umi-submit --op cluster` shows of this host.
  const HostLoad load = inbox_->load();
  const std::vector<std::string> fields = {
      "running", std::to_string(load.running), "queued", std::to_string(load.queued),
      "draining", load.draining ? "1" : "0",
      "cpu_threads", std::to_string(load.cpu_threads_used) + "/" + std::to_string(load.cpu_threads_total),
      "memory_mb", std::to_string(load.memory_mb_used) + "/" + std::to_string(load.memory_mb_total),
      "gpus", std::to_string(load.gpus_busy) + "/" + std::to_string(load.gpus_total)};
  args.insert(args.end(), fields.begin(), fields.end());
  auto beat = writer_.Command(Eval(Script::kHeartbeat, HostKey(options_.host), std::move(args)));
  if (!beat.ok()) {
    if (beat.status().code() == ErrorCode::kUnavailable) return Disconnected(beat.status());
    spdlog::warn("redis heartbeat: {}", beat.status().message());
    return;
  }
  if (beat.value()->type == REDIS_REPLY_INTEGER && beat.value()->integer == 0 && !displaced_) {
    spdlog::error("another process took this host's name '{}' (its heartbeat {} names another consumer) while this "
                  "one was away; this one takes no more tasks",
                  options_.host, HostKey(options_.host));
    displaced_ = true;
    SetReady();
  }
}

void RedisTransport::RenewLeases() {
  // One script call per stream; a lease another host took is given up here
  // (its result, if it comes, is fenced by kPublishResult).
  constexpr size_t kPerCall = 1000;
  std::vector<std::vector<std::string>> commands;
  std::vector<std::string> streams;
  // A result on its way acknowledges its entry: renewing that one too would
  // find it gone and take it for lost.
  const std::set<std::pair<std::string, std::string>> publishing = results_.InFlight();
  for (const auto& [stream, entries] : leases_) {
    std::vector<std::string> args = {kGroup, consumer_};
    for (const auto& [entry, epoch] : entries) {
      if (publishing.count({stream, entry})) continue;
      args.push_back(entry);
      if (args.size() - 2 == kPerCall) {
        commands.push_back(Eval(Script::kRenewLeases, stream, std::move(args)));
        streams.push_back(stream);
        args = {kGroup, consumer_};
      }
    }
    if (args.size() > 2) {
      commands.push_back(Eval(Script::kRenewLeases, stream, std::move(args)));
      streams.push_back(stream);
    }
  }
  if (commands.empty()) return;
  auto replies = writer_.Pipeline(commands);
  if (!replies.ok()) {
    if (replies.status().code() == ErrorCode::kUnavailable) return Disconnected(replies.status());
    spdlog::warn("redis lease renewal: {}", replies.status().message());  // a pipeline of one: its error reply
    return;
  }
  for (size_t i = 0; i < commands.size(); ++i) {
    const redisReply* lost = replies.value()[i].get();
    if (lost->type == REDIS_REPLY_ERROR) {
      spdlog::warn("redis lease renewal on {}: {}", streams[i], Text(lost));
      continue;
    }
    for (size_t e = 0; lost->type == REDIS_REPLY_ARRAY && e < lost->elements; ++e) {
      const std::string entry = Text(lost->element[e]);
      ++report_.leases_lost;
      leases_[streams[i]].erase(entry);
      spdlog::warn("redis {} entry {}: another host took it while this one was away; its result here will be dropped",
                   streams[i], entry);
    }
  }
  for (auto it = leases_.begin(); it != leases_.end();) it = it->second.empty() ? leases_.erase(it) : std::next(it);
}

bool RedisTransport::ClaimLapsed() {
  // Entries whose lease lapsed belong to nobody: a dead host's, a frozen
  // one's, or an earlier run's of this host. XCLAIM with the lease as
  // min-idle takes each one only if nobody renewed or claimed it since, so
  // of several hosts at most one wins. Never more than the room to start.
  if (displaced_) return false;
  bool left = false;
  const std::string lease = std::to_string(options_.lease.count());
  for (const std::string& plugin : plugins_) {
    size_t room = inbox_->Room(plugin);
    for (const std::string& stream : LevelStreams(plugin)) {  // the highest level first
      if (!grouped_.count(stream)) continue;
      // Without room, one lapsed entry is enough to know to look again soon.
      const size_t batch = room == 0 ? 1 : kClaimBatch;
      auto pending = writer_.Command({"XPENDING", stream, kGroup, "IDLE", lease, "-", "+", std::to_string(batch)});
      if (!pending.ok()) {
        if (pending.status().code() == ErrorCode::kUnavailable) {
          Disconnected(pending.status());
          return false;
        }
        continue;
      }
      const redisReply* list = pending.value().get();
      const auto held = leases_.find(stream);
      for (size_t i = 0; list->type == REDIS_REPLY_ARRAY && i < list->elements; ++i) {
        const redisReply* item = list->element[i];
        if (item->type != REDIS_REPLY_ARRAY || item->elements < 4) continue;
        const std::string id = Text(item->element[0]);
        if (held != leases_.end() && held->second.count(id)) continue;  // renewed at the next heartbeat
        if (room == 0) {
          left = true;
          break;
        }
        const std::string holder = Text(item->element[1]);
        const long long idle = item->element[2]->integer;
        auto taken =
            writer_.Command(Eval(Script::kClaimLapsed, stream, {kGroup, consumer_, lease, id, StartedKey(stream)}));
        if (!taken.ok()) {
          if (taken.status().code() == ErrorCode::kUnavailable) {
            Disconnected(taken.status());
            return false;
          }
          spdlog::warn("redis {} entry {}: claim: {}", stream, id, taken.status().message());
          continue;
        }
        const redisReply* claim = taken.value().get();
        if (claim->type != REDIS_REPLY_ARRAY || claim->elements != 2) continue;  // renewed or taken meanwhile
        ++report_.redeliveries;
        --room;
        HandleEntry(stream, claim->element[0], claim->element[1]->integer,
                    holder + " (" + std::to_string(idle) + " ms idle)", results_.epoch());
        if (!writer_.connected()) return false;
      }
    }
  }
  return left;
}

void RedisTransport::ReadUnserved() {
  // Streams with tasks for a plugin no live host offers wait for ever, so
  // every host reports them on /metrics (the farm's view, not its own).
  const nlohmann::json cluster = ReadCluster(writer_);
  std::map<std::string, int64_t> unserved;
  for (const auto& plugin : cluster["unserved_plugins"]) {
    const nlohmann::json& backlog = cluster["plugins"][plugin.get<std::string>()];
    unserved[plugin.get<std::string>()] = backlog.value("waiting", int64_t{0}) + backlog.value("pending", int64_t{0});
  }
  report_.unserved = std::move(unserved);
  std::set<std::string> offered;
  for (const auto& host : cluster["hosts"]) {
    if (!host.value("alive", false)) continue;
    const std::string plugins = host.value("plugins", std::string());
    for (size_t from = 0; from < plugins.size();) {
      const size_t comma = std::min(plugins.find(',', from), plugins.size());
      if (comma > from) offered.insert(plugins.substr(from, comma - from));
      from = comma + 1;
    }
  }
  if (!cluster["hosts"].empty()) farm_plugins_ = std::move(offered);  // an empty view: Redis did not answer
  farm_plugins_read_ = Clock::now();
}

void RedisTransport::DropIdleConsumers() {
  // Consumers come and go with processes (each run names its own): one
  // with nothing pending that has not read for a while is removed, in a
  // script that checks it still has nothing pending.
  for (const std::string& stream : grouped_) {
    auto consumers = writer_.Command({"XINFO", "CONSUMERS", stream, kGroup});
    if (!consumers.ok()) {
      if (consumers.status().code() == ErrorCode::kUnavailable) return Disconnected(consumers.status());
      continue;
    }
    const redisReply* list = consumers.value().get();
    for (size_t c = 0; list->type == REDIS_REPLY_ARRAY && c < list->elements; ++c) {
      const redisReply* fields = list->element[c];
      std::string name;
      long long pending = 0, idle = 0;
      for (size_t f = 0; fields->type == REDIS_REPLY_ARRAY && f + 1 < fields->elements; f += 2) {
        const std::string field = Text(fields->element[f]);
        if (field == "name") name = Text(fields->element[f + 1]);
        if (field == "pending") pending = fields->element[f + 1]->integer;
        if (field == "idle") idle = fields->element[f + 1]->integer;
      }
      if (name.empty() || name == consumer_ || pending > 0 ||
          std::chrono::milliseconds(idle) < std::chrono::duration_cast<std::chrono::milliseconds>(kIdleConsumer)) {
        continue;
      }
      auto dropped = writer_.Command(Eval(Script::kDropConsumer, stream, {kGroup, name, StartedKey(stream)}));
      if (!dropped.ok() && dropped.status().code() == ErrorCode::kUnavailable) return Disconnected(dropped.status());
    }
  }
}

std::map<std::string, std::chrono::milliseconds> RedisTransport::ReadBacklog() {
  std::map<std::string, std::pair<int64_t, int64_t>> backlog;
  std::map<std::string, std::chrono::milliseconds> oldest_waiting;
  const auto unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch()).count();
  for (const std::string& stream : grouped_) {
    if (!writer_.connected()) break;
    const std::string plugin = PluginOf(stream);
    auto groups = writer_.Command({"XINFO", "GROUPS", stream});
    if (!groups.ok() || groups.value()->type != REDIS_REPLY_ARRAY) continue;
    // Entries every group has delivered and nobody has pending are done:
    // trimming them keeps a stream's memory bounded however many tasks pass.
    std::optional<StreamId> keep_from;
    for (size_t g = 0; g < groups.value()->elements; ++g) {
      const redisReply* group = groups.value()->element[g];
      int64_t waiting = 0, pending = 0;
      std::string name, last_delivered;
      for (size_t f = 0; f + 1 < group->elements; f += 2) {
        const std::string field = Text(group->element[f]);
        const redisReply* value = group->element[f + 1];
        if (field == "name") name = Text(value);
        if (field == "pending") pending = value->integer;
        if (field == "lag" && value->type == REDIS_REPLY_INTEGER) waiting = value->integer;
        if (field == "last-delivered-id") last_delivered = Text(value);
      }
      if (name == kGroup) {  // a plugin's levels add up
        backlog[plugin].first += waiting;
        backlog[plugin].second += pending;
        if (waiting > 0) {  // the oldest entry no host took yet: its id says when it was added
          auto next = writer_.Command({"XRANGE", stream, "(" + last_delivered, "+", "COUNT", "1"});
          if (next.ok() && next.value()->type == REDIS_REPLY_ARRAY && next.value()->elements > 0) {
            if (const auto added = StreamId::Parse(Text(next.value()->element[0]->element[0]))) {
              const auto age = std::chrono::milliseconds(unix_ms - static_cast<int64_t>(added->ms));
              oldest_waiting[plugin] = std::max(oldest_waiting[plugin], age);
            }
          }
        }
      }
      std::optional<StreamId> oldest_needed = StreamId::Parse(last_delivered);
      if (pending > 0) {
        auto summary = writer_.Command({"XPENDING", stream, name});
        oldest_needed = summary.ok() && summary.value()->elements >= 2 ? StreamId::Parse(Text(summary.value()->element[1]))
                                                                       : std::nullopt;
      }
      if (!oldest_needed) {
        keep_from = StreamId{};  // unknown: trim nothing
        break;
      }
      if (!keep_from || *oldest_needed < *keep_from) keep_from = oldest_needed;
    }
    if (keep_from && *keep_from != StreamId{}) {
      (void)writer_.Command({"XTRIM", stream, "MINID", keep_from->Text()});
    }
  }
  report_.backlog = std::move(backlog);
  report_.held_results = results_.held();
  inbox_->FarmReported(report_);
  return oldest_waiting;
}

void RedisTransport::TakeStarving(const std::map<std::string, std::chrono::milliseconds>& oldest_waiting) {
  // What one host does for a task that waited reserve_after (the scheduler
  // reserves for it), a farm does in two steps: a host whose pool could run
  // it takes it although it has no room now, and its queue then reserves.
  if (displaced_) return;
  for (const auto& [plugin, waited] : oldest_waiting) {
    if (waited < options_.reserve_after || !plugins_.count(plugin) || inbox_->Room(plugin) > 0 ||
        !inbox_->MayHoldStarving(plugin)) {
      continue;
    }
    auto taken = writer_.Command(LevelsCommand(Script::kTakeLevels, {{LevelStreams(plugin), 1}}));
    if (!taken.ok()) {
      if (taken.status().code() == ErrorCode::kUnavailable) return Disconnected(taken.status());
      continue;
    }
    spdlog::info("redis: a task of {} waited {} ms with no host able to start it; taken to reserve for it", plugin,
                 waited.count());
    HandleEntries(taken.value().get(), results_.epoch(), FindAnswered(taken.value().get()));
    if (!writer_.connected()) return;
  }
}

}  // namespace umi
