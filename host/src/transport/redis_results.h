// RedisResults: how a farm host's results reach Redis, each exactly once:
// XADD to the task's reply_to and XACK of its entry, only while this
// process's consumer still holds the entry (docs/scale-out.md, "Fenced
// results"). Two ways:
//
//   watched   the turn's results in one MULTI/EXEC sent after WATCH
//             umi:fence, a counter every claim increments: the EXEC runs
//             only if no entry changed hands since the watch began. Only
//             for entries read in the current fence epoch (after the fence
//             was last seen unchanged) and reply_to streams that took a
//             result before (inside a transaction a failed XADD does not
//             stop its XACK).
//   scripted  redis_scripts::kPublishResults, one call per task stream,
//             which looks each entry up in the pending list: everything
//             else (an aborted EXEC, a moved fence, a first result to a
//             reply_to, anything after a reconnect).
//
// Each result's fate is its own: a stale one (another host holds its
// entry) is dropped and counted; a refused one (OOM, READONLY, NOPERM, ...)
// is held and retried with backoff; one whose reply_to cannot take a
// stream entry goes to umi:results with the reason. Calls go out without
// waiting; TakeReplies reads their replies when the connection is
// readable.
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
#include <utility>
#include <vector>

#include "common/farm_report.h"
#include "common/fingerprint.h"
#include "common/status.h"
#include "transport/redis_connection.h"

namespace umi {

class RedisResults {
 public:
  using Clock = std::chrono::steady_clock;
  // What a held write does with its entry.
  enum class Write {
    kResult,    // writes `body` to reply_to
    kOpenFlow,  // opens the flow `flow` (redis_scripts::kOpenFlow with `args`)
    kEndStep,   // records the end of a step of `flow` (kEndStep with `args`)
  };
  struct Result {
    std::string stream, entry, reply_to, body, task_id;
    Write write = Write::kResult;
    std::string flow{};
    std::vector<std::string> args{};
    bool keep = false;  // kResult: kept under umi:result:<task_id> for lookups by id
    std::optional<TaskFingerprint> fingerprint{};  // the task's, kept with its result (WithFingerprint)  // the script's arguments after (group, consumer, entry, started key)
  };
  // The SHAs of the scripts results are written by.
  struct Scripts {
    std::string publish, open_flow, end_step;
  };
  // stream -> entry this process holds -> the fence epoch it was read in.
  using Leases = std::map<std::string, std::map<std::string, uint64_t>>;

  // `leases`: the transport's; a result written or found stale leaves it.
  // `report`: stale and redirected results are counted there. `host`: the
  // results' `host` (a flow's result is encoded here).
  RedisResults(RedisConnection& writer, const std::string& consumer, const std::string& host, Leases& leases,
               FarmReport& report)
      : writer_(writer), consumer_(consumer), host_(host), leases_(leases), report_(report) {}

  // After each connect: the scripts to write by; whatever this host read
  // before may have changed hands while it was away.
  void Connected(Scripts scripts);
  // How long a written result is kept under umi:result:<id> for lookups by
  // id (dedup.window_s); 0: not kept. Default 300 s.
  void KeepFor(std::chrono::milliseconds keep_for) { keep_for_ = keep_for; }
  std::chrono::milliseconds kept_for() const { return keep_for_; }
  // The connection broke: results whose call got no reply are held again
  // (sent again by script, which writes nothing twice).
  void Disconnected();

  void Hold(Result result) { held_.push_back(std::move(result)); }
  // Sends what is held (unless a refusal's backoff runs); an error: the
  // connection broke.
  Status Write();
  // Takes the replies that came; an error: connect again (the connection
  // broke, the scripts are gone, or the server is a replica now).
  Status TakeReplies();

  // The fence epoch an entry read now is in.
  uint64_t epoch() const { return fence_epoch_; }
  size_t held() const { return held_.size(); }
  size_t waiting() const;  // held, waiting for the watch, and on their way
  bool idle() const { return held_.empty() && awaiting_fence_.empty() && calls_.empty(); }
  // Redis refused a result and has not taken one since: not ready.
  bool refused() const { return refused_; }
  // When Write has something to send; none: nothing held.
  std::optional<Clock::time_point> due() const;
  // Entries whose result is on its way (they must not be renewed: the
  // renewal would find them acknowledged and take them for lost).
  std::set<std::pair<std::string, std::string>> InFlight() const;

 private:
  // A command whose reply TakeReplies reads: after `ignored_before` replies
  // it takes no notice of (WATCH, MULTI, QUEUED).
  struct Call {
    enum class Kind { kScript, kTransaction, kFence, kFlow } kind;
    size_t ignored_before = 0;
    std::vector<Result> results;  // kScript, kTransaction; kFlow: one
  };
  enum class Watch { kNone, kArming, kArmed };

  // Its entry was read in this fence epoch and its reply_to took a result before.
  bool Vouched(const Result& result) const;
  // WATCH umi:fence and GET it, their replies read later.
  Status ArmFence();
  // One MULTI/EXEC of `results` (XADD, then per stream XACK and HDEL of
  // the start marks), then ArmFence again.
  Status AppendTransaction(std::vector<Result> results);
  Status AppendScript(const std::string& stream, std::vector<Result> results);
  Status AppendFlowWrite(Result result);
  // What is kept under umi:result:<id>: the body, with the fingerprint if any.
  static std::string Kept(const Result& result);
  // A kFlow call's reply: what happened to `result`; a refusal's text, or empty.
  std::string TakeFlowWrite(const redisReply* reply, Result result, std::deque<Result>& refused);
  void TakeFence(const redisReply* value);
  // True when Redis carried it out; else the results go to `refused`.
  bool TakeTransaction(const redisReply* replies, std::vector<Result> results, std::deque<Result>& refused);
  void Forget(const Result& result);

  RedisConnection& writer_;
  const std::string& consumer_;
  const std::string& host_;
  Leases& leases_;
  FarmReport& report_;
  Scripts scripts_;
  std::chrono::milliseconds keep_for_{300000};
  std::deque<Result> held_;  // results of this turn, or waiting for Redis
  std::deque<Result> awaiting_fence_;  // vouched for, waiting for the watch's GET reply
  std::deque<Call> calls_;  // sent, their replies due in order
  // The fence: umi:fence as last read (nullopt: no key), and an epoch that
  // moves whenever that value may have changed (a new value, a reconnect,
  // an aborted transaction). An entry read in the current epoch, while the
  // watch still holds, cannot have been claimed from this host.
  Watch watch_ = Watch::kNone;
  bool fence_known_ = false;
  std::optional<std::string> fence_;
  uint64_t fence_epoch_ = 0;
  std::set<std::string> verified_reply_to_;  // streams that took a result (not another type, not refused)
  bool refused_ = false;
  Clock::time_point write_at_{};
  std::chrono::milliseconds refusal_backoff_{100};
};

}  // namespace umi
