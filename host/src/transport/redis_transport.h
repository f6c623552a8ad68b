// RedisTransport: protocol v1 over Redis Streams, for a farm of hosts that
// pull from one durable queue (docs/protocol.md, "Redis Streams transport";
// docs/scale-out.md).
//
//   tasks      XADD umi:tasks:<plugin>[:p<level>] * m <task map>; group
//              `umi`, created by hosts with MKSTREAM when missing
//   consumer   `<host>@<random>`: a name per process, so an earlier run of
//              the same host, frozen or dead, never passes for this one
//   taking     XREADGROUP GROUP umi <consumer> COUNT n BLOCK ... STREAMS:
//              only the streams of plugins this host has, only while
//              Inbox::Room says a task of that plugin could start now;
//              n = the smallest room (+ read-ahead) among the streams read;
//              once it brought entries, a pipeline of unblocked reads, one
//              per stream with that plugin's own n, until nothing waits:
//              no stream gives more than its plugin can start
//   lease      an entry's idle time in the group's pending list is its
//              lease: the holder renews every entry it holds at each
//              heartbeat (XCLAIM JUSTID through redis_scripts::kRenewLeases);
//              an entry idle past `lease` belongs to nobody and any host with
//              room claims it (XCLAIM with that min-idle: one claimer wins).
//              A restart of Redis keeps idle times (AOF), so it cannot
//              forge a lease; after it connects (again) a host claims
//              nothing for a lease and the longest reconnect backoff, so
//              live hosts renew first, unless Redis was calm that long (up,
//              and the hosts' heartbeats without a gap: umi:tick,
//              umi:resumed)
//   a result   XADD to reply_to and XACK only while this consumer holds the
//              entry, in one of two ways. Fast: a MULTI/EXEC of the turn's
//              XADDs and XACKs under WATCH umi:fence, a key every claim
//              increments (redis_scripts::kClaimLapsed), for entries read
//              since the fence was last seen unchanged and reply_to streams
//              that took a result before; an EXEC the watch aborted, or
//              any doubt (a fence that moved, a reconnect), sends those
//              results the checked way: redis_scripts::kPublishResults, one
//              call per stream, which looks each entry up in the pending
//              list (2-3x the server time of the transaction).
//              A stale result is dropped and counted; a refusal (OOM,
//              READONLY, NOPERM, LOADING, MASTERDOWN, BUSY, ...) holds that
//              result alone and retries it with backoff; a reply_to that
//              cannot take a stream entry sends the result to umi:results
//   heartbeat  umi:hosts:<host>: a hash (consumer, plugins, running, ...)
//              with a TTL of three heartbeats, for the cluster view; a
//              second process with a live host's name refuses to start
//   redelivery past max_deliveries a task is answered
//              crashed/max_deliveries and copied to umi:dead:<plugin>; only
//              a task that had started in a host process (a start mark in
//              umi:started:<stream>: its entry, or `*<consumer>` for a
//              plugin whose tasks run on arrival) is counted, not one read
//              ahead
//   priority   a stream per level per plugin (umi/redis_streams.hpp),
//              taken highest first (redis_scripts::kPlanTake, then plain
//              XREADGROUPs)
//   starvation a plugin's oldest waiting task older than reserve_after and
//              no room for it here: taken anyway, and the queue reserves
//   Sentinel   redis+sentinel:// asks for the master at every connect
//   flows      a flow read from a stream is opened in Redis and its steps
//              run on any host (redis_flows.h)
//   dup ids    each read's ids are looked up among the results the farm
//              keeps (umi:result:<id>, with their fingerprints under the
//              farm's key umi:fingerprint-key): a retry another host
//              answered gets the kept answer
//
// Connection states:
//
//   | state        | when                                  | the host does                                     |
//   |--------------|---------------------------------------|---------------------------------------------------|
//   | connected    | both connections up, nothing refused  | reads when there is room, writes results at once  |
//   | refused      | Redis refused a result (OOM, ...)     | holds those results, retries with backoff         |
//   |              |                                       | (0.1 s doubling to 1 s); not ready                |
//   | reconnecting | a command failed or timed out         | keeps running tasks, holds their results, retries |
//   |              |                                       | with backoff (0.1 s doubling to 1 s); not ready   |
//   | displaced    | another process took the host's name  | takes no more tasks, sends what it holds; not     |
//   |              | while this one was frozen             | ready (its stale results are fenced)              |
//
// A blocking read runs on its own connection whose fd the Poller watches,
// so the loop never waits on Redis for it; everything else (results, leases,
// heartbeats, claims) is short commands on a second connection, each bounded
// by the heartbeat interval.
//
// Where its code is: redis_transport.cc (connections, entries, answers,
// the turn), redis_reading.cc (taking tasks), redis_upkeep.cc (name,
// heartbeat, leases renewed and claimed, consumers, backlog),
// redis_farm_wide.cc (flows spread over the hosts, duplicate ids across the
// farm), and the parts it owns: RedisResults (redis_results.h: results,
// fenced), the scripts (redis_scripts.h), key names (redis_keys.h), the
// flows' script arguments (redis_flows.h).
//
// Thread safety: none; the event loop owns it.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/farm_report.h"
#include "transport/redis_connection.h"
#include "transport/redis_results.h"
#include "transport/transport.h"

namespace umi {

struct RedisTransportOptions {
  RedisUrl url;
  std::string host;  // the results' `host` and the heartbeat key's name
  std::chrono::milliseconds heartbeat{500};  // also renews leases and bounds each command
  std::chrono::milliseconds lease{1500};  // an entry not renewed this long may be claimed
  int max_deliveries = 3;  // a task delivered this often (each host died) is poison
  // Tasks taken beyond what can start now; nothing: Inbox::ReadAhead decides.
  std::optional<size_t> prefetch;
  std::chrono::milliseconds block{500};  // how long one read waits for work
  // A stream's oldest waiting task older than this, and no room for it
  // here: take it anyway and queue it, so this host reserves for it
  // (scheduler.reserve_after_ms).
  std::chrono::milliseconds reserve_after{1000};
  // How long a result stays under umi:result:<id> for lookups by id
  // (dedup.window_s); 0: not kept.
  std::chrono::milliseconds keep_results{300000};
};

class RedisTransport final : public Transport {
 public:
  // The heartbeat hash says what Inbox::load says; readiness (the farm can
  // take results now, or cannot) goes to Inbox::ReadyChanged, counters and
  // backlog to Inbox::FarmReported at every heartbeat.
  explicit RedisTransport(RedisTransportOptions options);
  ~RedisTransport() override;

  // The plugins whose streams this host reads; a reload may change them.
  void SetPlugins(const std::set<std::string>& plugins) override;
  void KeepResultsFor(std::chrono::milliseconds keep) override { results_.KeepFor(keep); }

  Status Open(Poller& poller, Inbox& inbox) override;
  std::map<std::string, std::string> endpoints() const override { return {{"redis", options_.url.Redacted()}}; }
  void Send(std::string_view body, const ReplyRoute& route, const TaskFingerprint* kept_as) override;
  // A flow read from a stream: opened in Redis, its steps spread over the
  // farm's hosts (redis_flows.h).
  bool TakeFlow(const FlowMessage& flow, const ReplyRoute& route, const TaskFingerprint& fingerprint) override;
  bool SpreadsFlows() const override { return true; }
  // Whether a live host of the farm offers `plugin`: at the last look at
  // the farm (every 5 s, with the unserved plugins), or at a new look when
  // that one did not name it and is more than a second old.
  bool ServedElsewhere(const std::string& plugin) override;
  // Marks a flow in progress in the farm cancelled (redis_scripts::kCancelFlow).
  bool CancelFlow(const std::string& id) override;
  bool GiveBack(const ReplyRoute& route) override;
  void Starting(const ReplyRoute& route) override;
  void FlushStarting() override;
  size_t waiting() const override;  // held, and on their way
  // Results held, heartbeat and leases, claims, the next read: all of a
  // turn's Redis work, sent before the turn's tasks run.
  void BeforeTasks() override;
  size_t Flush(std::chrono::steady_clock::time_point deadline) override;

  const std::string& consumer() const { return consumer_; }
  // The host drains: ends a blocking read under way, so tasks added from now
  // on wait for other hosts (Inbox::Room says 0 from now on).
  void StopReading() override;

 private:
  using Clock = std::chrono::steady_clock;
  // In the order Connect loads them.
  enum class Script {
    kPublishResults, kRenewLeases, kGiveBack, kHeartbeat, kDropConsumer, kClaimLapsed, kTakeLevels, kPlanTake,
    kOpenFlow, kEndStep, kCancelFlow, kCount
  };

  // When the loop must come back: a heartbeat, a claim, a retry.
  std::optional<std::chrono::milliseconds> RetryIn() const;
  Status Connect(std::chrono::milliseconds timeout);
  // Another live process uses this host's name: an error saying so.
  Status CheckNameIsFree();
  // Redis has been up and hosts have beaten without a gap for a lease and
  // the longest backoff: a lapsed lease now is its holder's own.
  bool RedisWasCalm();
  bool EnsureConnected();
  void Disconnected(const Status& why);
  void SetReady();
  std::vector<std::string> Eval(Script script, const std::string& key, std::vector<std::string> args) const;
  void StartRead();
  // Ends the outstanding read early when a stream it does not read gained room
  // (a GPU freed while the read waits on CPU streams).
  void RereadIfRoomMoved();
  void OnReadable();
  // A kPlanTake reply: reads each planned stream's count.
  void ReadPlanned(const redisReply* counts);
  // Reads by the last plan when it is fresh and names at most one level per
  // plugin; false: a plan is needed.
  bool ReadAsPlanned(const std::vector<std::pair<std::vector<std::string>, size_t>>& wanted);
  // `script` (kTakeLevels or kPlanTake) for each plugin's streams (highest
  // level first) and count.
  std::vector<std::string> LevelsCommand(Script script,
                                         const std::vector<std::pair<std::vector<std::string>, size_t>>& wanted) const;
  // `epoch`: the fence epoch the read was sent in (FenceEpochOfReads for
  // reader_, fence_epoch_ for a command on writer_).
  // What other hosts of the farm answered, by task id (FindAnswered).
  using Answers = std::map<std::string, std::shared_ptr<const AnsweredElsewhere>>;
  void HandleEntries(const redisReply* streams, uint64_t epoch, const Answers& answered = {});
  void MarkRunsOnArrival(const std::string& stream);
  // `claimed_from`: the consumer whose lapsed lease it was taken from; empty for a read.
  // `answered`: what other hosts answered for ids read now.
  void HandleEntry(const std::string& stream, const redisReply* entry, long long deliveries,
                   const std::string& claimed_from, uint64_t epoch, const Answers& answered = {});
  // Duplicate ids across the farm: the ids of `streams`' entries (not a
  // flow's steps) to look up in umi:result:<id>, where a host that answered
  // one within the window kept its result and fingerprint; none when
  // results are not kept. A read's lookup is one MGET sent on reader_ behind it, so the
  // loop never waits for it (LookUp, then OnReadable hands the entries on
  // with what it found).
  std::vector<std::string> IdsToLookUp(const redisReply* streams) const;
  Status LookUp(RedisReply read, std::vector<std::string> ids);
  // What an MGET of the ids' umi:result keys found (SplitFingerprint).
  static Answers AnsweredFrom(const redisReply* kept, const std::vector<std::string>& ids);
  // The same, waiting for Redis (a single entry taken to reserve for it).
  Answers FindAnswered(const redisReply* streams);
  // One fingerprint key for the farm (umi:fingerprint-key), taken in Open,
  // before any task is fingerprinted; offered again at each reconnect.
  void ShareFingerprintKey();
  // The route's fingerprint to keep with its result, if it was made with
  // the farm's key.
  std::optional<TaskFingerprint> SharedFingerprint(const TaskFingerprint* fingerprint) const;
  // reader_.Send for a read; the first of a run of reads in flight notes
  // the fence epoch it was sent in.
  Status SendRead(const std::vector<std::string>& args);
  void RenewLeases();
  // Takes entries whose lease lapsed, up to the room; true when some were
  // left for want of room.
  bool ClaimLapsed();
  void DropIdleConsumers();
  void ReadUnserved();
  void Heartbeat();
  // Reads the backlog, trims done entries; returns, per plugin, how long its
  // oldest waiting task has waited.
  std::map<std::string, std::chrono::milliseconds> ReadBacklog();
  // Takes one task of each plugin whose oldest waiting task passed
  // reserve_after, where Inbox::MayHoldStarving says so.
  void TakeStarving(const std::map<std::string, std::chrono::milliseconds>& oldest_waiting);
  // RedisResults::Write and TakeReplies, with what their failure means here.
  void WriteResults();
  void TakeResults();
  // `flow`: the flow the entry is a step of (its answer ends the step); empty: none.
  // `keep`: kept for lookups by id (a task's last answer, not a refusal).
  void Answer(const std::string& stream, const std::string& id, const std::string& reply_to,
              const std::optional<std::string>& task_id, const std::string& flow, const std::string& body,
              bool keep = false);

  RedisTransportOptions options_;
  std::string consumer_;
  bool fingerprint_key_shared_ = false;
  bool fingerprinting_ = false;  // Open is done: tasks may have been fingerprinted
  std::set<std::string> farm_plugins_;  // offered by the farm's live hosts (ReadUnserved)
  std::chrono::steady_clock::time_point farm_plugins_read_{};
  Inbox* inbox_ = nullptr;
  std::set<std::string> plugins_;
  std::set<std::string> grouped_;  // streams whose group exists
  RedisConnection reader_, writer_;
  std::string script_sha_[static_cast<size_t>(Script::kCount)];
  size_t replies_due_ = 0;  // reads sent on reader_ and not answered yet
  std::deque<bool> reply_is_lookup_;  // per reply due on reader_: a lookup's MGET (true) or a read
  struct AwaitingLookup {
    RedisReply read;
    uint64_t epoch;
    std::vector<std::string> ids;
  };
  std::deque<AwaitingLookup> awaiting_lookup_;  // reads whose lookup's reply is due
  std::vector<std::string> planned_;  // while a kPlanTake reply is due: its streams, in order
  // From the last plan, per plugin of one level (or none: empty) with
  // entries; read alone until plan_fresh_until_.
  static constexpr auto kPlanFresh = std::chrono::milliseconds(20);
  // A consumer with nothing pending and idle this long is removed from the group.
  static constexpr auto kIdleConsumer = std::chrono::minutes(1);
  std::map<std::string, std::string> single_levels_;
  Clock::time_point plan_fresh_until_{};
  bool blocking_read_ = false;  // the outstanding read is the blocking one
  bool draining_streams_ = false;  // the last read brought entries: read each stream's own count, unblocked
  std::set<std::string> read_streams_;  // the streams it reads
  long long reader_id_ = 0;  // CLIENT ID of reader_, to unblock its read
  Clock::time_point reconnect_at_{}, next_heartbeat_{}, next_claim_{}, claim_from_{},
      next_consumer_sweep_{}, next_unserved_read_{};
  std::chrono::milliseconds backoff_{100};
  bool displaced_ = false;  // another process took this host's name
  bool ready_ = false;  // as last told Inbox::ReadyChanged
  RedisResults::Leases leases_;
  uint64_t read_epoch_ = 0;  // the fence epoch the oldest read in flight on reader_ was sent in
  std::set<std::string> marked_on_arrival_;  // streams whose every entry here counts as started
  FarmReport report_;
  RedisResults results_;  // after what it refers to
};

}  // namespace umi
