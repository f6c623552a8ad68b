// umi/redis_url.hpp: the Redis URL forms umi accepts, parsed the same way
// by umi-host, umi-submit and umi/redis_client.hpp. Header-only, no
// dependencies.
//
//   redis://[[user]:password@]host[:port][/db]     (port 6379, db 0 by default)
//   unix:///path/to/redis.sock[?db=N]
//   redis+sentinel://[[user]:password@]h1[:port],h2[:port]/<master>[/db]
//       (port 26379): the master Sentinel names; asked again at every
//       (re)connect, so a failover is followed (umi/redis_sentinel.hpp)
//
// The password never belongs in a log line or an error: print Redacted().
//
// Thread safety: plain values and free functions.
#pragma once

#include <charconv>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace umi {

struct RedisEndpoint {
  std::string host;  // empty with unix_path
  int port = 6379;
  std::string unix_path;
  int db = 0;
  std::string user;      // an ACL user (AUTH user password); empty: the default user
  std::string password;  // empty: no AUTH
  // redis+sentinel://: where to ask for the master named `master`.
  std::vector<std::pair<std::string, int>> sentinels;
  std::string master;

  // The AUTH command's arguments: AUTH [user] password.
  std::vector<std::string> AuthArgs() const {
    if (user.empty()) return {"AUTH", password};
    return {"AUTH", user, password};
  }

  std::string Redacted() const {
    const std::string auth = password.empty() ? "" : user + ":***@";
    if (!sentinels.empty()) {
      std::string hosts;
      for (const auto& [name, at] : sentinels) hosts += (hosts.empty() ? "" : ",") + name + ":" + std::to_string(at);
      return "redis+sentinel://" + auth + hosts + "/" + master + (db ? "/" + std::to_string(db) : "");
    }
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
    if (error) {
      *error = "redis URL: " + why +
               " (expected redis://[[user]:password@]host[:port][/db], unix:///path[?db=N] or "
               "redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/<master>[/db])";
    }
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
  const bool sentinel = text.rfind("redis+sentinel://", 0) == 0;
  if (text.rfind("redis://", 0) != 0 && !sentinel) return bad("unknown scheme");
  std::string rest = text.substr(sentinel ? 17 : 8);
  if (const size_t at = rest.rfind('@'); at != std::string::npos) {
    const std::string credentials = rest.substr(0, at);
    const size_t colon = credentials.find(':');
    if (colon != std::string::npos) url.user = credentials.substr(0, colon);
    url.password = colon == std::string::npos ? credentials : credentials.substr(colon + 1);
    rest = rest.substr(at + 1);
  }
  if (sentinel) {
    const size_t slash = rest.find('/');
    if (slash == std::string::npos || slash + 1 >= rest.size()) return bad("no master name after the sentinels");
    std::string path = rest.substr(slash + 1);
    rest.resize(slash);
    if (const size_t db_slash = path.find('/'); db_slash != std::string::npos) {
      const std::string db = path.substr(db_slash + 1);
      if (!db.empty() && (!parse_int(db, url.db) || url.db < 0)) return bad("bad db number '" + db + "'");
      path.resize(db_slash);
    }
    url.master = path;
    for (size_t from = 0; from <= rest.size();) {
      const size_t comma = std::min(rest.find(',', from), rest.size());
      std::string node = rest.substr(from, comma - from);
      int node_port = 26379;
      if (const size_t colon = node.rfind(':'); colon != std::string::npos) {
        if (!parse_int(std::string_view(node).substr(colon + 1), node_port) || node_port <= 0 || node_port > 65535) {
          return bad("bad sentinel port");
        }
        node.resize(colon);
      }
      if (node.empty()) return bad("an empty sentinel address");
      url.sentinels.emplace_back(node, node_port);
      from = comma + 1;
    }
    return url;
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
