// umi/redis_client.hpp: a producer for a farm of umi hosts on Redis Streams
// (protocol v1, "Redis Streams transport"; docs/scale-out.md).
//
//   umi::RedisClient client({.url = "redis://cache:6379/0"});
//   client.Submit({.id = "job-1", .plugin = "sleep", .input = umi::PackMap({{"ms", 250}})});
//   std::optional<umi::TaskOutcome> outcome = client.Await("job-1", std::chrono::seconds(30));
//
// Submit appends `XADD umi:tasks:<plugin>[:p<level>] * m <task>` (the
// stream of the task's priority level, umi/redis_streams.hpp) to a pipeline that
// goes out in one round trip at the next Flush, Next or Await. Results come
// from this client's own stream (`reply_to`), read with a blocking XREAD;
// what was read is trimmed from the stream (XTRIM MINID), so a long run
// keeps Redis memory flat.
//
// Nothing is re-sent: a task waits in Redis until a host takes it, and a
// dead host's tasks are claimed and run by a live one. That makes results
// at-least-once across a host's death; the client hands out the first
// result per id and drops later copies. A producer that exits after
// submitting loses nothing: a new client with the same `reply_to` and
// Expect() for the ids gets the results that came meanwhile.
//
// Needs hiredis (Debian: libhiredis-dev; link `hiredis`) and msgpack-cxx.
// Errors (no connection, a broken one, a Redis error) throw umi::RedisError.
//
// Thread safety: a RedisClient is used from one thread.
#pragma once

#include <hiredis/hiredis.h>
#include <unistd.h>

#include <chrono>
#include <deque>
#include <fstream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <vector>

#include "redis_sentinel.hpp"
#include "redis_streams.hpp"
#include "redis_url.hpp"
#include "task.hpp"

namespace umi {

class RedisError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct RedisClientOptions {
  std::string url;                    // umi/redis_url.hpp
  std::string password_file = {};     // read when the URL has no password (trailing newline dropped)
  std::string reply_to = {};          // result stream; empty: umi:results:<hostname>-<pid>-<n>,
                                      // deleted by the destructor
  std::chrono::milliseconds timeout{5000};  // connect and each command (a blocking read: plus its wait)
};

class RedisClient {
 public:
  using Clock = std::chrono::steady_clock;

  explicit RedisClient(RedisClientOptions options) : options_(std::move(options)) {
    std::string error;
    std::optional<RedisEndpoint> url = ParseRedisUrl(options_.url, &error);
    if (!url) throw RedisError(error);
    endpoint_ = std::move(*url);
    if (endpoint_.password.empty() && !options_.password_file.empty()) {
      std::ifstream file(options_.password_file);
      if (!file || !std::getline(file, endpoint_.password)) {
        throw RedisError("redis password file " + options_.password_file + ": cannot read it");
      }
    }
    const timeval tv = TimeVal(options_.timeout);
    RedisAddress address{endpoint_.host, endpoint_.port};
    if (!endpoint_.sentinels.empty()) {
      std::optional<RedisAddress> master = AskSentinels(endpoint_, tv, &error);
      if (!master) throw RedisError("redis " + endpoint_.Redacted() + ": " + error);
      address = std::move(*master);
    }
    context_.reset(endpoint_.unix_path.empty() ? redisConnectWithTimeout(address.host.c_str(), address.port, tv)
                                               : redisConnectUnixWithTimeout(endpoint_.unix_path.c_str(), tv));
    if (!context_ || context_->err) {
      throw RedisError("redis " + endpoint_.Redacted() + ": " + (context_ ? context_->errstr : "out of memory"));
    }
    redisSetTimeout(context_.get(), tv);
    if (!endpoint_.password.empty()) {
      try {
        Command(endpoint_.AuthArgs());
      } catch (const RedisError&) {
        throw RedisError("redis " + endpoint_.Redacted() + ": AUTH failed");  // never the reply: it may echo
      }
    }
    if (endpoint_.db != 0) Command({"SELECT", std::to_string(endpoint_.db)});
    if (!endpoint_.sentinels.empty() && !IsRedisMaster(context_.get())) {
      throw RedisError("redis " + endpoint_.Redacted() + ": " + address.host + ":" + std::to_string(address.port) +
                       " is not the master (yet): a failover is under way");
    }
    if (options_.reply_to.empty()) {
      char name[256] = {};
      gethostname(name, sizeof(name) - 1);
      static int clients = 0;
      options_.reply_to = "umi:results:" + std::string(name) + "-" + std::to_string(getpid()) + "-" +
                          std::to_string(++clients);
      own_reply_stream_ = true;
    }
  }

  // Sends what is still queued; deletes the reply stream if the client named it.
  ~RedisClient() {
    if (!context_ || context_->err) return;
    try {
      Flush();
      if (own_reply_stream_) Command({"DEL", options_.reply_to});
    } catch (const RedisError&) {
      // A broken connection at exit: nothing left to do.
    }
  }

  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  const std::string& reply_to() const { return options_.reply_to; }

  // Queues the task (sent at the next Flush, Next or Await).
  void Submit(const TaskRequest& request) {
    Append({"XADD", RedisTaskStream(request.plugin, request.priority), "*", "m",
            EncodeTask(request, {.attempt = 0, .reply_to = options_.reply_to})});
    ++unflushed_;
    pending_.insert(request.id);
  }

  // Also hand out the result for `id`, submitted by an earlier producer
  // with this reply_to.
  void Expect(const std::string& id) { pending_.insert(id); }

  // Sends what Submit queued and checks every XADD was taken.
  void Flush() {
    for (; unflushed_ > 0; --unflushed_) Reply();
  }

  // The next outcome (one per submitted or expected id), or nothing within `wait`.
  std::optional<TaskOutcome> Next(std::chrono::milliseconds wait) {
    Flush();
    const auto deadline = Clock::now() + wait;
    while (ready_.empty()) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return std::nullopt;
      Read(left);
    }
    TaskOutcome outcome = std::move(ready_.front());
    ready_.pop_front();
    return outcome;
  }

  // Waits for one id's outcome; other outcomes stay queued for Next.
  std::optional<TaskOutcome> Await(const std::string& id, std::chrono::milliseconds wait) {
    Flush();
    const auto deadline = Clock::now() + wait;
    while (true) {
      for (auto it = ready_.begin(); it != ready_.end(); ++it) {
        if (it->id != id) continue;
        TaskOutcome outcome = std::move(*it);
        ready_.erase(it);
        return outcome;
      }
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return std::nullopt;
      Read(left);
    }
  }

  // Ids submitted or expected with no outcome handed out yet.
  size_t pending() const { return pending_.size() + ready_.size(); }

 private:
  struct ContextFree {
    void operator()(redisContext* context) const { redisFree(context); }
  };
  struct ReplyFree {
    void operator()(redisReply* reply) const { freeReplyObject(reply); }
  };
  using OwnedReply = std::unique_ptr<redisReply, ReplyFree>;

  static timeval TimeVal(std::chrono::milliseconds ms) {
    return {static_cast<time_t>(ms.count() / 1000), static_cast<suseconds_t>((ms.count() % 1000) * 1000)};
  }

  static std::string Text(const redisReply* reply) {
    return reply && (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS)
               ? std::string(reply->str, reply->len)
               : std::string();
  }

  void Append(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<size_t> lengths;
    for (const std::string& arg : args) {
      argv.push_back(arg.data());
      lengths.push_back(arg.size());
    }
    if (redisAppendCommandArgv(context_.get(), static_cast<int>(args.size()), argv.data(), lengths.data()) !=
        REDIS_OK) {
      Broken();
    }
  }

  OwnedReply Reply() {
    void* raw = nullptr;
    if (redisGetReply(context_.get(), &raw) != REDIS_OK) Broken();
    OwnedReply reply(static_cast<redisReply*>(raw));
    if (reply->type == REDIS_REPLY_ERROR) {
      throw RedisError("redis " + endpoint_.Redacted() + ": " + std::string(reply->str, reply->len));
    }
    return reply;
  }

  OwnedReply Command(const std::vector<std::string>& args) {
    Append(args);
    return Reply();
  }

  [[noreturn]] void Broken() {
    throw RedisError("redis " + endpoint_.Redacted() + ": " + (context_->err ? context_->errstr : "connection lost"));
  }

  // One blocking XREAD of this client's stream, after trimming what the
  // last one read; the outcomes of ids still pending go to ready_.
  void Read(std::chrono::milliseconds wait) {
    if (last_id_ != "0") Append({"XTRIM", options_.reply_to, "MINID", last_id_});
    Append({"XREAD", "COUNT", "1000", "BLOCK", std::to_string(wait.count()), "STREAMS", options_.reply_to, last_id_});
    if (last_id_ != "0") Reply();
    redisSetTimeout(context_.get(), TimeVal(options_.timeout + wait));
    OwnedReply reply = Reply();
    redisSetTimeout(context_.get(), TimeVal(options_.timeout));
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0) return;  // nothing within `wait`
    const redisReply* entries = reply->element[0]->element[1];
    for (size_t e = 0; e < entries->elements; ++e) {
      const redisReply* entry = entries->element[e];
      last_id_ = Text(entry->element[0]);
      const redisReply* fields = entry->element[1];
      for (size_t f = 0; f + 1 < fields->elements; f += 2) {
        if (Text(fields->element[f]) == "m") Take(Text(fields->element[f + 1]));
      }
    }
  }

  void Take(std::string bytes) {
    TaskOutcome outcome;
    bool has_ok = false;
    if (!DecodeResult(bytes, outcome, has_ok)) return;
    const auto pending = pending_.find(outcome.id);
    if (pending == pending_.end()) return;  // a second result for an id (its first host died), or not ours
    outcome.attempts = 1;  // Redis holds the task: a producer sends it once
    outcome.result = std::move(bytes);
    pending_.erase(pending);
    ready_.push_back(std::move(outcome));
  }

  RedisClientOptions options_;
  RedisEndpoint endpoint_;
  std::unique_ptr<redisContext, ContextFree> context_;
  bool own_reply_stream_ = false;
  size_t unflushed_ = 0;
  std::string last_id_ = "0";
  std::unordered_set<std::string> pending_;
  std::deque<TaskOutcome> ready_;
};

}  // namespace umi
