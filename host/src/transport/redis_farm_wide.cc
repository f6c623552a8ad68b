// RedisTransport, what the farm's hosts share beyond one task: flows spread
// over the hosts (a flow opened in Redis, a step's end, cancel:
// redis_flows.h) and duplicate ids across the farm (one fingerprint key,
// each read's ids looked up among the results the farm keeps).
#include "transport/redis_transport.h"

#include <spdlog/spdlog.h>

#include "transport/protocol.h"
#include "transport/redis_flows.h"
#include "transport/redis_keys.h"

namespace umi {

using redis_keys::Text;

bool RedisTransport::CancelFlow(const std::string& id) {
  if (!writer_.connected()) return false;
  auto cancelled = writer_.Command(Eval(Script::kCancelFlow, redis_flows::FlowKey(id), {}));
  if (!cancelled.ok()) {
    if (cancelled.status().code() == ErrorCode::kUnavailable) Disconnected(cancelled.status());
    return false;
  }
  return cancelled.value()->type == REDIS_REPLY_INTEGER && cancelled.value()->integer == 1;
}

bool RedisTransport::ServedElsewhere(const std::string& plugin) {
  if (farm_plugins_.count(plugin)) return true;
  if (writer_.connected() && Clock::now() - farm_plugins_read_ > std::chrono::seconds(1)) ReadUnserved();
  return farm_plugins_.count(plugin) > 0;
}

bool RedisTransport::TakeFlow(const FlowMessage& flow, const ReplyRoute& route, const TaskFingerprint& fingerprint) {
  if (route.address.size() < 5) return false;
  results_.Hold({route.address[0], route.address[1], route.address[2], "", flow.id, RedisResults::Write::kOpenFlow,
                 flow.id, redis_flows::OpenArgs(flow, route.address[2], SharedFingerprint(&fingerprint))});
  return true;
}

std::optional<TaskFingerprint> RedisTransport::SharedFingerprint(const TaskFingerprint* fingerprint) const {
  // Made with another key, it would pass another host's retry for a conflict.
  return fingerprint_key_shared_ && fingerprint ? std::optional(*fingerprint) : std::nullopt;
}

void RedisTransport::ShareFingerprintKey() {
  // A retry read by any host must match the result another host kept, so
  // the farm's hosts fingerprint with one key: the first host's, kept in
  // Redis. Taken only before this process fingerprinted anything (in Open):
  // its own dedup window holds fingerprints made with the key it has.
  auto offered = writer_.Command({"SET", redis_keys::kFingerprintKey, FingerprintKey(), "NX"});
  auto farm = offered.ok() ? writer_.Command({"GET", redis_keys::kFingerprintKey}) : std::move(offered);
  if (!farm.ok() || farm.value()->type != REDIS_REPLY_STRING) {
    spdlog::warn("redis: cannot share the fingerprint key ({}): a retry is matched only by the host that ran it",
                 farm.ok() ? Text(farm.value().get()) : farm.status().message());
    return;
  }
  const std::string key = Text(farm.value().get());
  if (key == FingerprintKey()) {
    fingerprint_key_shared_ = true;
  } else if (!fingerprinting_ && UseFingerprintKey(key)) {
    fingerprint_key_shared_ = true;
  } else {
    fingerprint_key_shared_ = false;
    spdlog::warn("redis: {} is not the key this host fingerprints with (Redis lost its data, or it is malformed); "
                 "a retry is matched only by the host that ran it until this host restarts",
                 redis_keys::kFingerprintKey);
  }
}

std::vector<std::string> RedisTransport::IdsToLookUp(const redisReply* streams) const {
  std::vector<std::string> ids;
  if (results_.kept_for().count() <= 0 || !fingerprint_key_shared_) return ids;
  for (size_t s = 0; s < streams->elements; ++s) {
    const redisReply* pair = streams->element[s];
    if (pair->type != REDIS_REPLY_ARRAY || pair->elements != 2) continue;
    const redisReply* entries = pair->element[1];
    for (size_t e = 0; e < entries->elements; ++e) {
      const redisReply* entry = entries->element[e];
      const redisReply* fields = entry->type == REDIS_REPLY_ARRAY && entry->elements == 2 ? entry->element[1] : nullptr;
      for (size_t f = 0; fields && fields->type == REDIS_REPLY_ARRAY && f + 1 < fields->elements; f += 2) {
        const redisReply* name = fields->element[f];
        if (name->len != 1 || name->str[0] != 'm') continue;
        TaskFields peeked = PeekTaskFields(std::string_view(fields->element[f + 1]->str, fields->element[f + 1]->len));
        if (peeked.id && !peeked.step_of) ids.push_back(std::move(*peeked.id));  // a step's id is the host's own
      }
    }
  }
  return ids;
}

Status RedisTransport::LookUp(RedisReply read, std::vector<std::string> ids) {
  std::vector<std::string> kept = {"MGET"};
  kept.reserve(ids.size() + 1);
  for (const std::string& id : ids) kept.push_back(RedisResultKey(id));
  Status sent = reader_.Send(kept);
  if (!sent.ok()) return sent;
  ++replies_due_;
  reply_is_lookup_.push_back(true);
  awaiting_lookup_.push_back({std::move(read), read_epoch_, std::move(ids)});
  return {};
}

RedisTransport::Answers RedisTransport::AnsweredFrom(const redisReply* kept, const std::vector<std::string>& ids) {
  Answers found;
  if (kept->type != REDIS_REPLY_ARRAY) return found;  // each host's own window still holds
  for (size_t i = 0; i < ids.size() && i < kept->elements; ++i) {
    const redisReply* result = kept->element[i];
    if (result->type != REDIS_REPLY_STRING) continue;
    // Kept without a fingerprint (a host that shares no key): not comparable, it runs.
    if (auto split = SplitFingerprint(std::string_view(result->str, result->len))) {
      found.emplace(ids[i], std::make_shared<const AnsweredElsewhere>(
                                AnsweredElsewhere{std::move(split->first), split->second}));
    }
  }
  return found;
}

RedisTransport::Answers RedisTransport::FindAnswered(const redisReply* streams) {
  const std::vector<std::string> ids = IdsToLookUp(streams);
  if (ids.empty()) return {};
  std::vector<std::string> kept = {"MGET"};
  for (const std::string& id : ids) kept.push_back(RedisResultKey(id));
  auto found = writer_.Command(kept);
  if (!found.ok()) return {};
  return AnsweredFrom(found.value().get(), ids);
}

}  // namespace umi
