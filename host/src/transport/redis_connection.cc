#include "transport/redis_connection.h"

#include <charconv>

namespace umi {
namespace {

bool ParseInt(std::string_view text, int& out) {
  const auto parsed = std::from_chars(text.data(), text.data() + text.size(), out);
  return parsed.ec == std::errc() && parsed.ptr == text.data() + text.size();
}

Status BadUrl(const std::string& why) {
  return Status(ErrorCode::kInvalidConfig,
                "redis URL: " + why + " (expected redis://[:password@]host[:port][/db] or unix:///path[?db=N])");
}

}  // namespace

StatusOr<RedisUrl> RedisUrl::Parse(const std::string& text) {
  RedisUrl url;
  if (text.rfind("unix://", 0) == 0) {
    std::string rest = text.substr(7);
    if (const size_t query = rest.find("?db="); query != std::string::npos) {
      if (!ParseInt(std::string_view(rest).substr(query + 4), url.db) || url.db < 0) return BadUrl("bad db number");
      rest.resize(query);
    }
    if (rest.empty() || rest[0] != '/') return BadUrl("a unix socket path must be absolute");
    url.unix_path = rest;
    return url;
  }
  if (text.rfind("redis://", 0) != 0) return BadUrl("unknown scheme");
  std::string rest = text.substr(8);
  if (const size_t at = rest.rfind('@'); at != std::string::npos) {
    const std::string credentials = rest.substr(0, at);
    const size_t colon = credentials.find(':');
    url.password = colon == std::string::npos ? credentials : credentials.substr(colon + 1);
    rest = rest.substr(at + 1);
  }
  if (const size_t slash = rest.find('/'); slash != std::string::npos) {
    const std::string db = rest.substr(slash + 1);
    if (!db.empty() && (!ParseInt(db, url.db) || url.db < 0)) return BadUrl("bad db number '" + db + "'");
    rest.resize(slash);
  }
  if (const size_t colon = rest.rfind(':'); colon != std::string::npos && rest.find(']') == std::string::npos) {
    if (!ParseInt(std::string_view(rest).substr(colon + 1), url.port) || url.port <= 0 || url.port > 65535) {
      return BadUrl("bad port");
    }
    rest.resize(colon);
  }
  if (rest.empty()) return BadUrl("no host");
  url.host = rest;
  return url;
}

std::string RedisUrl::Redacted() const {
  const std::string auth = password.empty() ? "" : ":***@";
  if (!unix_path.empty()) return "unix://" + unix_path + (db ? "?db=" + std::to_string(db) : "");
  return "redis://" + auth + host + ":" + std::to_string(port) + (db ? "/" + std::to_string(db) : "");
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
}

Status RedisConnection::Connect(const RedisUrl& url, std::chrono::milliseconds timeout) {
  Close();
  timeval tv{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  redisContext* context = url.unix_path.empty() ? redisConnectWithTimeout(url.host.c_str(), url.port, tv)
                                                : redisConnectUnixWithTimeout(url.unix_path.c_str(), tv);
  if (!context) return Status(ErrorCode::kUnavailable, "redis " + url.Redacted() + ": out of memory");
  if (context->err) {
    const Status failed(ErrorCode::kUnavailable, "redis " + url.Redacted() + ": " + context->errstr);
    redisFree(context);
    return failed;
  }
  redisSetTimeout(context, tv);
  context_ = context;
  if (!url.password.empty()) {
    if (auto auth = Command({"AUTH", url.password}); !auth.ok()) {
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
  return {};
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

Status RedisConnection::Send(const std::vector<std::string>& args) {
  if (!context_) return Status(ErrorCode::kUnavailable, "redis: not connected");
  if (Status appended = Append(args); !appended.ok()) return appended;
  for (int done = 0; !done;) {
    if (redisBufferWrite(context_, &done) != REDIS_OK) return Broken(args.front());
  }
  return {};
}

StatusOr<RedisReply> RedisConnection::ReadReady() {
  if (!context_) return Status(ErrorCode::kUnavailable, "redis: not connected");
  if (redisBufferRead(context_) != REDIS_OK) return Broken("read");
  void* raw = nullptr;
  if (redisGetReplyFromReader(context_, &raw) != REDIS_OK) return Broken("read");
  return RedisReply(static_cast<redisReply*>(raw));
}

}  // namespace umi
