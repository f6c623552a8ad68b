#include "transport/redis_transport.h"

#include <poll.h>

#include <spdlog/spdlog.h>

#include <msgpack.hpp>

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <random>
#include <thread>

#include "transport/poller.h"
#include "transport/protocol.h"
#include "transport/redis_flows.h"
#include "transport/redis_keys.h"
#include "transport/redis_scripts.h"

#include <umi/redis_streams.hpp>

namespace umi {

using redis_keys::HostKey;
using redis_keys::kDefaultResults;
using redis_keys::kGroup;
using redis_keys::kMaxBackoff;
using redis_keys::LevelStreams;
using redis_keys::PluginOf;
using redis_keys::StartedKey;
using redis_keys::StreamId;
using redis_keys::Text;

namespace {

// At start a slow server gets longer than a heartbeat to answer.
constexpr auto kConnectTimeout = std::chrono::milliseconds(2000);
// How often a host looks at the whole farm for tasks no live host serves.
constexpr auto kUnservedEvery = std::chrono::seconds(5);


// A random suffix that makes this process's consumer name its own.
std::string InstanceSuffix() {
  std::random_device device;
  char text[17];
  std::snprintf(text, sizeof(text), "%08x%08x", device(), device());
  return text;
}

}  // namespace

RedisTransport::RedisTransport(RedisTransportOptions options)
    : options_(std::move(options)),
      consumer_(options_.host + "@" + InstanceSuffix()),
      results_(writer_, consumer_, options_.host, leases_, report_) {
  results_.KeepFor(options_.keep_results);
}

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
                                   redis_scripts::kClaimLapsed, redis_scripts::kTakeLevels, redis_scripts::kPlanTake,
                                   redis_scripts::kOpenFlow, redis_scripts::kEndStep, redis_scripts::kCancelFlow};
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
  reply_is_lookup_.clear();
  awaiting_lookup_.clear();
  planned_.clear();
  plan_fresh_until_ = {};
  blocking_read_ = false;
  // A command that found the connection broken closed it without
  // Disconnected: calls whose replies died with it go again (by script).
  results_.Disconnected();
  const auto sha = [this](Script script) { return script_sha_[static_cast<size_t>(script)]; };
  results_.Connected({sha(Script::kPublishResults), sha(Script::kOpenFlow), sha(Script::kEndStep)});
  return {};
}

Status RedisTransport::Open(Poller& poller, Inbox& inbox) {
  inbox_ = &inbox;
  if (Status connected = Connect(kConnectTimeout); !connected.ok()) return connected;
  // A busy server (a restart's AOF load, a flood of scripts) gets the
  // start's longer bound for the name check too: a host that cannot start
  // is worse than one that waits a little.
  writer_.SetTimeout(kConnectTimeout);
  const Status free = CheckNameIsFree();
  if (free.ok()) ShareFingerprintKey();
  writer_.SetTimeout(options_.heartbeat);
  if (!free.ok()) return free;
  fingerprinting_ = true;  // tasks come from now on: the key stays what it is
  spdlog::info("redis {}: taking tasks of {} plugin(s) as consumer '{}'", options_.url.Redacted(), plugins_.size(),
               consumer_);
  poller.Add([this] { return reader_.fd(); }, [this] { return static_cast<short>(replies_due_ > 0 ? ZMQ_POLLIN : 0); },
             [this](short) { OnReadable(); });
  poller.Add([this] { return writer_.fd(); },
             [this] { return static_cast<short>(writer_.later_due() > 0 ? ZMQ_POLLIN : 0); },
             [this](short) { TakeResults(); });
  poller.AddTimer([this] { return RetryIn(); });  // BeforeTasks does what is due
  SetReady();
  return {};
}

void RedisTransport::SetReady() {
  const bool ready = writer_.connected() && reader_.connected() && !results_.refused() && !displaced_;
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
               results_.held(), std::accumulate(leases_.begin(), leases_.end(), size_t{0},
                                             [](size_t n, const auto& stream) { return n + stream.second.size(); }));
  backoff_ = std::chrono::milliseconds(100);
  ShareFingerprintKey();  // a Redis that lost its data gets the key back
  next_heartbeat_ = Clock::now();  // renew at once
  SetReady();
  return true;
}

void RedisTransport::Disconnected(const Status& why) {
  const bool was_connected = writer_.connected() || reader_.connected();
  // Results whose call got no reply are sent again: if they were written,
  // the script finds the entries acknowledged and writes nothing twice.
  results_.Disconnected();
  reader_.Close();
  writer_.Close();
  replies_due_ = 0;
  reply_is_lookup_.clear();
  awaiting_lookup_.clear();
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
  TakeResults();  // replies a command of the last turn read on the way
  if (!writer_.connected()) return;
  WriteResults();
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

std::optional<std::chrono::milliseconds> RedisTransport::RetryIn() const {
  const Clock::time_point now = Clock::now();
  Clock::time_point due = std::min(next_heartbeat_, std::max(next_claim_, claim_from_));
  if (const auto write_at = results_.due()) due = std::min(due, *write_at);
  if (writer_.later_ready()) due = now;  // read by a command on the way, not yet taken
  if (draining_streams_ && replies_due_ == 0) due = now;
  if (!writer_.connected()) due = reconnect_at_;
  return std::max(std::chrono::ceil<std::chrono::milliseconds>(due - now), std::chrono::milliseconds(0));
}

void RedisTransport::HandleEntries(const redisReply* streams, uint64_t epoch, const Answers& answered) {
  if (streams->type != REDIS_REPLY_ARRAY) return;  // nil: the block timed out
  for (size_t s = 0; s < streams->elements; ++s) {
    const redisReply* pair = streams->element[s];
    if (pair->type != REDIS_REPLY_ARRAY || pair->elements != 2) continue;
    const std::string stream = Text(pair->element[0]);
    const redisReply* entries = pair->element[1];
    MarkRunsOnArrival(stream);
    for (size_t e = 0; e < entries->elements; ++e) HandleEntry(stream, entries->element[e], 1, "", epoch, answered);
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
                                 const std::string& claimed_from, uint64_t epoch,
                                 const Answers& answered) {
  if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2) return;
  const std::string id = Text(entry->element[0]);
  leases_[stream].emplace(id, epoch);
  const redisReply* fields = entry->element[1];
  std::string body, upstream;
  bool has_body = false, has_upstream = false;
  for (size_t f = 0; fields && fields->type == REDIS_REPLY_ARRAY && f + 1 < fields->elements; f += 2) {
    const std::string field = Text(fields->element[f]);
    if (field == "m") {
      body = Text(fields->element[f + 1]);
      has_body = true;
    } else if (field == "u") {  // a flow's step, released with its upstream steps' outputs (kEndStep)
      upstream = Text(fields->element[f + 1]);
      has_upstream = true;
    } else if (field == "d") {  // charged before a drain gave it back (kGiveBack)
      deliveries += std::max(0LL, std::atoll(Text(fields->element[f + 1]).c_str()));
    }
  }
  const std::string plugin = PluginOf(stream);
  if (!has_body) {
    spdlog::warn("redis {} entry {}: no field 'm'; answered bad_request", stream, id);
    return Answer(stream, id, kDefaultResults, std::nullopt, "",
                  EncodeResult(RejectedResult(std::nullopt, plugin,
                                              Status(ErrorCode::kBadRequest, "stream entry " + id + " has no field 'm'")),
                               options_.host));
  }
  if (has_upstream) {
    try {
      body = redis_flows::WithUpstream(body, upstream);
    } catch (const std::exception& e) {  // left as it is: decoding it answers what is wrong
      spdlog::warn("redis {} entry {}: field 'u' not added to the task: {}", stream, id, e.what());
    }
  }
  const TaskFields peeked = PeekTaskFields(body);
  const std::string results = peeked.reply_to.value_or("").empty() ? kDefaultResults : *peeked.reply_to;
  const std::optional<std::string>& task_id = peeked.id;
  const std::string flow = peeked.step_of.value_or("");
  if (!claimed_from.empty()) {
    spdlog::warn("redis {} entry {}: task {}: the lease of consumer {} lapsed; taken here (delivery {}{})", stream, id,
                 task_id.value_or("(no id)"), claimed_from, deliveries,
                 deliveries > 1 ? "" : ", not counted: it had not started");
  }
  if (peeked.plugin && *peeked.plugin != plugin) {
    return Answer(stream, id, results, task_id, flow,
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
    return Answer(stream, id, results, task_id, flow, EncodeResult(result, options_.host), /*keep=*/true);
  }
  ReplyRoute route;
  route.sink = this;
  route.address.reserve(6);
  route.address.push_back(stream);
  route.address.push_back(id);
  route.address.push_back(results);
  route.address.push_back(std::move(body));
  route.address.push_back(task_id.value_or(""));
  route.address.push_back(flow);
  if (!answered.empty() && task_id) {
    if (const auto found = answered.find(*task_id); found != answered.end()) route.answered = found->second;
  }
  const std::string_view task = route.address[3];  // moving the route keeps its strings in place
  inbox_->Deliver(task, std::move(route));
}

void RedisTransport::Answer(const std::string& stream, const std::string& id, const std::string& reply_to,
                            const std::optional<std::string>& task_id, const std::string& flow,
                            const std::string& body, bool keep) {
  if (flow.empty()) {
    results_.Hold({.stream = stream, .entry = id, .reply_to = reply_to, .body = body,
                   .task_id = task_id.value_or(""), .keep = keep});
    return;
  }
  ReplyRoute route;
  route.sink = this;
  route.address = {stream, id, reply_to, "", task_id.value_or(""), flow};
  Send(body, route, nullptr);  // ends the step
}

size_t RedisTransport::waiting() const { return results_.waiting(); }

void RedisTransport::WriteResults() {
  if (Status written = results_.Write(); !written.ok()) Disconnected(written);
}

void RedisTransport::TakeResults() {
  const Status taken = results_.TakeReplies();
  if (!taken.ok()) return Disconnected(taken);
  SetReady();  // a refusal, or the end of one
}

void RedisTransport::Send(std::string_view body, const ReplyRoute& route, const TaskFingerprint* kept_as) {
  // Written at the next BeforeTasks, with the other results of this turn.
  if (route.address.size() < 5) return;
  const std::string& flow = route.address.size() > 5 ? route.address[5] : std::string();
  if (flow.empty()) {
    results_.Hold({.stream = route.address[0],
                   .entry = route.address[1],
                   .reply_to = route.address[2],
                   .body = std::string(body),
                   .task_id = route.address[4],
                   // An answer to an admitted task (or a retry of one), not a
                   // refusal: a refused duplicate must not replace what is kept.
                   .keep = kept_as != nullptr,
                   .fingerprint = SharedFingerprint(kept_as)});
    return;
  }
  results_.Hold({route.address[0], route.address[1], route.address[2], "", route.address[4],
                 RedisResults::Write::kEndStep, flow, redis_flows::EndStepArgs(flow, route.address[4], body)});
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

size_t RedisTransport::Flush(std::chrono::steady_clock::time_point deadline) {
  while (!results_.idle() && Clock::now() < deadline) {
    if (!EnsureConnected()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    WriteResults();
    if (results_.waiting() > results_.held()) {  // some on their way
      pollfd replies{writer_.fd(), POLLIN, 0};
      (void)poll(&replies, 1, 50);
      TakeResults();
    } else if (const auto write_at = results_.due()) {
      std::this_thread::sleep_until(std::min(deadline, *write_at));
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
