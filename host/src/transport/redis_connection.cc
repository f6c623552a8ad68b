#include "transport/redis_connection.h"

#include <poll.h>

#include <utility>

namespace umi {

StatusOr<RedisUrl> RedisUrl::Parse(const std::string& text) {
  std::string error;
  std::optional<RedisEndpoint> parsed = ParseRedisUrl(text, &error);
  if (!parsed) return Status(ErrorCode::kInvalidConfig, error);
  RedisUrl url;
  static_cast<RedisEndpoint&>(url) = std::move(*parsed);
  return url;
}

std::string ReplyText(const redisReply* reply) {
  if (!reply) return {};
  if (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS || reply->type == REDIS_REPLY_ERROR) {
    return std::string(reply->str, reply->len);
  }
  return {};
}

RedisConnection::~RedisConnection() { Close(); }

void RedisConnection::Close() {
  if (context_) redisFree(context_);
  context_ = nullptr;
  earlier_.clear();
  later_due_ = 0;
  later_.clear();
}

Status RedisConnection::Connect(const RedisUrl& url, std::chrono::milliseconds timeout) {
  Close();
  timeval tv{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  RedisAddress address{url.host, url.port};
  if (!url.sentinels.empty()) {  // asked at every connect: a failover moves the master
    std::string why;
    const std::optional<RedisAddress> master = AskSentinels(url, tv, &why);
    if (!master) return Status(ErrorCode::kUnavailable, "redis " + url.Redacted() + ": " + why);
    address = *master;
  }
  redisContext* context = url.unix_path.empty() ? redisConnectWithTimeout(address.host.c_str(), address.port, tv)
                                                : redisConnectUnixWithTimeout(url.unix_path.c_str(), tv);
  if (!context) return Status(ErrorCode::kUnavailable, "redis " + url.Redacted() + ": out of memory");
  if (context->err) {
    const Status failed(ErrorCode::kUnavailable, "redis " + url.Redacted() + ": " + context->errstr);
    redisFree(context);
    return failed;
  }
  redisSetTimeout(context, tv);
  // Keep the read buffer between replies: hiredis frees one above 16 KiB
  // when empty, and a read of many tasks would allocate it again each time.
  context->reader->maxbuf = 0;
  context_ = context;
  if (!url.password.empty()) {
    if (auto auth = Command(url.AuthArgs()); !auth.ok()) {
      Close();
      return Status(ErrorCode::kUnavailable, "redis " + url.Redacted() + ": AUTH failed");  // never the reply: it may echo
    }
  }
  if (url.db != 0) {
    if (auto select = Command({"SELECT", std::to_string(url.db)}); !select.ok()) {
      Close();
      return select.status().Prefixed("redis " + url.Redacted());
    }
  }
  if (!url.sentinels.empty() && !IsRedisMaster(context_)) {
    Close();
    return Status(ErrorCode::kUnavailable, "redis " + url.Redacted() + ": " + address.host + ":" +
                                               std::to_string(address.port) +
                                               " is not the master (yet): a failover is under way");
  }
  return {};
}

void RedisConnection::SetTimeout(std::chrono::milliseconds timeout) {
  if (!context_) return;
  const timeval tv{static_cast<time_t>(timeout.count() / 1000),
                   static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  redisSetTimeout(context_, tv);
}

Status RedisConnection::Broken(const std::string& what) {
  const std::string why = context_ && context_->err ? context_->errstr : "connection lost";
  Close();
  return Status(ErrorCode::kUnavailable, "redis " + what + ": " + why);
}

Status RedisConnection::Append(const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<size_t> lengths;
  for (const std::string& arg : args) {
    argv.push_back(arg.data());
    lengths.push_back(arg.size());
  }
  if (redisAppendCommandArgv(context_, static_cast<int>(args.size()), argv.data(), lengths.data()) != REDIS_OK) {
    return Broken(args.front());
  }
  return {};
}

StatusOr<RedisReply> RedisConnection::Command(const std::vector<std::string>& args) {
  auto replies = Pipeline({args});
  if (!replies.ok()) return replies.status();
  return std::move(replies.value().front());
}

StatusOr<std::vector<RedisReply>> RedisConnection::Pipeline(const std::vector<std::vector<std::string>>& commands) {
  if (!context_) return Status(ErrorCode::kUnavailable, "redis: not connected");
  for (const auto& args : commands) {
    if (Status appended = Append(args); !appended.ok()) return appended;
  }
  if (Status read = ReadEarlier(/*block=*/true, commands.front().front()); !read.ok()) return read;
  std::vector<RedisReply> replies;
  for (const auto& args : commands) {
    void* raw = nullptr;
    if (redisGetReply(context_, &raw) != REDIS_OK || !raw) return Broken(args.front());
    RedisReply reply(static_cast<redisReply*>(raw));
    if (reply->type == REDIS_REPLY_ERROR && commands.size() == 1) {
      return Status(ErrorCode::kInternal, "redis " + args.front() + ": " + ReplyText(reply.get()));
    }
    replies.push_back(std::move(reply));
  }
  return replies;
}

Status RedisConnection::SendAndForget(const std::vector<std::string>& args) {
  if (Status appended = AppendAndForget(args); !appended.ok()) return appended;
  return FlushWrites();
}

Status RedisConnection::AppendAndForget(const std::vector<std::string>& args) {
  if (!context_) return Status(ErrorCode::kUnavailable, "redis: not connected");
  if (Status appended = Append(args); !appended.ok()) return appended;
  earlier_.push_back(false);
  return {};
}

Status RedisConnection::AppendForLater(const std::vector<std::string>& args) {
  if (!context_) return Status(ErrorCode::kUnavailable, "redis: not connected");
  if (Status appended = Append(args); !appended.ok()) return appended;
  earlier_.push_back(true);
  ++later_due_;
  return {};
}

Status RedisConnection::ReadEarlier(bool block, const std::string& what) {
  while (!earlier_.empty()) {
    void* raw = nullptr;
    if (block) {
      if (redisGetReply(context_, &raw) != REDIS_OK || !raw) return Broken(what);
    } else {
      if (redisGetReplyFromReader(context_, &raw) != REDIS_OK) return Broken(what);
      if (!raw) {
        // The socket blocks: read only what poll says has arrived.
        pollfd socket{context_->fd, POLLIN, 0};
        if (poll(&socket, 1, 0) <= 0) return {};
        if (redisBufferRead(context_) != REDIS_OK) return Broken(what);
        continue;
      }
    }
    RedisReply reply(static_cast<redisReply*>(raw));
    if (earlier_.front()) later_.push_back(std::move(reply));
    earlier_.pop_front();
  }
  return {};
}

StatusOr<std::vector<RedisReply>> RedisConnection::TakeLater() {
  if (!context_) return Status(ErrorCode::kUnavailable, "redis: not connected");
  if (Status read = ReadEarlier(/*block=*/false, "read"); !read.ok()) return read;
  later_due_ -= later_.size();
  return std::exchange(later_, {});
}

Status RedisConnection::FlushWrites() {
  if (!context_) return Status(ErrorCode::kUnavailable, "redis: not connected");
  for (int done = 0; !done;) {
    if (redisBufferWrite(context_, &done) != REDIS_OK) return Broken("write");
  }
  return {};
}

Status RedisConnection::Send(const std::vector<std::string>& args) {
  if (!context_) return Status(ErrorCode::kUnavailable, "redis: not connected");
  if (Status appended = Append(args); !appended.ok()) return appended;
  return FlushWrites();
}

StatusOr<RedisReply> RedisConnection::ReadReady() {
  if (!context_) return Status(ErrorCode::kUnavailable, "redis: not connected");
  if (redisBufferRead(context_) != REDIS_OK) return Broken("read");
  return NextBuffered();
}

StatusOr<RedisReply> RedisConnection::NextBuffered() {
  if (!context_) return Status(ErrorCode::kUnavailable, "redis: not connected");
  void* raw = nullptr;
  if (redisGetReplyFromReader(context_, &raw) != REDIS_OK) return Broken("read");
  return RedisReply(static_cast<redisReply*>(raw));
}

}  // namespace umi
