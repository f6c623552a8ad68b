// umi/redis_url.hpp: the Redis URL forms umi accepts, parsed the same way
// by umi-host, umi-submit and umi/redis_client.hpp. Header-only, no
// dependencies.
//
//   redis://[[user]:password@]host[:port][/db]     (port 6379, db 0 by default)
//   unix:///path/to/redis.sock[?db=N]
//
// The password never belongs in a log line or an error: print Redacted().
//
// Thread safety: plain values and free functions.
#pragma once

#include <charconv>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace umi {

struct RedisEndpoint {
  std::string host;  // empty with unix_path
  int port = 6379;
  std::string unix_path;
  int db = 0;
  std::string user;      // an ACL user (AUTH user password); empty: the default user
  std::string password;  // empty: no AUTH

  // The AUTH command's arguments: AUTH [user] password.
  std::vector<std::string> AuthArgs() const {
    if (user.empty()) return {"AUTH", password};
    return {"AUTH", user, password};
  }

  std::string Redacted() const {
    const std::string auth = password.empty() ? "" : user + ":***@";
    if (!unix_path.empty()) return "unix://" + unix_path + (db ? "?db=" + std::to_string(db) : "");
    return "redis://" + auth + host + ":" + std::to_string(port) + (db ? "/" + std::to_string(db) : "");
  }
};

// The endpoint `text` names, or nothing with `*error` saying why (the error
// never repeats the password).
inline std::optional<RedisEndpoint> ParseRedisUrl(const std::string& text, std::string* error) {
  auto parse_int = [](std::string_view digits, int& out) {
    const auto parsed = std::from_chars(digits.data(), digits.data() + digits.size(), out);
    return parsed.ec == std::errc() && parsed.ptr == digits.data() + digits.size();
  };
  auto bad = [error](const std::string& why) -> std::optional<RedisEndpoint> {
    if (error) *error = "redis URL: " + why + " (expected redis://[[user]:password@]host[:port][/db] or unix:///path[?db=N])";
    return std::nullopt;
  };
  RedisEndpoint url;
  if (text.rfind("unix://", 0) == 0) {
    std::string rest = text.substr(7);
    if (const size_t query = rest.find("?db="); query != std::string::npos) {
      if (!parse_int(std::string_view(rest).substr(query + 4), url.db) || url.db < 0) return bad("bad db number");
      rest.resize(query);
    }
    if (rest.empty() || rest[0] != '/') return bad("a unix socket path must be absolute");
    url.unix_path = rest;
    return url;
  }
  if (text.rfind("redis://", 0) != 0) return bad("unknown scheme");
  std::string rest = text.substr(8);
  if (const size_t at = rest.rfind('@'); at != std::string::npos) {
    const std::string credentials = rest.substr(0, at);
    const size_t colon = credentials.find(':');
    if (colon != std::string::npos) url.user = credentials.substr(0, colon);
    url.password = colon == std::string::npos ? credentials : credentials.substr(colon + 1);
    rest = rest.substr(at + 1);
  }
  if (const size_t slash = rest.find('/'); slash != std::string::npos) {
    const std::string db = rest.substr(slash + 1);
    if (!db.empty() && (!parse_int(db, url.db) || url.db < 0)) return bad("bad db number '" + db + "'");
    rest.resize(slash);
  }
  if (const size_t colon = rest.rfind(':'); colon != std::string::npos && rest.find(']') == std::string::npos) {
    if (!parse_int(std::string_view(rest).substr(colon + 1), url.port) || url.port <= 0 || url.port > 65535) {
      return bad("bad port");
    }
    rest.resize(colon);
  }
  if (rest.empty()) return bad("no host");
  url.host = rest;
  return url;
}

}  // namespace umi
