#include "transport/redis_transport.h"

#include <poll.h>

#include <spdlog/spdlog.h>

#include <msgpack.hpp>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <numeric>
#include <random>
#include <thread>

#include "transport/poller.h"
#include "transport/protocol.h"
#include "transport/redis_cluster.h"
#include "transport/redis_scripts.h"

#include <umi/redis_streams.hpp>

namespace umi {
namespace {

constexpr const char* kGroup = "umi";
constexpr const char* kDefaultResults = "umi:results";
constexpr const char* kFenceKey = "umi:fence";  // incremented by every claim (redis_scripts::kClaimLapsed)
// At start a slow server gets longer than a heartbeat to answer.
constexpr auto kConnectTimeout = std::chrono::milliseconds(2000);
// Reconnects and refused results retry at most this far apart: below a
// lease, so a host back from an outage renews before anyone claims.
constexpr auto kMaxBackoff = std::chrono::milliseconds(1000);
constexpr size_t kClaimBatch = 64;
// A consumer with nothing pending and idle this long is removed from the group.
constexpr auto kIdleConsumer = std::chrono::minutes(1);
// How often a host looks at the whole farm for tasks no live host serves.
constexpr auto kUnservedEvery = std::chrono::seconds(5);

// A plugin's task streams, one per priority level, highest first.
std::vector<std::string> LevelStreams(const std::string& plugin) {
  std::vector<std::string> streams;
  for (const int64_t level : kRedisPriorityLevels) streams.push_back(RedisLevelStream(plugin, level));
  return streams;
}
std::string PluginOf(const std::string& stream) { return RedisStreamPlugin(stream); }
std::string HostKey(const std::string& host) { return "umi:hosts:" + host; }
// Entries of a plugin's stream that began to run inside a host process.
std::string StartedKey(const std::string& stream) {
  return "umi:started:" + stream.substr(std::string("umi:tasks:").size());
}

std::string Text(const redisReply* reply) { return ReplyText(reply); }

// A random suffix that makes this process's consumer name its own.
std::string InstanceSuffix() {
  std::random_device device;
  char text[17];
  std::snprintf(text, sizeof(text), "%08x%08x", device(), device());
  return text;
}

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

// The top-level string fields of a task map that the transport itself
// needs, without decoding the task.
struct TaskFields {
  std::optional<std::string> id, plugin, reply_to;
};

TaskFields PeekTaskFields(std::string_view bytes) {
  // One zone per thread, cleared after each peek, as DecodeMessage does: a
  // zone per call costs an 8 KiB allocation per task.
  thread_local msgpack::zone zone;
  TaskFields fields;
  try {
    const msgpack::object root = msgpack::unpack(zone, bytes.data(), bytes.size());
    for (uint32_t i = 0; root.type == msgpack::type::MAP && i < root.via.map.size; ++i) {
      const auto& kv = root.via.map.ptr[i];
      if (kv.key.type != msgpack::type::STR || kv.val.type != msgpack::type::STR) continue;
      const std::string_view key(kv.key.via.str.ptr, kv.key.via.str.size);
      std::optional<std::string>* field = key == "id"         ? &fields.id
                                          : key == "plugin"   ? &fields.plugin
                                          : key == "reply_to" ? &fields.reply_to
                                                              : nullptr;
      if (field) field->emplace(kv.val.via.str.ptr, kv.val.via.str.size);
    }
  } catch (const std::exception&) {
  }
  zone.clear();
  return fields;
}

}  // namespace

RedisTransport::RedisTransport(RedisTransportOptions options)
    : options_(std::move(options)), consumer_(options_.host + "@" + InstanceSuffix()) {}

RedisTransport::~RedisTransport() = default;

void RedisTransport::SetPlugins(const std::set<std::string>& plugins) { plugins_ = plugins; }

Status RedisTransport::Connect(std::chrono::milliseconds timeout) {
  // A connection counts only once the server answered on it: a frozen
  // server accepts the socket and then says nothing.
  Status status = reader_.Connect(options_.url, timeout);
  if (status.ok()) status = writer_.Connect(options_.url, timeout);
  if (status.ok()) {
    auto id = reader_.Command({"CLIENT", "ID"});
    if (id.ok()) reader_id_ = id.value()->integer;
    if (!id.ok()) status = id.status().Prefixed("redis " + options_.url.Redacted() + ": CLIENT ID");
  }
  if (status.ok()) {
    const char* const sources[] = {redis_scripts::kPublishResults, redis_scripts::kRenewLeases, redis_scripts::kGiveBack,
                                   redis_scripts::kHeartbeat, redis_scripts::kDropConsumer,
                                   redis_scripts::kClaimLapsed, redis_scripts::kTakeLevels, redis_scripts::kPlanTake};
    static_assert(std::size(sources) == static_cast<size_t>(Script::kCount));
    std::vector<std::vector<std::string>> loads;
    for (const char* source : sources) loads.push_back({"SCRIPT", "LOAD", source});
    auto loaded = writer_.Pipeline(loads);
    if (!loaded.ok()) status = loaded.status();
    for (size_t i = 0; status.ok() && i < loaded.value().size(); ++i) {
      const redisReply* sha = loaded.value()[i].get();
      if (sha->type == REDIS_REPLY_ERROR) {
        status = Status(ErrorCode::kUnavailable, "redis " + options_.url.Redacted() + ": SCRIPT LOAD: " + Text(sha));
      }
      script_sha_[i] = Text(sha);
    }
  }
  if (!status.ok()) {
    reader_.Close();
    writer_.Close();
    return status;
  }
  writer_.SetTimeout(options_.heartbeat);
  reader_.SetTimeout(options_.heartbeat);
  // After Redis was away, live hosts renew their leases before this one
  // claims anything.
  claim_from_ = Clock::now() + (RedisWasCalm() ? std::chrono::milliseconds(0) : options_.lease + kMaxBackoff);
  grouped_.clear();  // a restarted server may have lost them
  marked_on_arrival_.clear();  // and the marks
  replies_due_ = 0;
  planned_.clear();
  plan_fresh_until_ = {};
  blocking_read_ = false;
  // Whatever this host read before may have changed hands while it was away.
  watch_ = Watch::kNone;
  fence_known_ = false;
  ++fence_epoch_;
  return {};
}

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

Status RedisTransport::Open(Poller& poller, Inbox& inbox) {
  inbox_ = &inbox;
  if (Status connected = Connect(kConnectTimeout); !connected.ok()) return connected;
  if (Status free = CheckNameIsFree(); !free.ok()) return free;
  spdlog::info("redis {}: taking tasks of {} plugin(s) as consumer '{}'", options_.url.Redacted(), plugins_.size(),
               consumer_);
  poller.Add([this] { return reader_.fd(); }, [this] { return static_cast<short>(replies_due_ > 0 ? ZMQ_POLLIN : 0); },
             [this](short) { OnReadable(); });
  poller.Add([this] { return writer_.fd(); },
             [this] { return static_cast<short>(writer_.later_due() > 0 ? ZMQ_POLLIN : 0); },
             [this](short) { TakePublished(); });
  poller.AddTimer([this] { return RetryIn(); });  // BeforeTasks does what is due
  SetReady();
  return {};
}

void RedisTransport::SetReady() {
  const bool ready = writer_.connected() && reader_.connected() && !refused_ && !displaced_;
  if (ready == ready_) return;
  ready_ = ready;
  inbox_->ReadyChanged(ready);
}

bool RedisTransport::EnsureConnected() {
  if (writer_.connected() && reader_.connected()) return true;
  if (Clock::now() < reconnect_at_) return false;
  if (Status status = Connect(options_.heartbeat); !status.ok()) {
    reconnect_at_ = Clock::now() + backoff_;
    backoff_ = std::min(backoff_ * 2, std::chrono::duration_cast<std::chrono::milliseconds>(kMaxBackoff));
    spdlog::warn("{}; retrying in {} ms", status.message(), backoff_.count());
    return false;
  }
  spdlog::info("redis {}: connected again; {} held result(s) to send, {} lease(s) to renew", options_.url.Redacted(),
               held_.size(), std::accumulate(leases_.begin(), leases_.end(), size_t{0},
                                             [](size_t n, const auto& stream) { return n + stream.second.size(); }));
  backoff_ = std::chrono::milliseconds(100);
  next_heartbeat_ = Clock::now();  // renew at once
  SetReady();
  return true;
}

void RedisTransport::Disconnected(const Status& why) {
  const bool was_connected = writer_.connected() || reader_.connected();
  // Results whose call got no reply are sent again: if they were written,
  // the script finds the entries acknowledged and writes nothing twice.
  for (auto call = publishing_.rbegin(); call != publishing_.rend(); ++call) {
    held_.insert(held_.begin(), std::make_move_iterator(call->results.begin()),
                 std::make_move_iterator(call->results.end()));
  }
  publishing_.clear();
  held_.insert(held_.begin(), std::make_move_iterator(awaiting_fence_.begin()),
               std::make_move_iterator(awaiting_fence_.end()));
  awaiting_fence_.clear();
  watch_ = Watch::kNone;
  reader_.Close();
  writer_.Close();
  replies_due_ = 0;
  planned_.clear();
  plan_fresh_until_ = {};
  blocking_read_ = false;
  reconnect_at_ = Clock::now() + backoff_;
  if (was_connected) spdlog::error("{}; running tasks go on, their results wait for Redis", why.message());
  SetReady();
}

std::vector<std::string> RedisTransport::Eval(Script script, const std::string& key,
                                              std::vector<std::string> args) const {
  args.insert(args.begin(), {"EVALSHA", script_sha_[static_cast<size_t>(script)], "1", key});
  return args;
}

void RedisTransport::BeforeTasks() {
  if (!EnsureConnected()) return;
  TakePublished();  // replies a command of the last turn read on the way
  if (!writer_.connected()) return;
  WriteHeld();
  const Clock::time_point now = Clock::now();
  if (writer_.connected() && now >= next_heartbeat_) {
    Heartbeat();
    RenewLeases();
    const std::map<std::string, std::chrono::milliseconds> oldest_waiting = ReadBacklog();
    if (writer_.connected()) TakeStarving(oldest_waiting);
    if (writer_.connected() && now >= next_consumer_sweep_) {
      DropIdleConsumers();
      next_consumer_sweep_ = now + kIdleConsumer / 4;
    }
    if (writer_.connected() && now >= next_unserved_read_) {
      ReadUnserved();
      next_unserved_read_ = now + kUnservedEvery;
    }
    next_heartbeat_ = now + options_.heartbeat;
  }
  if (writer_.connected() && now >= next_claim_ && now >= claim_from_) {
    // Lapsed entries left for want of room are taken as soon as room comes:
    // look again soon rather than a heartbeat later.
    next_claim_ = now + (ClaimLapsed() ? options_.heartbeat / 5 : options_.heartbeat);
  }
  if (!writer_.connected()) return;
  if (replies_due_ == 0) {
    StartRead();
  } else if (blocking_read_) {
    RereadIfRoomMoved();
  }
}

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

std::optional<std::chrono::milliseconds> RedisTransport::RetryIn() const {
  const Clock::time_point now = Clock::now();
  Clock::time_point due = std::min(next_heartbeat_, std::max(next_claim_, claim_from_));
  if (!held_.empty()) due = std::min(due, write_at_);
  if (writer_.later_ready()) due = now;  // read by a command on the way, not yet taken
  if (draining_streams_ && replies_due_ == 0) due = now;
  if (!writer_.connected()) due = reconnect_at_;
  return std::max(std::chrono::ceil<std::chrono::milliseconds>(due - now), std::chrono::milliseconds(0));
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
  if (replies_due_ == 0) read_epoch_ = fence_epoch_;
  Status sent = reader_.Send(args);
  if (sent.ok()) ++replies_due_;
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
    const redisReply* streams = reply.value().get();
    if (!planned_.empty() && streams->type == REDIS_REPLY_ARRAY) {
      ReadPlanned(streams);
    } else if (streams->type == REDIS_REPLY_ERROR) {
      // NOGROUP after a server restart: create the groups again next time.
      spdlog::warn("redis XREADGROUP: {}", Text(streams));
      grouped_.clear();
    } else if (streams->type == REDIS_REPLY_ARRAY && streams->elements > 0) {
      draining_streams_ = true;  // entries came: more may wait
      HandleEntries(streams, read_epoch_);
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

void RedisTransport::HandleEntries(const redisReply* streams, uint64_t epoch) {
  if (streams->type != REDIS_REPLY_ARRAY) return;  // nil: the block timed out
  for (size_t s = 0; s < streams->elements; ++s) {
    const redisReply* pair = streams->element[s];
    if (pair->type != REDIS_REPLY_ARRAY || pair->elements != 2) continue;
    const std::string stream = Text(pair->element[0]);
    const redisReply* entries = pair->element[1];
    MarkRunsOnArrival(stream);
    for (size_t e = 0; e < entries->elements; ++e) HandleEntry(stream, entries->element[e], 1, "", epoch);
  }
}

void RedisTransport::MarkRunsOnArrival(const std::string& stream) {
  // Tasks that run on arrival (run_inline) run one after another as a read
  // is delivered: one mark, written once per connection before the first of
  // them runs, says that every entry this consumer holds on the stream
  // started (kClaimLapsed counts a delivery for each), instead of one mark
  // per task. Others are marked as they start.
  if (!writer_.connected() || marked_on_arrival_.count(stream) || !inbox_->RunsOnArrival(PluginOf(stream))) return;
  if (Status sent = writer_.SendAndForget({"HSET", StartedKey(stream), "*" + consumer_, "1"}); !sent.ok()) {
    return Disconnected(sent);
  }
  marked_on_arrival_.insert(stream);
}

void RedisTransport::HandleEntry(const std::string& stream, const redisReply* entry, long long deliveries,
                                 const std::string& claimed_from, uint64_t epoch) {
  if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2) return;
  const std::string id = Text(entry->element[0]);
  leases_[stream].emplace(id, epoch);
  const redisReply* fields = entry->element[1];
  std::string body;
  bool has_body = false;
  for (size_t f = 0; fields && fields->type == REDIS_REPLY_ARRAY && f + 1 < fields->elements; f += 2) {
    const std::string field = Text(fields->element[f]);
    if (field == "m") {
      body = Text(fields->element[f + 1]);
      has_body = true;
    } else if (field == "d") {  // charged before a drain gave it back (kGiveBack)
      deliveries += std::max(0LL, std::atoll(Text(fields->element[f + 1]).c_str()));
    }
  }
  const std::string plugin = PluginOf(stream);
  if (!has_body) {
    spdlog::warn("redis {} entry {}: no field 'm'; answered bad_request", stream, id);
    return Answer(stream, id, kDefaultResults, std::nullopt,
                  EncodeResult(RejectedResult(std::nullopt, plugin,
                                              Status(ErrorCode::kBadRequest, "stream entry " + id + " has no field 'm'")),
                               options_.host));
  }
  const TaskFields peeked = PeekTaskFields(body);
  const std::string results = peeked.reply_to.value_or("").empty() ? kDefaultResults : *peeked.reply_to;
  const std::optional<std::string>& task_id = peeked.id;
  if (!claimed_from.empty()) {
    spdlog::warn("redis {} entry {}: task {}: the lease of consumer {} lapsed; taken here (delivery {}{})", stream, id,
                 task_id.value_or("(no id)"), claimed_from, deliveries,
                 deliveries > 1 ? "" : ", not counted: it had not started");
  }
  if (peeked.plugin && *peeked.plugin != plugin) {
    return Answer(stream, id, results, task_id,
                  EncodeResult(RejectedResult(task_id, *peeked.plugin,
                                              Status(ErrorCode::kBadRequest, "a task for plugin '" + *peeked.plugin +
                                                                                 "' in stream " + stream)),
                               options_.host));
  }
  if (deliveries > options_.max_deliveries) {
    spdlog::error("redis {} entry {}: task {}: {} host(s) lost it while running it (transport.max_deliveries: {}); "
                  "ends crashed",
                  stream, id, task_id.value_or("(no id)"), deliveries - 1, options_.max_deliveries);
    if (auto copied = writer_.Command({"XADD", "umi:dead:" + plugin, "*", "m", body}); !copied.ok()) {
      // Not answered: the entry stays pending here and is claimed again
      // once Redis takes writes.
      leases_[stream].erase(id);
      if (copied.status().code() == ErrorCode::kUnavailable) Disconnected(copied.status());
      return;
    }
    TaskResult result = EndedResult(task_id, plugin, TaskStatus::kCrashed,
                                    Status(ErrorCode::kMaxDeliveries,
                                           std::to_string(deliveries - 1) +
                                               " host(s) died running it (transport.max_deliveries)"));
    return Answer(stream, id, results, task_id, EncodeResult(result, options_.host));
  }
  ReplyRoute route;
  route.sink = this;
  route.address.reserve(5);
  route.address.push_back(stream);
  route.address.push_back(id);
  route.address.push_back(results);
  route.address.push_back(std::move(body));
  route.address.push_back(task_id.value_or(""));
  const std::string_view task = route.address[3];  // moving the route keeps its strings in place
  inbox_->Deliver(task, std::move(route));
}

void RedisTransport::Answer(const std::string& stream, const std::string& id, const std::string& reply_to,
                            const std::optional<std::string>& task_id, const std::string& body) {
  ReplyRoute route;
  route.sink = this;
  route.address = {stream, id, reply_to, "", task_id.value_or("")};
  Send(body, route);
}

void RedisTransport::WriteHeld() {
  // The turn's results leave without the loop waiting: their replies come
  // back through the poller (TakePublished), so the loop runs tasks while
  // Redis writes. Those the fence vouches for go in one transaction; the
  // others in one script call per task stream.
  constexpr size_t kBatch = 512;
  constexpr size_t kMaxCallsInFlight = 8;
  bool sent = false;
  if (watch_ == Watch::kNone && writer_.connected()) {
    if (Status armed = ArmFence(); !armed.ok()) return Disconnected(armed);
    sent = true;
  }
  while (!held_.empty() && writer_.connected() && Clock::now() >= write_at_ &&
         publishing_.size() < kMaxCallsInFlight) {
    std::vector<Held> fast;
    std::map<std::string, std::vector<Held>> by_stream;
    for (size_t i = std::min(held_.size(), kBatch); i > 0; --i) {
      Held& held = held_.front();
      if (watch_ == Watch::kArmed && Vouched(held)) {
        fast.push_back(std::move(held));
      } else if (watch_ == Watch::kArming && Vouched(held)) {
        awaiting_fence_.push_back(std::move(held));  // a round trip away from the cheap way
      } else {
        by_stream[held.stream].push_back(std::move(held));
      }
      held_.pop_front();
    }
    if (!fast.empty()) {
      if (Status appended = AppendTransaction(std::move(fast)); !appended.ok()) {
        for (auto& [unsent_stream, unsent] : by_stream) {
          held_.insert(held_.end(), std::make_move_iterator(unsent.begin()), std::make_move_iterator(unsent.end()));
        }
        return Disconnected(appended);
      }
    }
    for (auto& [stream, results] : by_stream) {
      std::optional<StreamId> first, last;
      for (const Held& held : results) {
        const std::optional<StreamId> id = StreamId::Parse(held.entry);
        if (!id) continue;
        if (!first || *id < *first) first = id;
        if (!last || *last < *id) last = id;
      }
      const auto leased = leases_.find(stream);
      const size_t holding = results.size() + (leased == leases_.end() ? 0 : leased->second.size());
      std::vector<std::string> args = {kGroup, consumer_, kDefaultResults, StartedKey(stream),
                                       first ? first->Text() : "0-0", last ? last->Text() : "0-0",
                                       std::to_string(holding)};
      args.reserve(7 + 3 * results.size());
      for (Held& held : results) {
        args.push_back(held.entry);
        args.push_back(held.reply_to);
        args.push_back(std::move(held.body));
      }
      std::vector<std::string> command = Eval(Script::kPublishResults, stream, std::move(args));
      const Status appended = writer_.AppendForLater(command);
      // hiredis copied the command: the bodies come back, for a retry.
      for (size_t k = 0; k < results.size(); ++k) results[k].body = std::move(command[4 + 7 + 3 * k + 2]);
      publishing_.push_back({Call::Kind::kScript, 0, std::move(results)});  // Disconnected puts it back in held_
      if (!appended.ok()) {
        for (auto& [unsent_stream, unsent] : by_stream) {
          if (unsent_stream > stream) held_.insert(held_.end(), std::make_move_iterator(unsent.begin()),
                                                   std::make_move_iterator(unsent.end()));
        }
        return Disconnected(appended);
      }
    }
    sent = true;
  }
  if (sent) {
    if (Status flushed = writer_.FlushWrites(); !flushed.ok()) Disconnected(flushed);
  }
}

bool RedisTransport::Vouched(const Held& held) const {
  if (!verified_reply_to_.count(held.reply_to)) return false;
  const auto leased = leases_.find(held.stream);
  if (leased == leases_.end()) return false;
  const auto entry = leased->second.find(held.entry);
  return entry != leased->second.end() && entry->second == fence_epoch_;
}

Status RedisTransport::ArmFence() {
  if (Status watched = writer_.AppendForLater({"WATCH", kFenceKey}); !watched.ok()) return watched;
  if (Status read = writer_.AppendForLater({"GET", kFenceKey}); !read.ok()) return read;
  publishing_.push_back({Call::Kind::kFence, 1, {}});
  watch_ = Watch::kArming;
  return {};
}

Status RedisTransport::AppendTransaction(std::vector<Held> results) {
  // If a claim moved the fence since the WATCH, EXEC does nothing and the
  // results go the checked way. Inside the transaction each XADD and XACK
  // runs whatever the others do, which is why only reply_to streams known
  // to take entries come here.
  size_t ignored = 0;
  Status appended = writer_.AppendForLater({"MULTI"});
  ++ignored;
  std::map<std::string, std::vector<std::string>> acks;  // stream -> entries
  for (Held& held : results) {
    if (!appended.ok()) break;
    std::vector<std::string> add = {"XADD", held.reply_to, "*", "m", std::move(held.body)};
    appended = writer_.AppendForLater(add);
    held.body = std::move(add[4]);  // hiredis copied it: kept for a retry
    ++ignored;
    acks[held.stream].push_back(held.entry);
  }
  for (auto& [stream, entries] : acks) {
    if (!appended.ok()) break;
    std::vector<std::string> ack = {"XACK", stream, kGroup};
    ack.insert(ack.end(), entries.begin(), entries.end());
    std::vector<std::string> unmark = {"HDEL", StartedKey(stream)};
    unmark.insert(unmark.end(), entries.begin(), entries.end());
    appended = writer_.AppendForLater(ack);
    if (appended.ok()) appended = writer_.AppendForLater(unmark);
    ignored += 2;
  }
  if (appended.ok()) appended = writer_.AppendForLater({"EXEC"});
  publishing_.push_back({Call::Kind::kTransaction, ignored, std::move(results)});  // Disconnected puts it back
  if (!appended.ok()) return appended;
  return ArmFence();
}

void RedisTransport::TakeFence(const redisReply* value) {
  held_.insert(held_.begin(), std::make_move_iterator(awaiting_fence_.begin()),
               std::make_move_iterator(awaiting_fence_.end()));
  awaiting_fence_.clear();
  std::optional<std::string> now;
  if (value->type == REDIS_REPLY_STRING) now = Text(value);
  if (value->type == REDIS_REPLY_ERROR) {  // not read: trust nothing read so far
    ++fence_epoch_;
    watch_ = Watch::kNone;
    return;
  }
  if (!fence_known_ || now != fence_) {
    ++fence_epoch_;
    fence_ = std::move(now);
    fence_known_ = true;
  }
  watch_ = Watch::kArmed;
}

bool RedisTransport::TakeTransaction(const redisReply* replies, std::vector<Held> results,
                                     std::deque<Held>& refused) {
  if (replies->type != REDIS_REPLY_ARRAY) {
    // nil: the watch saw a claim; an error: Redis refused the transaction
    // (EXECABORT: OOM, READONLY, NOPERM, ...). Nothing was written: the
    // results go again, the checked way, each with its own fate.
    if (replies->type == REDIS_REPLY_ERROR) {
      spdlog::debug("redis refused a transaction of {} result(s): {}; sent again by script", results.size(),
                    Text(replies));
    }
    ++fence_epoch_;
    refused.insert(refused.end(), std::make_move_iterator(results.begin()), std::make_move_iterator(results.end()));
    return false;
  }
  for (size_t k = 0; k < results.size(); ++k) {
    Held& held = results[k];
    const redisReply* added = k < replies->elements ? replies->element[k] : replies;
    if (added->type == REDIS_REPLY_ERROR) {
      // reply_to changed type since it took a result, and the entry was
      // acknowledged in the same transaction: the result goes where an
      // unusable reply_to's results go.
      ++report_.redirected_results;
      verified_reply_to_.erase(held.reply_to);
      spdlog::error("redis {} entry {}: task {}: reply_to {} cannot take a stream entry ({}); the result went to {}",
                    held.stream, held.entry, held.task_id, held.reply_to, Text(added), kDefaultResults);
      auto moved = writer_.Command(
          {"XADD", kDefaultResults, "*", "m", held.body, "reply_to", held.reply_to, "reason", Text(added)});
      if (!moved.ok()) {
        spdlog::error("redis: the result of task {} is lost: {}", held.task_id, moved.status().message());
      }
    }
    if (auto leased = leases_.find(held.stream); leased != leases_.end()) leased->second.erase(held.entry);
  }
  return true;
}

void RedisTransport::TakePublished() {
  // Inside a script call each result's fate is its own, so one refused
  // result (OOM, an ACL limit) never takes the others down.
  if (writer_.later_due() == 0) return;
  auto replies = writer_.TakeLater();
  if (!replies.ok()) return Disconnected(replies.status());
  std::deque<Held> refused;
  std::string refusal;
  size_t written = 0;  // calls Redis carried out
  for (const RedisReply& reply : replies.value()) {
    Call& call = publishing_.front();
    if (call.ignored_before > 0) {
      --call.ignored_before;
      continue;
    }
    Call taken = std::move(call);
    publishing_.pop_front();
    if (taken.kind == Call::Kind::kFence) {
      TakeFence(reply.get());
      continue;
    }
    if (taken.kind == Call::Kind::kTransaction) {
      if (TakeTransaction(reply.get(), std::move(taken.results), refused)) ++written;
      continue;
    }
    ++written;
    const redisReply* codes = reply.get();
    for (size_t k = 0; k < taken.results.size(); ++k) {
      Held& held = taken.results[k];
      const redisReply* code = codes->type == REDIS_REPLY_ARRAY && k < codes->elements ? codes->element[k] : codes;
      if (code->type != REDIS_REPLY_INTEGER) {
        if (refusal.empty()) refusal = Text(code);
        refused.push_back(std::move(held));
        continue;
      }
      if (code->integer == 0) {
        ++report_.stale_results;
        spdlog::warn("redis {} entry {}: task {}: result dropped, another host holds the entry now (this host's "
                     "lease lapsed)",
                     held.stream, held.entry, held.task_id);
      } else if (code->integer == 1) {
        if (verified_reply_to_.size() >= 4096) verified_reply_to_.clear();  // bounded; relearned
        verified_reply_to_.insert(held.reply_to);
      } else if (code->integer == 2) {
        ++report_.redirected_results;
        spdlog::error("redis {} entry {}: task {}: reply_to {} cannot take a stream entry; the result went to {}",
                      held.stream, held.entry, held.task_id, held.reply_to, kDefaultResults);
      }
      if (auto leased = leases_.find(held.stream); leased != leases_.end()) leased->second.erase(held.entry);
    }
  }
  if (refusal.empty()) {
    held_.insert(held_.begin(), std::make_move_iterator(refused.begin()), std::make_move_iterator(refused.end()));
    if (refused_ && written > 0) {
      spdlog::info("redis takes results again");
      refused_ = false;
      refusal_backoff_ = std::chrono::milliseconds(100);
      SetReady();
    }
    return;
  }
  held_.insert(held_.begin(), std::make_move_iterator(refused.begin()), std::make_move_iterator(refused.end()));
  // NOSCRIPT: SCRIPT FLUSH, or a server that lost them. READONLY: a master
  // demoted by a failover; connecting again asks Sentinel anew.
  if (refusal.find("NOSCRIPT") != std::string::npos || refusal.find("READONLY") != std::string::npos) {
    return Disconnected(Status(ErrorCode::kUnavailable, "redis: " + refusal));
  }
  if (!refused_) spdlog::error("redis refused {} result(s): {}; held, retrying with backoff", refused.size(), refusal);
  refused_ = true;
  write_at_ = Clock::now() + refusal_backoff_;
  refusal_backoff_ = std::min(refusal_backoff_ * 2, std::chrono::duration_cast<std::chrono::milliseconds>(kMaxBackoff));
  SetReady();
}

size_t RedisTransport::waiting() const {
  size_t publishing = 0;
  for (const Call& call : publishing_) publishing += call.results.size();
  return held_.size() + awaiting_fence_.size() + publishing;
}

void RedisTransport::Send(std::string_view body, const ReplyRoute& route) {
  // Written at the next BeforeTasks, with the other results of this turn.
  if (route.address.size() >= 5) {
    held_.push_back({route.address[0], route.address[1], route.address[2], std::string(body), route.address[4]});
  }
}

bool RedisTransport::GiveBack(const ReplyRoute& route) {
  // Back at the end of its stream for any host; if Redis is away, the entry
  // stays pending under this consumer and is claimed once its lease lapses.
  if (route.address.size() < 5) return false;
  const std::string& stream = route.address[0];
  const std::string& entry = route.address[1];
  if (auto leased = leases_.find(stream); leased != leases_.end()) leased->second.erase(entry);
  if (writer_.connected()) {
    auto given = writer_.Command(
        Eval(Script::kGiveBack, stream, {kGroup, consumer_, entry, route.address[3], StartedKey(stream)}));
    if (!given.ok() && given.status().code() == ErrorCode::kUnavailable) Disconnected(given.status());
  }
  return true;
}

void RedisTransport::Starting(const ReplyRoute& route) {
  // Written before the plugin runs, without waiting for the reply: what was
  // written reaches Redis even if the plugin then takes this process down.
  if (route.address.size() < 5 || !writer_.connected()) return;
  const std::string& stream = route.address[0];
  if (marked_on_arrival_.count(stream)) return;
  if (Status sent = writer_.AppendAndForget({"HSET", StartedKey(stream), route.address[1], consumer_}); !sent.ok()) {
    Disconnected(sent);
  }
}

void RedisTransport::FlushStarting() {
  if (!writer_.connected()) return;
  if (Status flushed = writer_.FlushWrites(); !flushed.ok()) Disconnected(flushed);
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
  std::set<std::pair<std::string_view, std::string_view>> publishing;
  for (const Call& call : publishing_) {
    for (const Held& held : call.results) publishing.emplace(held.stream, held.entry);
  }
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
                    holder + " (" + std::to_string(idle) + " ms idle)", fence_epoch_);
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
  report_.held_results = held_.size();
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
    HandleEntries(taken.value().get(), fence_epoch_);
    if (!writer_.connected()) return;
  }
}


size_t RedisTransport::Flush(std::chrono::steady_clock::time_point deadline) {
  while ((!held_.empty() || !publishing_.empty()) && Clock::now() < deadline) {
    if (!EnsureConnected()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    WriteHeld();
    if (!publishing_.empty()) {
      pollfd replies{writer_.fd(), POLLIN, 0};
      (void)poll(&replies, 1, 50);
      TakePublished();
    } else if (!held_.empty()) {
      std::this_thread::sleep_until(std::min(deadline, write_at_));
    }
  }
  if (writer_.connected() && !displaced_) {
    (void)writer_.Command({"DEL", HostKey(options_.host)});
    // Nothing of this consumer's is left pending once every result is out.
    for (const std::string& stream : waiting() == 0 ? marked_on_arrival_ : std::set<std::string>{}) {
      (void)writer_.Command({"HDEL", StartedKey(stream), "*" + consumer_});
    }
  }
  if (waiting() > 0) {
    spdlog::error("{} result(s) not written to Redis before the deadline; their tasks stay pending and will run again",
                  waiting());
  }
  return waiting();
}

}  // namespace umi
