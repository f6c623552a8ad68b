// RedisTransport: protocol v1 over Redis Streams, for a farm of hosts that
// pull from one durable queue (../shared/protocol-v1.md, "Redis Streams
// transport"; docs/scale-out.md).
//
//   tasks      XADD umi:tasks:<plugin> * m <task map>; group `umi`, created
//              by hosts with MKSTREAM when missing
//   taking     XREADGROUP GROUP umi <host> COUNT n BLOCK ... STREAMS: only the
//              streams of plugins this host has, only when Inbox::Room says a
//              task of that plugin could start now (n = that room, plus the
//              read-ahead: Inbox::ReadAhead, or a fixed prefetch)
//   a result   MULTI; XADD <reply_to, default umi:results> * m <result>;
//              XACK umi:tasks:<plugin> umi <entry>; EXEC (the results of
//              one loop turn share one transaction: one XACK per stream)
//   heartbeat  umi:hosts:<host>: a hash (plugins, running, queued, ...) with
//              a TTL of three heartbeats (0.5 s each); its expiry marks the host dead
//   restart    before its first read of a stream, a host runs again what an
//              earlier run under its name left pending there
//   redelivery entries pending on a dead host are XCLAIMed by a live one; past
//              max_deliveries the task is answered crashed/max_deliveries and
//              copied to umi:dead:<plugin>
//
// Connection states:
//
//   | state        | when                         | the host does                                    |
//   |--------------|------------------------------|--------------------------------------------------|
//   | connected    | both connections up          | reads when there is room, writes results at once |
//   | reconnecting | a command failed             | keeps running tasks, holds their results, retries |
//   |              |                              | with backoff (0.1 s doubling to 5 s); not ready   |
//
// A blocking read runs on its own connection whose fd the Poller watches,
// so the loop never waits on Redis; everything else (results, acks,
// heartbeats, claims) is short commands on a second connection.
//
// Thread safety: none; the event loop owns it.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "transport/redis_connection.h"
#include "transport/transport.h"

namespace umi {

struct RedisTransportOptions {
  RedisUrl url;
  std::string host;  // consumer name, heartbeat key and the results' `host`
  std::chrono::milliseconds heartbeat{500};  // the hash expires after three: a dead host is found in 1.5-2 s
  int max_deliveries = 3;  // a task delivered this often (each host died) is poison
  // Tasks taken beyond what can start now; nothing: Inbox::ReadAhead decides.
  std::optional<size_t> prefetch;
  std::chrono::milliseconds block{500};  // how long one read waits for work
};

class RedisTransport final : public Transport {
 public:
  // `heartbeat_fields`: what the heartbeat hash says besides `plugins`.
  // `on_connected(bool)`: the connection came up or went down (readiness).
  // `on_backlog`: per plugin stream, {waiting, pending} entries of group
  // umi, read at every heartbeat.
  RedisTransport(RedisTransportOptions options, std::function<std::vector<std::string>()> heartbeat_fields,
                 std::function<void(bool)> on_connected,
                 std::function<void(std::map<std::string, std::pair<int64_t, int64_t>>)> on_backlog);
  ~RedisTransport() override;

  // The plugins whose streams this host reads; a reload may change them.
  void SetPlugins(std::set<std::string> plugins);

  Status Open(Poller& poller, Inbox& inbox) override;
  std::map<std::string, std::string> endpoints() const override { return {{"redis", options_.url.Redacted()}}; }
  void Send(std::string_view body, const ReplyRoute& route) override;
  bool GiveBack(const ReplyRoute& route) override;
  size_t waiting() const override { return held_.size(); }
  void AfterPoll() override;
  std::optional<std::chrono::milliseconds> RetryIn() const override;
  size_t Flush(std::chrono::steady_clock::time_point deadline) override;

 private:
  using Clock = std::chrono::steady_clock;
  struct Held {  // a result waiting for Redis
    std::string stream, entry, reply_to, body;
  };

  bool EnsureConnected();
  void Disconnected(const Status& why);
  void StartRead();
  // Ends the outstanding read early when a stream it does not read gained room
  // (a GPU freed while the read waits on CPU streams).
  void RereadIfRoomMoved();
  void OnReadable();
  void HandleEntries(const redisReply* streams);
  void HandleEntry(const std::string& stream, const redisReply* entry, long long deliveries);
  void RecoverEarlierRun(const std::string& stream);
  // Claims up to a batch of `consumer`'s entries idle for min_idle ms, from
  // `after` on (which it moves past them), and runs them; how many it saw,
  // nothing when the connection broke.
  std::optional<size_t> ClaimFrom(const std::string& stream, const std::string& consumer, const std::string& min_idle,
                                  std::string& after);
  void ClaimFromDeadHosts();
  void Heartbeat();
  void ReadBacklog();
  void WriteHeld();
  void Answer(const std::string& stream, const std::string& id, const std::string& reply_to, const std::string& body);

  RedisTransportOptions options_;
  std::function<std::vector<std::string>()> heartbeat_fields_;
  std::function<void(bool)> on_connected_;
  std::function<void(std::map<std::string, std::pair<int64_t, int64_t>>)> on_backlog_;
  Inbox* inbox_ = nullptr;
  std::set<std::string> plugins_;
  std::set<std::string> grouped_;  // streams whose group exists
  std::set<std::string> recovered_;  // streams whose entries of an earlier run were taken back
  RedisConnection reader_, writer_;
  bool reading_ = false;  // a read is outstanding on reader_
  std::set<std::string> read_streams_;  // the streams it reads
  long long reader_id_ = 0;  // CLIENT ID of reader_, to unblock its read
  Clock::time_point reconnect_at_{}, next_heartbeat_{}, next_claim_{};
  std::chrono::milliseconds backoff_{100};
  std::deque<Held> held_;  // results of this turn, or waiting for Redis
};

}  // namespace umi
