// RedisConnection: one hiredis connection, with the URL forms umi accepts
// and Status errors. Commands are sent as argument vectors (binary-safe, no
// format strings). The reader side (Send + ReadReady) lets the event loop
// wait for a blocking command's reply on fd() beside its other sockets.
//
// URLs: umi/redis_url.hpp. The password never appears in a log line or an
// error: Redacted() prints the URL without it.
//
// Thread safety: none; one thread uses a connection.
#pragma once

#include <hiredis/hiredis.h>

#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <umi/redis_sentinel.hpp>
#include <umi/redis_url.hpp>

#include "common/status_or.h"

namespace umi {

// The URL forms of umi/redis_url.hpp, with a Status for a bad one.
struct RedisUrl : RedisEndpoint {
  static StatusOr<RedisUrl> Parse(const std::string& text);
};

struct ReplyDeleter {
  void operator()(redisReply* reply) const { freeReplyObject(reply); }
};
using RedisReply = std::unique_ptr<redisReply, ReplyDeleter>;

// The text of a string, status or error reply; empty for anything else.
std::string ReplyText(const redisReply* reply);

class RedisConnection {
 public:
  RedisConnection() = default;
  ~RedisConnection();
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  // Connects (AUTH and SELECT when the URL says so); `timeout` bounds the
  // connect and every command.
  Status Connect(const RedisUrl& url, std::chrono::milliseconds timeout);
  void Close();
  // Bounds every later command (connect's `timeout` until then).
  void SetTimeout(std::chrono::milliseconds timeout);
  bool connected() const { return context_ != nullptr; }
  int fd() const { return context_ ? context_->fd : -1; }

  // One command; an error reply is a Status (kUnavailable when the
  // connection broke, which also closes it; kInternal for a Redis error).
  StatusOr<RedisReply> Command(const std::vector<std::string>& args);
  // Several commands in one round trip; the replies in order.
  StatusOr<std::vector<RedisReply>> Pipeline(const std::vector<std::vector<std::string>>& commands);

  // Sends a command without waiting for its reply.
  Status Send(const std::vector<std::string>& args);
  // Writes a command to the server now and never hands out its reply: the
  // next Command or Pipeline reads and drops it first (replies come in
  // order). Its error reply, if any, is lost; the write is not.
  Status SendAndForget(const std::vector<std::string>& args);
  // SendAndForget, written at the next FlushWrites (or any later command).
  Status AppendAndForget(const std::vector<std::string>& args);
  // A command whose reply the caller takes later (TakeLater), so the event
  // loop need not wait for it; written at the next FlushWrites. A Command or
  // Pipeline sent after it reads that reply first and keeps it.
  Status AppendForLater(const std::vector<std::string>& args);
  Status FlushWrites();
  // Replies of AppendForLater not taken yet.
  size_t later_due() const { return later_due_; }
  // Some of them were read already (by a Command on the way): TakeLater
  // hands them out without the socket polling readable.
  bool later_ready() const { return !later_.empty(); }
  // The replies of AppendForLater that have arrived, in order, without
  // waiting for the others.
  StatusOr<std::vector<RedisReply>> TakeLater();
  // After fd() polled readable: the reply once it is complete, else null.
  StatusOr<RedisReply> ReadReady();
  // The next reply already read from the socket (by ReadReady), else null.
  StatusOr<RedisReply> NextBuffered();

 private:
  Status Broken(const std::string& what);
  Status Append(const std::vector<std::string>& args);

  // Reads the replies still due for earlier commands, keeping those for
  // later; `block`: wait for them, else take only what has arrived.
  Status ReadEarlier(bool block, const std::string& what);

  redisContext* context_ = nullptr;
  // Per earlier command whose reply is still due, in order: true: keep it
  // for TakeLater (AppendForLater); false: drop it (SendAndForget).
  std::deque<bool> earlier_;
  size_t later_due_ = 0;
  std::vector<RedisReply> later_;  // arrived, not taken yet
};

}  // namespace umi
