// TaskLedger: which task ids are active (queued or running) and how each
// accepted task ends: exactly one answer, sent on the task's own route,
// counted in telemetry, published as task.finished to whoever listens, and
// remembered in the dedup window with the task's fingerprint so a retry gets
// the same bytes back.
//
// A message that was never accepted (a refusal) is answered without touching
// the ledger: a duplicate of a task still queued or running must leave that
// task's entry alone.
//
// Time is passed in through the Clock: tests use a ManualClock.
//
// Thread safety: none; the event loop owns it.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>

#include "common/clock.h"
#include "host/result_cache.h"
#include "scheduling/task.h"
#include "telemetry/telemetry.h"
#include "transport/transport.h"

namespace umi {

class TaskLedger {
 public:
  // `host`: the `host` field of every result; `events`: where task.finished goes.
  TaskLedger(std::string host, const Clock& clock, Telemetry& telemetry, EventSink& events,
             Clock::Duration dedup_window, size_t dedup_max_entries);

  // What admission needs to know about an id.
  bool active(const std::string& id) const { return active_.count(id) > 0; }
  const ResultCache::Entry* finished(const std::string& id, Clock::TimePoint now) { return finished_.Find(id, now); }
  // The key of the active task with this id; 0 if none.
  uint64_t KeyOf(const std::string& id) const;

  void Accepted(const std::string& id, uint64_t key, TaskFingerprint fingerprint);
  // An active task queued again under a new key (a retry's next run).
  void Rekey(const std::string& id, uint64_t key);
  // The task went back to its transport unanswered (another host runs it).
  void Forget(const std::string& id) { active_.erase(id); }
  // Ends an accepted task. `key`: its key if it started (for the timeline),
  // else 0; `ran`: the timeline record of an inline run (Telemetry::TaskFinished).
  void End(const TaskResult& result, const ReplyRoute& route, uint64_t key = 0, TaskRecord* ran = nullptr);
  // Ends an accepted flow (host/flow_runner.h): as End, but not counted as a
  // task (its steps were).
  void EndFlow(const TaskResult& result, const ReplyRoute& route);
  // Answers a message that was never accepted.
  void Refuse(const TaskResult& result, const ReplyRoute& route);

  // A reload may change the dedup window.
  void SetDedupLimits(Clock::Duration window, size_t max_entries) { finished_.SetLimits(window, max_entries); }
  size_t active_count() const { return active_.size(); }

 private:
  struct Active {
    uint64_t key;
    TaskFingerprint fingerprint;
  };
  // `fingerprint`: the answered task's; none for a refusal.
  void Answer(const TaskResult& result, const ReplyRoute& route, uint64_t key,
              std::optional<TaskFingerprint> fingerprint, TaskRecord* ran = nullptr, bool counted = true);
  // The fingerprint of an active id, which leaves the active set.
  std::optional<TaskFingerprint> Release(const std::optional<std::string>& id);

  const std::string host_;
  const Clock& clock_;
  Telemetry& telemetry_;
  EventSink& events_;
  std::unordered_map<std::string, Active> active_;
  std::unordered_map<std::string, Active>::node_type spare_active_;  // reused by the next Accepted
  ResultCache finished_;
  std::string encoded_;  // each answer is encoded here: its buffer is reused
};

// Sends `body` on `route` (nowhere when the route has no sink); `kept_as`:
// ResultSink::Send's.
inline void SendOn(const ReplyRoute& route, std::string_view body, const TaskFingerprint* kept_as = nullptr) {
  if (route.sink) route.sink->Send(body, route, kept_as);
}

}  // namespace umi
