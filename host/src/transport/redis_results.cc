#include "transport/redis_results.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "transport/protocol.h"
#include "transport/redis_flows.h"
#include "transport/redis_keys.h"

namespace umi {

using redis_keys::kDefaultResults;
using redis_keys::kGroup;
using redis_keys::StartedKey;
using redis_keys::StreamId;
using redis_keys::Text;

void RedisResults::Connected(Scripts scripts) {
  scripts_ = std::move(scripts);
  watch_ = Watch::kNone;
  fence_known_ = false;
  ++fence_epoch_;
}

void RedisResults::Disconnected() {
  for (auto call = calls_.rbegin(); call != calls_.rend(); ++call) {
    held_.insert(held_.begin(), std::make_move_iterator(call->results.begin()),
                 std::make_move_iterator(call->results.end()));
  }
  calls_.clear();
  held_.insert(held_.begin(), std::make_move_iterator(awaiting_fence_.begin()),
               std::make_move_iterator(awaiting_fence_.end()));
  awaiting_fence_.clear();
  watch_ = Watch::kNone;
}

size_t RedisResults::waiting() const {
  size_t on_their_way = 0;
  for (const Call& call : calls_) on_their_way += call.results.size();
  return held_.size() + awaiting_fence_.size() + on_their_way;
}

std::optional<RedisResults::Clock::time_point> RedisResults::due() const {
  if (held_.empty()) return std::nullopt;
  return write_at_;
}

std::set<std::pair<std::string, std::string>> RedisResults::InFlight() const {
  std::set<std::pair<std::string, std::string>> entries;
  for (const Call& call : calls_) {
    for (const Result& result : call.results) entries.emplace(result.stream, result.entry);
  }
  return entries;
}

Status RedisResults::Write() {
  // The turn's results leave without the loop waiting: their replies come
  // back through the poller (TakeReplies), so the loop runs tasks while
  // Redis writes. Those the fence vouches for go in one transaction; the
  // others in one script call per task stream.
  constexpr size_t kBatch = 512;
  constexpr size_t kMaxCallsInFlight = 8;
  bool sent = false;
  if (watch_ == Watch::kNone) {
    if (Status armed = ArmFence(); !armed.ok()) return armed;
    sent = true;
  }
  while (!held_.empty() && Clock::now() >= write_at_ && calls_.size() < kMaxCallsInFlight) {
    std::vector<Result> fast, flows;
    std::map<std::string, std::vector<Result>> by_stream;
    const size_t batch = std::min(held_.size(), kBatch);
    fast.reserve(batch);  // Results hold several strings: growing by moves cost more than the rest of Write
    for (size_t i = batch; i > 0; --i) {
      Result& result = held_.front();
      if (result.write != Write::kResult) {
        flows.push_back(std::move(result));
      } else if (watch_ == Watch::kArmed && Vouched(result)) {
        fast.push_back(std::move(result));
      } else if (watch_ == Watch::kArming && Vouched(result)) {
        awaiting_fence_.push_back(std::move(result));  // a round trip away from the cheap way
      } else {
        by_stream[result.stream].push_back(std::move(result));
      }
      held_.pop_front();
    }
    Status appended;
    if (!fast.empty()) appended = AppendTransaction(std::move(fast));
    for (Result& flow : flows) {
      if (appended.ok()) {
        appended = AppendFlowWrite(std::move(flow));
      } else {
        held_.push_back(std::move(flow));
      }
    }
    for (auto& [stream, results] : by_stream) {
      if (appended.ok()) {
        appended = AppendScript(stream, std::move(results));
      } else {  // not sent: held again, and Disconnected puts the calls back before them
        held_.insert(held_.end(), std::make_move_iterator(results.begin()), std::make_move_iterator(results.end()));
      }
    }
    if (!appended.ok()) return appended;
    sent = true;
  }
  return sent ? writer_.FlushWrites() : Status();
}

bool RedisResults::Vouched(const Result& result) const {
  if (!verified_reply_to_.count(result.reply_to)) return false;
  const auto leased = leases_.find(result.stream);
  if (leased == leases_.end()) return false;
  const auto entry = leased->second.find(result.entry);
  return entry != leased->second.end() && entry->second == fence_epoch_;
}

Status RedisResults::ArmFence() {
  if (Status watched = writer_.AppendForLater({"WATCH", redis_keys::kFence}); !watched.ok()) return watched;
  if (Status read = writer_.AppendForLater({"GET", redis_keys::kFence}); !read.ok()) return read;
  calls_.push_back({Call::Kind::kFence, 1, {}});
  watch_ = Watch::kArming;
  return {};
}

Status RedisResults::AppendTransaction(std::vector<Result> results) {
  // If a claim moved the fence since the WATCH, EXEC does nothing and the
  // results go by script. Inside the transaction each XADD and XACK runs
  // whatever the others do, which is why only reply_to streams known to
  // take entries come here.
  size_t ignored = 0;
  Status appended = writer_.AppendForLater({"MULTI"});
  ++ignored;
  std::map<std::string, std::vector<std::string>> acks;  // stream -> entries
  for (Result& result : results) {
    if (!appended.ok()) break;
    std::vector<std::string> add = {"XADD", result.reply_to, "*", "m", std::move(result.body)};
    appended = writer_.AppendForLater(add);
    result.body = std::move(add[4]);  // hiredis copied it: kept for a retry
    ++ignored;
    acks[result.stream].push_back(result.entry);
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
  // Each result kept for lookups by id, in the same transaction: after the
  // XADDs, so the replies the caller reads by position stay where they were.
  for (const Result& result : results) {
    if (!appended.ok() || keep_for_.count() <= 0 || result.task_id.empty() || !result.keep) continue;
    appended = writer_.AppendForLater({"SET", RedisResultKey(result.task_id), Kept(result), "PX",
                                       std::to_string(keep_for_.count())});
    ++ignored;
  }
  if (appended.ok()) appended = writer_.AppendForLater({"EXEC"});
  calls_.push_back({Call::Kind::kTransaction, ignored, std::move(results)});  // Disconnected puts it back
  if (!appended.ok()) return appended;
  return ArmFence();
}

Status RedisResults::AppendScript(const std::string& stream, std::vector<Result> results) {
  std::optional<StreamId> first, last;
  for (const Result& result : results) {
    const std::optional<StreamId> id = StreamId::Parse(result.entry);
    if (!id) continue;
    if (!first || *id < *first) first = id;
    if (!last || *last < *id) last = id;
  }
  const auto leased = leases_.find(stream);
  const size_t holding = results.size() + (leased == leases_.end() ? 0 : leased->second.size());
  std::vector<std::string> command = {"EVALSHA", scripts_.publish, "1", stream, kGroup, consumer_, kDefaultResults,
                                      StartedKey(stream), first ? first->Text() : "0-0",
                                      last ? last->Text() : "0-0", std::to_string(holding),
                                      std::to_string(keep_for_.count())};
  constexpr size_t kFixed = 12, kPerResult = 5;
  command.reserve(kFixed + kPerResult * results.size());
  for (Result& result : results) {
    std::string kept = result.fingerprint && keep_for_.count() > 0 ? Kept(result) : std::string();
    command.push_back(result.entry);
    command.push_back(result.reply_to);
    command.push_back(std::move(result.body));
    command.push_back(result.task_id.empty() || !result.keep ? std::string() : RedisResultKey(result.task_id));
    command.push_back(std::move(kept));
  }
  const Status appended = writer_.AppendForLater(command);
  // hiredis copied the command: the bodies come back, for a retry.
  for (size_t k = 0; k < results.size(); ++k) results[k].body = std::move(command[kFixed + kPerResult * k + 2]);
  calls_.push_back({Call::Kind::kScript, 0, std::move(results)});  // Disconnected puts it back in held_
  return appended;
}

std::string RedisResults::Kept(const Result& result) {
  return result.fingerprint ? WithFingerprint(result.body, *result.fingerprint) : result.body;
}

Status RedisResults::AppendFlowWrite(Result result) {
  const bool open = result.write == Write::kOpenFlow;
  std::vector<std::string> command = {"EVALSHA", open ? scripts_.open_flow : scripts_.end_step, "2", result.stream,
                                      redis_flows::FlowKey(result.flow), kGroup, consumer_, result.entry,
                                      StartedKey(result.stream)};
  command.insert(command.end(), result.args.begin(), result.args.end());
  if (!open) {  // the step is looked up by id as any task; the flow's result may be written here
    const bool keep = keep_for_.count() > 0;
    command.insert(command.end(), {keep ? RedisResultKey(result.task_id) : std::string(),
                                   std::to_string(keep_for_.count()), host_,
                                   keep ? RedisResultKey(result.flow) : std::string(), kDefaultResults});
  }
  const Status appended = writer_.AppendForLater(command);
  calls_.push_back({Call::Kind::kFlow, 0, {}});
  calls_.back().results.push_back(std::move(result));  // Disconnected puts it back in held_
  return appended;
}

std::string RedisResults::TakeFlowWrite(const redisReply* reply, Result result, std::deque<Result>& refused) {
  if (reply->type == REDIS_REPLY_ERROR) {
    std::string refusal = Text(reply);
    refused.push_back(std::move(result));
    return refusal;
  }
  const long long code = reply->type == REDIS_REPLY_INTEGER ? reply->integer : -1;
  if (code == 0) {
    ++report_.stale_results;
    spdlog::warn("redis {} entry {}: flow {}: write dropped, another host holds the entry now (this host's lease "
                 "lapsed)",
                 result.stream, result.entry, result.flow);
  } else if (code == 2 && result.write == Write::kOpenFlow) {
    spdlog::info("redis {} entry {}: flow {} is running in the farm already; this copy is answered duplicate_id",
                 result.stream, result.entry, result.flow);
    const Status why(ErrorCode::kDuplicateId, "a flow with id '" + result.flow + "' is already running in the farm");
    held_.push_back({.stream = result.stream,
                     .entry = result.entry,
                     .reply_to = result.reply_to,
                     .body = EncodeResult(RejectedResult(result.flow, "flow", why), host_),
                     .task_id = result.flow});
    return {};
  } else if (code == 2) {
    ++report_.redirected_results;
    spdlog::error("redis {} entry {}: flow {}: reply_to {} cannot take a stream entry; the result went to {}",
                  result.stream, result.entry, result.flow, result.reply_to, kDefaultResults);
  }
  Forget(result);
  return {};
}

void RedisResults::TakeFence(const redisReply* value) {
  held_.insert(held_.begin(), std::make_move_iterator(awaiting_fence_.begin()),
               std::make_move_iterator(awaiting_fence_.end()));
  awaiting_fence_.clear();
  if (value->type == REDIS_REPLY_ERROR) {  // not read: trust nothing read so far
    ++fence_epoch_;
    watch_ = Watch::kNone;
    return;
  }
  std::optional<std::string> now;
  if (value->type == REDIS_REPLY_STRING) now = Text(value);
  if (!fence_known_ || now != fence_) {
    ++fence_epoch_;
    fence_ = std::move(now);
    fence_known_ = true;
  }
  watch_ = Watch::kArmed;
}

void RedisResults::Forget(const Result& result) {
  if (auto leased = leases_.find(result.stream); leased != leases_.end()) leased->second.erase(result.entry);
}

bool RedisResults::TakeTransaction(const redisReply* replies, std::vector<Result> results,
                                   std::deque<Result>& refused) {
  if (replies->type != REDIS_REPLY_ARRAY) {
    // nil: the watch saw a claim; an error: Redis refused the transaction
    // (EXECABORT: OOM, READONLY, NOPERM, ...). Nothing was written: the
    // results go again by script, each with its own fate.
    if (replies->type == REDIS_REPLY_ERROR) {
      spdlog::debug("redis refused a transaction of {} result(s): {}; sent again by script", results.size(),
                    Text(replies));
    }
    ++fence_epoch_;
    refused.insert(refused.end(), std::make_move_iterator(results.begin()), std::make_move_iterator(results.end()));
    return false;
  }
  for (size_t k = 0; k < results.size(); ++k) {
    const Result& result = results[k];
    const redisReply* added = k < replies->elements ? replies->element[k] : replies;
    if (added->type == REDIS_REPLY_ERROR) {
      // reply_to changed type since it took a result, and the entry was
      // acknowledged in the same transaction: the result goes where an
      // unusable reply_to's results go.
      ++report_.redirected_results;
      verified_reply_to_.erase(result.reply_to);
      spdlog::error("redis {} entry {}: task {}: reply_to {} cannot take a stream entry ({}); the result went to {}",
                    result.stream, result.entry, result.task_id, result.reply_to, Text(added), kDefaultResults);
      auto moved = writer_.Command(
          {"XADD", kDefaultResults, "*", "m", result.body, "reply_to", result.reply_to, "reason", Text(added)});
      if (!moved.ok()) {
        spdlog::error("redis: the result of task {} is lost: {}", result.task_id, moved.status().message());
      }
    }
    Forget(result);
  }
  return true;
}

Status RedisResults::TakeReplies() {
  // Inside a script call each result's fate is its own, so one refused
  // result (OOM, an ACL limit) never takes the others down.
  if (writer_.later_due() == 0) return {};
  auto replies = writer_.TakeLater();
  if (!replies.ok()) return replies.status();
  std::deque<Result> refused;
  std::string refusal;
  size_t written = 0;  // calls Redis carried out
  for (const RedisReply& reply : replies.value()) {
    Call& call = calls_.front();
    if (call.ignored_before > 0) {
      --call.ignored_before;
      continue;
    }
    Call taken = std::move(call);
    calls_.pop_front();
    if (taken.kind == Call::Kind::kFence) {
      TakeFence(reply.get());
      continue;
    }
    if (taken.kind == Call::Kind::kTransaction) {
      if (TakeTransaction(reply.get(), std::move(taken.results), refused)) ++written;
      continue;
    }
    if (taken.kind == Call::Kind::kFlow) {
      std::string flow_refusal = TakeFlowWrite(reply.get(), std::move(taken.results.front()), refused);
      if (flow_refusal.empty()) ++written;
      if (refusal.empty()) refusal = std::move(flow_refusal);
      continue;
    }
    ++written;
    const redisReply* codes = reply.get();
    for (size_t k = 0; k < taken.results.size(); ++k) {
      Result& result = taken.results[k];
      const redisReply* code = codes->type == REDIS_REPLY_ARRAY && k < codes->elements ? codes->element[k] : codes;
      if (code->type != REDIS_REPLY_INTEGER) {
        if (refusal.empty()) refusal = Text(code);
        refused.push_back(std::move(result));
        continue;
      }
      if (code->integer == 0) {
        ++report_.stale_results;
        spdlog::warn("redis {} entry {}: task {}: result dropped, another host holds the entry now (this host's "
                     "lease lapsed)",
                     result.stream, result.entry, result.task_id);
      } else if (code->integer == 1) {
        if (verified_reply_to_.size() >= 4096) verified_reply_to_.clear();  // bounded; relearned
        verified_reply_to_.insert(result.reply_to);
      } else if (code->integer == 2) {
        ++report_.redirected_results;
        spdlog::error("redis {} entry {}: task {}: reply_to {} cannot take a stream entry; the result went to {}",
                      result.stream, result.entry, result.task_id, result.reply_to, kDefaultResults);
      }
      Forget(result);
    }
  }
  held_.insert(held_.begin(), std::make_move_iterator(refused.begin()), std::make_move_iterator(refused.end()));
  if (refusal.empty()) {
    if (refused_ && written > 0) {
      spdlog::info("redis takes results again");
      refused_ = false;
      refusal_backoff_ = std::chrono::milliseconds(100);
    }
    return {};
  }
  // NOSCRIPT: SCRIPT FLUSH, or a server that lost them. READONLY: a master
  // demoted by a failover; connecting again asks Sentinel anew.
  if (refusal.find("NOSCRIPT") != std::string::npos || refusal.find("READONLY") != std::string::npos) {
    return Status(ErrorCode::kUnavailable, "redis: " + refusal);
  }
  if (!refused_) spdlog::error("redis refused {} result(s): {}; held, retrying with backoff", refused.size(), refusal);
  refused_ = true;
  write_at_ = Clock::now() + refusal_backoff_;
  refusal_backoff_ = std::min(refusal_backoff_ * 2, std::chrono::duration_cast<std::chrono::milliseconds>(
                                                        redis_keys::kMaxBackoff));
  return {};
}

}  // namespace umi
