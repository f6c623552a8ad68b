#include "transport/redis_transport.h"

#include <spdlog/spdlog.h>

#include <msgpack.hpp>

#include <algorithm>
#include <charconv>
#include <thread>

#include "transport/poller.h"
#include "transport/protocol.h"

namespace umi {
namespace {

constexpr const char* kGroup = "umi";
constexpr const char* kDefaultResults = "umi:results";
constexpr auto kConnectTimeout = std::chrono::milliseconds(2000);
constexpr auto kMaxBackoff = std::chrono::milliseconds(5000);
constexpr int kClaimBatch = 64;

std::string TaskStream(const std::string& plugin) { return "umi:tasks:" + plugin; }
std::string PluginOf(const std::string& stream) { return stream.substr(std::string("umi:tasks:").size()); }
std::string HostKey(const std::string& host) { return "umi:hosts:" + host; }

std::string Text(const redisReply* reply) { return ReplyText(reply); }

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

// The top-level string fields of a msgpack map that the transport itself
// needs (reply_to, plugin), without decoding the task.
std::map<std::string, std::string> PeekStrings(const std::string& bytes) {
  std::map<std::string, std::string> fields;
  try {
    const msgpack::object_handle handle = msgpack::unpack(bytes.data(), bytes.size());
    const msgpack::object& root = handle.get();
    if (root.type != msgpack::type::MAP) return fields;
    for (uint32_t i = 0; i < root.via.map.size; ++i) {
      const auto& kv = root.via.map.ptr[i];
      if (kv.key.type != msgpack::type::STR || kv.val.type != msgpack::type::STR) continue;
      const std::string key(kv.key.via.str.ptr, kv.key.via.str.size);
      if (key == "reply_to" || key == "plugin" || key == "id") {
        fields[key] = std::string(kv.val.via.str.ptr, kv.val.via.str.size);
      }
    }
  } catch (const std::exception&) {
  }
  return fields;
}

}  // namespace

RedisTransport::RedisTransport(RedisTransportOptions options, std::function<std::vector<std::string>()> heartbeat_fields,
                               std::function<void(bool)> on_connected,
                               std::function<void(std::map<std::string, std::pair<int64_t, int64_t>>)> on_backlog)
    : options_(std::move(options)),
      heartbeat_fields_(std::move(heartbeat_fields)),
      on_connected_(std::move(on_connected)),
      on_backlog_(std::move(on_backlog)) {}

RedisTransport::~RedisTransport() = default;

void RedisTransport::SetPlugins(std::set<std::string> plugins) { plugins_ = std::move(plugins); }

Status RedisTransport::Open(Poller& poller, Inbox& inbox) {
  inbox_ = &inbox;
  if (Status connected = reader_.Connect(options_.url, kConnectTimeout); !connected.ok()) return connected;
  if (Status connected = writer_.Connect(options_.url, kConnectTimeout); !connected.ok()) return connected;
  if (auto id = reader_.Command({"CLIENT", "ID"}); id.ok()) reader_id_ = id.value()->integer;
  spdlog::info("redis {}: taking tasks of {} plugin(s) as consumer '{}'", options_.url.Redacted(), plugins_.size(),
               options_.host);
  poller.Add([this] { return reader_.fd(); }, [this] { return static_cast<short>(reading_ ? ZMQ_POLLIN : 0); },
             [this](short) { OnReadable(); });
  on_connected_(true);
  return {};
}

bool RedisTransport::EnsureConnected() {
  if (writer_.connected() && reader_.connected()) return true;
  if (Clock::now() < reconnect_at_) return false;
  Status status = reader_.Connect(options_.url, kConnectTimeout);
  if (status.ok()) status = writer_.Connect(options_.url, kConnectTimeout);
  if (status.ok()) {
    auto id = reader_.Command({"CLIENT", "ID"});
    if (id.ok()) reader_id_ = id.value()->integer;
  }
  if (!status.ok()) {
    reader_.Close();
    writer_.Close();
    reconnect_at_ = Clock::now() + backoff_;
    backoff_ = std::min(backoff_ * 2, kMaxBackoff);
    spdlog::warn("{}; retrying in {} ms", status.message(), backoff_.count());
    return false;
  }
  spdlog::info("redis {}: connected again; {} held result(s) to send", options_.url.Redacted(), held_.size());
  backoff_ = std::chrono::milliseconds(100);
  grouped_.clear();  // a restarted server may have lost them
  reading_ = false;
  on_connected_(true);
  return true;
}

void RedisTransport::Disconnected(const Status& why) {
  const bool was_connected = writer_.connected() || reader_.connected();
  reader_.Close();
  writer_.Close();
  reading_ = false;
  reconnect_at_ = Clock::now() + backoff_;
  if (was_connected) {
    spdlog::error("{}; running tasks go on, their results wait for Redis", why.message());
    on_connected_(false);
  }
}

void RedisTransport::AfterPoll() {
  if (!EnsureConnected()) return;
  WriteHeld();
  const Clock::time_point now = Clock::now();
  if (now >= next_heartbeat_) {
    Heartbeat();
    ReadBacklog();
    next_heartbeat_ = now + options_.heartbeat;
  }
  if (now >= next_claim_) {
    ClaimFromDeadHosts();
    next_claim_ = now + options_.heartbeat;
  }
  if (reading_) {
    RereadIfRoomMoved();
  } else {
    StartRead();
  }
}

void RedisTransport::RereadIfRoomMoved() {
  for (const std::string& plugin : plugins_) {
    if (read_streams_.count(TaskStream(plugin)) || inbox_->Room(plugin) == 0) continue;
    // The read returns nil at once; the next turn reads every stream with room.
    auto unblocked = writer_.Command({"CLIENT", "UNBLOCK", std::to_string(reader_id_)});
    if (!unblocked.ok() && unblocked.status().code() == ErrorCode::kUnavailable) Disconnected(unblocked.status());
    read_streams_.insert(TaskStream(plugin));  // once per read
    return;
  }
}

std::optional<std::chrono::milliseconds> RedisTransport::RetryIn() const {
  if (!held_.empty() && writer_.connected()) return std::chrono::milliseconds(0);
  Clock::time_point due = std::min(next_heartbeat_, next_claim_);
  if (!writer_.connected()) due = reconnect_at_;
  return std::max(std::chrono::ceil<std::chrono::milliseconds>(due - Clock::now()), std::chrono::milliseconds(0));
}

void RedisTransport::StartRead() {
  if (!writer_.connected()) return;
  std::vector<std::string> streams;
  size_t count = 0;
  for (const std::string& plugin : plugins_) {
    const size_t room = inbox_->Room(plugin);
    if (room == 0) continue;
    const size_t ahead = options_.prefetch ? *options_.prefetch : inbox_->ReadAhead(plugin, room);
    const std::string stream = TaskStream(plugin);
    if (!grouped_.count(stream)) {
      auto created = writer_.Command({"XGROUP", "CREATE", stream, kGroup, "0", "MKSTREAM"});
      if (!created.ok() && created.status().code() == ErrorCode::kUnavailable) return Disconnected(created.status());
      grouped_.insert(stream);  // created, or BUSYGROUP: it exists
      next_heartbeat_ = Clock::now();  // the next turn reports its backlog
      if (recovered_.insert(stream).second) RecoverEarlierRun(stream);
      if (!writer_.connected()) return;
    }
    streams.push_back(stream);
    count = std::max(count, room + ahead);
  }
  if (streams.empty()) return;
  std::vector<std::string> args = {"XREADGROUP", "GROUP", kGroup, options_.host, "COUNT",
                                   std::to_string(count), "BLOCK",
                                   std::to_string(options_.block.count()), "STREAMS"};
  args.insert(args.end(), streams.begin(), streams.end());
  args.insert(args.end(), streams.size(), ">");
  if (Status sent = reader_.Send(args); !sent.ok()) return Disconnected(sent);
  reading_ = true;
  read_streams_ = std::set<std::string>(streams.begin(), streams.end());
}

void RedisTransport::OnReadable() {
  StatusOr<RedisReply> reply = reader_.ReadReady();
  if (!reply.ok()) return Disconnected(reply.status());
  if (!reply.value()) return;  // not complete yet
  reading_ = false;
  const redisReply* streams = reply.value().get();
  if (streams->type == REDIS_REPLY_ERROR) {
    // NOGROUP after a server restart: create the groups again next time.
    spdlog::warn("redis XREADGROUP: {}", Text(streams));
    grouped_.clear();
    return;
  }
  HandleEntries(streams);
}

void RedisTransport::HandleEntries(const redisReply* streams) {
  if (streams->type != REDIS_REPLY_ARRAY) return;  // nil: the block timed out
  for (size_t s = 0; s < streams->elements; ++s) {
    const redisReply* pair = streams->element[s];
    if (pair->type != REDIS_REPLY_ARRAY || pair->elements != 2) continue;
    const std::string stream = Text(pair->element[0]);
    const redisReply* entries = pair->element[1];
    for (size_t e = 0; e < entries->elements; ++e) HandleEntry(stream, entries->element[e], 1);
  }
}

void RedisTransport::HandleEntry(const std::string& stream, const redisReply* entry, long long deliveries) {
  if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2) return;
  const std::string id = Text(entry->element[0]);
  const redisReply* fields = entry->element[1];
  std::string body;
  bool has_body = false;
  for (size_t f = 0; fields && fields->type == REDIS_REPLY_ARRAY && f + 1 < fields->elements; f += 2) {
    if (Text(fields->element[f]) == "m") {
      body = Text(fields->element[f + 1]);
      has_body = true;
    }
  }
  const std::string plugin = PluginOf(stream);
  if (!has_body) {
    spdlog::warn("redis {} entry {}: no field 'm'; answered bad_request", stream, id);
    return Answer(stream, id, kDefaultResults,
                  EncodeResult(RejectedResult(std::nullopt, plugin,
                                              Status(ErrorCode::kBadRequest, "stream entry " + id + " has no field 'm'")),
                               options_.host));
  }
  const std::map<std::string, std::string> peeked = PeekStrings(body);
  const auto reply_to = peeked.find("reply_to");
  const std::string results = reply_to == peeked.end() || reply_to->second.empty() ? kDefaultResults : reply_to->second;
  const auto id_field = peeked.find("id");
  const std::optional<std::string> task_id =
      id_field == peeked.end() ? std::nullopt : std::optional<std::string>(id_field->second);
  if (const auto named = peeked.find("plugin"); named != peeked.end() && named->second != plugin) {
    return Answer(stream, id, results,
                  EncodeResult(RejectedResult(task_id, named->second,
                                              Status(ErrorCode::kBadRequest, "a task for plugin '" + named->second +
                                                                                 "' in stream " + stream)),
                               options_.host));
  }
  if (deliveries > options_.max_deliveries) {
    spdlog::error("redis {} entry {}: {} host(s) died running it (transport.max_deliveries: {}); ends crashed",
                  stream, id, deliveries - 1, options_.max_deliveries);
    if (auto copied = writer_.Command({"XADD", "umi:dead:" + plugin, "*", "m", body}); !copied.ok()) {
      return Disconnected(copied.status());
    }
    TaskResult result = EndedResult(task_id, plugin, TaskStatus::kCrashed,
                                    Status(ErrorCode::kMaxDeliveries,
                                           std::to_string(deliveries - 1) +
                                               " host(s) died running it (transport.max_deliveries)"));
    return Answer(stream, id, results, EncodeResult(result, options_.host));
  }
  ReplyRoute route;
  route.sink = this;
  route.address = {stream, id, results, body};
  inbox_->Deliver(body, std::move(route));
}

void RedisTransport::Answer(const std::string& stream, const std::string& id, const std::string& reply_to,
                            const std::string& body) {
  ReplyRoute route;
  route.sink = this;
  route.address = {stream, id, reply_to};
  Send(body, route);
}

void RedisTransport::WriteHeld() {
  // The results of this turn in one transaction, one round trip: each
  // result and its acknowledgement are written together or not at all, and
  // a stream's acknowledgements go in one XACK.
  constexpr size_t kBatch = 512;
  while (!held_.empty() && writer_.connected()) {
    const size_t count = std::min(held_.size(), kBatch);
    std::vector<std::vector<std::string>> commands;
    commands.reserve(count + 3);
    commands.push_back({"MULTI"});
    std::map<std::string, std::vector<std::string>> acks;  // stream -> XACK arguments
    for (size_t i = 0; i < count; ++i) {
      const Held& held = held_[i];
      commands.push_back({"XADD", held.reply_to, "*", "m", held.body});
      std::vector<std::string>& ack = acks[held.stream];
      if (ack.empty()) ack = {"XACK", held.stream, kGroup};
      ack.push_back(held.entry);
    }
    for (auto& [stream, ack] : acks) commands.push_back(std::move(ack));
    commands.push_back({"EXEC"});
    auto replies = writer_.Pipeline(commands);
    if (!replies.ok()) return Disconnected(replies.status());  // all stay held: a transaction is all or nothing
    const redisReply* exec = replies.value().back().get();
    for (size_t i = 0; i < count; ++i) {
      const redisReply* added = exec->type == REDIS_REPLY_ARRAY && i < exec->elements ? exec->element[i] : exec;
      if (added->type == REDIS_REPLY_ERROR || exec->type != REDIS_REPLY_ARRAY) {
        spdlog::error("redis result for entry {} of {} to {}: {}", held_[i].entry, held_[i].stream, held_[i].reply_to,
                      Text(added));
      }
    }
    held_.erase(held_.begin(), held_.begin() + static_cast<long>(count));
  }
}

void RedisTransport::Send(std::string_view body, const ReplyRoute& route) {
  // Written after this turn's handlers (AfterPoll), with the turn's other results.
  if (route.address.size() >= 3) {
    held_.push_back({route.address[0], route.address[1], route.address[2], std::string(body)});
  }
}

bool RedisTransport::GiveBack(const ReplyRoute& route) {
  // Back at the end of its stream for any host; if Redis is away, the entry
  // stays pending under this host and is claimed once its heartbeat expires.
  if (writer_.connected() && route.address.size() >= 4) {
    auto replies = writer_.Pipeline({{"MULTI"},
                                     {"XADD", route.address[0], "*", "m", route.address[3]},
                                     {"XACK", route.address[0], kGroup, route.address[1]},
                                     {"EXEC"}});
    if (!replies.ok()) Disconnected(replies.status());
  }
  return true;
}

void RedisTransport::Heartbeat() {
  std::string plugins;
  for (const std::string& plugin : plugins_) plugins += (plugins.empty() ? "" : ",") + plugin;
  std::vector<std::string> hset = {"HSET", HostKey(options_.host), "plugins", plugins};
  for (std::string& field : heartbeat_fields_()) hset.push_back(std::move(field));
  auto replies = writer_.Pipeline(
      {hset, {"PEXPIRE", HostKey(options_.host), std::to_string(3 * options_.heartbeat.count())}});
  if (!replies.ok()) Disconnected(replies.status());
}

void RedisTransport::ReadBacklog() {
  std::map<std::string, std::pair<int64_t, int64_t>> backlog;
  for (const std::string& plugin : plugins_) {
    const std::string stream = TaskStream(plugin);
    if (!grouped_.count(stream) || !writer_.connected()) continue;
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
      if (name == kGroup) backlog[plugin] = {waiting, pending};
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
  on_backlog_(std::move(backlog));
}

void RedisTransport::RecoverEarlierRun(const std::string& stream) {
  // Before this process reads a stream for the first time, whatever is
  // pending under its name there was taken by an earlier run with the same
  // name (a restart quicker than the heartbeat's expiry): nobody else would
  // claim it while this run's heartbeat lives, so it runs here.
  std::string after = "-";
  for (std::optional<size_t> seen; (seen = ClaimFrom(stream, options_.host, "0", after)) && *seen == kClaimBatch;) {
  }
}

void RedisTransport::ClaimFromDeadHosts() {
  // A host is dead when its heartbeat key expired. Each consumer of the
  // group is looked at on its own, so a live host's long tasks never hide a
  // dead host's entries. min-idle (two heartbeats) only makes the claim
  // exclusive: the first XCLAIM resets the entry's idle time, so a second
  // host's claim finds it fresh and takes nothing. A dead consumer with
  // nothing pending is removed from the group (pods come and go by name).
  const std::string dead_after = std::to_string(2 * options_.heartbeat.count());
  std::map<std::string, bool> alive;
  for (const std::string& plugin : plugins_) {
    const std::string stream = TaskStream(plugin);
    if (!grouped_.count(stream) || inbox_->Room(plugin) == 0) continue;
    auto consumers = writer_.Command({"XINFO", "CONSUMERS", stream, kGroup});
    if (!consumers.ok()) {
      if (consumers.status().code() == ErrorCode::kUnavailable) return Disconnected(consumers.status());
      continue;
    }
    const redisReply* list = consumers.value().get();
    for (size_t c = 0; list->type == REDIS_REPLY_ARRAY && c < list->elements; ++c) {
      const redisReply* fields = list->element[c];
      std::string consumer;
      long long pending = 0;
      for (size_t f = 0; fields->type == REDIS_REPLY_ARRAY && f + 1 < fields->elements; f += 2) {
        const std::string field = Text(fields->element[f]);
        if (field == "name") consumer = Text(fields->element[f + 1]);
        if (field == "pending") pending = fields->element[f + 1]->integer;
      }
      if (consumer.empty() || consumer == options_.host) continue;  // ours: running here
      if (!alive.count(consumer)) {
        auto exists = writer_.Command({"EXISTS", HostKey(consumer)});
        if (!exists.ok()) return Disconnected(exists.status());
        alive[consumer] = exists.value()->integer == 1;
      }
      if (alive[consumer]) continue;
      if (pending == 0) {
        auto removed = writer_.Command({"XGROUP", "DELCONSUMER", stream, kGroup, consumer});
        if (!removed.ok() && removed.status().code() == ErrorCode::kUnavailable) return Disconnected(removed.status());
        continue;
      }
      std::string after = "-";
      if (!ClaimFrom(stream, consumer, dead_after, after)) return;  // a batch per turn
    }
  }
}

std::optional<size_t> RedisTransport::ClaimFrom(const std::string& stream, const std::string& consumer,
                                                const std::string& min_idle, std::string& after) {
  auto pending = writer_.Command(
      {"XPENDING", stream, kGroup, "IDLE", min_idle, after, "+", std::to_string(kClaimBatch), consumer});
  if (!pending.ok()) {
    if (pending.status().code() != ErrorCode::kUnavailable) return 0;
    Disconnected(pending.status());
    return std::nullopt;
  }
  const redisReply* list = pending.value().get();
  const size_t seen = list->type == REDIS_REPLY_ARRAY ? list->elements : 0;
  for (size_t i = 0; i < seen; ++i) {
    const redisReply* item = list->element[i];
    if (item->type != REDIS_REPLY_ARRAY || item->elements < 4) continue;
    const std::string id = Text(item->element[0]);
    const long long deliveries = item->element[3]->integer;
    after = "(" + id;
    auto claimed = writer_.Command({"XCLAIM", stream, kGroup, options_.host, min_idle, id});
    if (!claimed.ok()) {
      Disconnected(claimed.status());
      return std::nullopt;
    }
    const redisReply* entries = claimed.value().get();
    for (size_t e = 0; entries->type == REDIS_REPLY_ARRAY && e < entries->elements; ++e) {
      if (consumer == options_.host) {
        spdlog::warn("redis {} entry {}: taken by an earlier run of this host; running it again (delivery {})",
                     stream, id, deliveries + 1);
      } else {
        spdlog::warn("redis {} entry {}: its host {} is gone; running it here (delivery {})", stream, id, consumer,
                     deliveries + 1);
      }
      HandleEntry(stream, entries->element[e], deliveries + 1);
    }
  }
  return seen;
}

size_t RedisTransport::Flush(std::chrono::steady_clock::time_point deadline) {
  while (!held_.empty() && Clock::now() < deadline) {
    if (!EnsureConnected()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    WriteHeld();
  }
  if (writer_.connected()) (void)writer_.Command({"DEL", HostKey(options_.host)});  // gone: claim what is left now
  if (!held_.empty()) {
    spdlog::error("{} result(s) not written to Redis before the deadline; their tasks stay pending and will run again",
                  held_.size());
  }
  return held_.size();
}

}  // namespace umi
