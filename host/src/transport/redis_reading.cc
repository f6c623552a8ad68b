// RedisTransport, taking tasks: one blocking read over every stream with
// room while the farm is quiet; once a read brought entries, a plan per
// turn (redis_scripts::kPlanTake) and plain reads of each plugin's own
// count until nothing waits; a blocking read ended early when a stream it
// does not read gained room, or when the host drains.
#include "transport/redis_transport.h"

#include <spdlog/spdlog.h>

#include <numeric>

#include "transport/protocol.h"
#include "transport/redis_keys.h"
#include "transport/redis_scripts.h"

namespace umi {

using redis_keys::kGroup;
using redis_keys::LevelStreams;
using redis_keys::PluginOf;
using redis_keys::Text;

void RedisTransport::RereadIfRoomMoved() {
  for (const std::string& plugin : plugins_) {
    const std::string first_level = RedisLevelStream(plugin, kRedisPriorityLevels[0]);
    if (read_streams_.count(first_level) || inbox_->Room(plugin) == 0) continue;
    // The read returns nil at once; the next turn reads every stream with room.
    auto unblocked = writer_.Command({"CLIENT", "UNBLOCK", std::to_string(reader_id_)});
    if (!unblocked.ok() && unblocked.status().code() == ErrorCode::kUnavailable) Disconnected(unblocked.status());
    read_streams_.insert(first_level);  // once per read
    return;
  }
}

void RedisTransport::StopReading() {
  if (replies_due_ == 0 || !blocking_read_ || !writer_.connected()) return;
  auto unblocked = writer_.Command({"CLIENT", "UNBLOCK", std::to_string(reader_id_)});
  if (!unblocked.ok() && unblocked.status().code() == ErrorCode::kUnavailable) Disconnected(unblocked.status());
}

void RedisTransport::StartRead() {
  if (displaced_) return;
  // A plugin's streams (one per priority level) give together at most what
  // it can start now plus its read-ahead, the highest level first. A
  // blocking read waits on every stream, taking from each at most the
  // smallest count divided by the levels (at least one); once it brought
  // entries, the next turns take each plugin's own count without blocking
  // (kPlanTake says how many from each stream, plain reads take them) until
  // nothing waits.
  std::vector<std::pair<std::vector<std::string>, size_t>> wanted;  // a plugin's streams, count
  for (const std::string& plugin : plugins_) {
    const size_t room = inbox_->Room(plugin);
    if (room == 0) continue;
    const size_t ahead = options_.prefetch ? *options_.prefetch : inbox_->ReadAhead(plugin, room);
    std::vector<std::string> streams = LevelStreams(plugin);
    for (const std::string& stream : streams) {
      if (grouped_.count(stream)) continue;
      auto created = writer_.Command({"XGROUP", "CREATE", stream, kGroup, "0", "MKSTREAM"});
      if (!created.ok() && created.status().code() == ErrorCode::kUnavailable) return Disconnected(created.status());
      grouped_.insert(stream);  // created, or BUSYGROUP: it exists
      next_heartbeat_ = Clock::now();  // the next turn reports its backlog
    }
    wanted.emplace_back(std::move(streams), room + ahead);
  }
  if (wanted.empty()) {
    draining_streams_ = false;
    return;
  }
  if (draining_streams_ && ReadAsPlanned(wanted)) {
    draining_streams_ = false;  // until a reply brings entries
    blocking_read_ = false;
    return;
  }
  if (draining_streams_) {
    // One script call for every plugin with room says how many to take from
    // each level; plain reads take them (ReadPlanned), and for kPlanFresh
    // a plugin with one level waiting reads it directly. Reading inside a
    // script (kTakeLevels) would pass each entry through Lua twice, which
    // cost more than the plan's extra round trip even for a few entries.
    if (Status sent = SendRead(LevelsCommand(Script::kPlanTake, wanted)); !sent.ok()) return Disconnected(sent);
    for (auto& [streams, count] : wanted) planned_.insert(planned_.end(), streams.begin(), streams.end());
    draining_streams_ = false;  // until a reply brings entries
    blocking_read_ = false;
    return;
  }
  // A plugin's levels together give no more than its count.
  size_t count = SIZE_MAX;
  for (const auto& [streams, plugin_count] : wanted) count = std::min(count, plugin_count / streams.size());
  std::vector<std::string> args = {"XREADGROUP", "GROUP", kGroup, consumer_, "COUNT",
                                   std::to_string(std::max<size_t>(count, 1)), "BLOCK",
                                   std::to_string(options_.block.count()), "STREAMS"};
  read_streams_.clear();
  for (const auto& plugin_streams : wanted) {
    args.insert(args.end(), plugin_streams.first.begin(), plugin_streams.first.end());
    read_streams_.insert(plugin_streams.first.begin(), plugin_streams.first.end());
  }
  args.insert(args.end(), read_streams_.size(), ">");
  if (Status sent = SendRead(args); !sent.ok()) return Disconnected(sent);
  blocking_read_ = true;
}

Status RedisTransport::SendRead(const std::vector<std::string>& args) {
  if (replies_due_ == 0) read_epoch_ = results_.epoch();
  Status sent = reader_.Send(args);
  if (sent.ok()) {
    ++replies_due_;
    reply_is_lookup_.push_back(false);
  }
  return sent;
}

std::vector<std::string> RedisTransport::LevelsCommand(
    Script script, const std::vector<std::pair<std::vector<std::string>, size_t>>& wanted) const {
  std::vector<std::string> keys, args = {kGroup, consumer_};
  for (const auto& [streams, count] : wanted) {
    keys.insert(keys.end(), streams.begin(), streams.end());
    args.push_back(std::to_string(streams.size()));
    args.push_back(std::to_string(count));
  }
  std::vector<std::string> take = {"EVALSHA", script_sha_[static_cast<size_t>(script)], std::to_string(keys.size())};
  take.insert(take.end(), keys.begin(), keys.end());
  take.insert(take.end(), args.begin(), args.end());
  return take;
}

void RedisTransport::OnReadable() {
  StatusOr<RedisReply> reply = reader_.ReadReady();
  while (reply.ok() && reply.value()) {
    --replies_due_;
    const bool lookup = !reply_is_lookup_.empty() && reply_is_lookup_.front();
    if (!reply_is_lookup_.empty()) reply_is_lookup_.pop_front();
    const redisReply* streams = reply.value().get();
    if (lookup && !awaiting_lookup_.empty()) {
      AwaitingLookup read = std::move(awaiting_lookup_.front());
      awaiting_lookup_.pop_front();
      HandleEntries(read.read.get(), read.epoch, AnsweredFrom(streams, read.ids));
    } else if (!planned_.empty() && streams->type == REDIS_REPLY_ARRAY) {
      ReadPlanned(streams);
    } else if (streams->type == REDIS_REPLY_ERROR) {
      // NOGROUP after a server restart: create the groups again next time.
      spdlog::warn("redis XREADGROUP: {}", Text(streams));
      grouped_.clear();
    } else if (streams->type == REDIS_REPLY_ARRAY && streams->elements > 0) {
      draining_streams_ = true;  // entries came: more may wait
      if (std::vector<std::string> ids = IdsToLookUp(streams); !ids.empty()) {
        if (Status sent = LookUp(std::move(reply.value()), std::move(ids)); !sent.ok()) return Disconnected(sent);
      } else {
        HandleEntries(streams, read_epoch_);
      }
    }
    planned_.clear();
    if (replies_due_ == 0 || !reader_.connected()) return;
    reply = reader_.NextBuffered();
  }
  if (!reply.ok()) Disconnected(reply.status());
}

bool RedisTransport::ReadAsPlanned(const std::vector<std::pair<std::vector<std::string>, size_t>>& wanted) {
  // Within kPlanFresh of a plan, a plugin whose plan gave a single level (or
  // none) reads that level alone with a plain read: one round trip, as a
  // single stream would. A level above it that gained entries since waits
  // for the next plan, at most kPlanFresh later.
  if (Clock::now() >= plan_fresh_until_) return false;
  std::vector<std::vector<std::string>> reads;
  for (const auto& [streams, count] : wanted) {
    const auto planned = single_levels_.find(PluginOf(streams.front()));
    if (planned == single_levels_.end()) return false;  // several levels, or not in the plan
    if (planned->second.empty()) continue;            // nothing waited
    reads.push_back({"XREADGROUP", "GROUP", kGroup, consumer_, "COUNT", std::to_string(count), "STREAMS",
                     planned->second, ">"});
  }
  if (reads.empty()) return false;
  for (const std::vector<std::string>& read : reads) {
    if (Status sent = SendRead(read); !sent.ok()) {
      Disconnected(sent);
      return true;
    }
  }
  return true;
}

void RedisTransport::ReadPlanned(const redisReply* counts) {
  single_levels_.clear();
  plan_fresh_until_ = Clock::now() + kPlanFresh;
  std::set<std::string> several;
  for (size_t i = 0; i < counts->elements && i < planned_.size(); ++i) {
    const redisReply* count = counts->element[i];
    const std::string plugin = PluginOf(planned_[i]);
    single_levels_.try_emplace(plugin);
    if (count->type != REDIS_REPLY_INTEGER || count->integer <= 0) continue;
    std::string& level = single_levels_[plugin];
    if (!level.empty()) several.insert(plugin);
    level = planned_[i];
    if (Status sent = SendRead({"XREADGROUP", "GROUP", kGroup, consumer_, "COUNT", std::to_string(count->integer),
                                "STREAMS", planned_[i], ">"});
        !sent.ok()) {
      return Disconnected(sent);
    }
  }
  for (const std::string& plugin : several) single_levels_.erase(plugin);
}

}  // namespace umi
