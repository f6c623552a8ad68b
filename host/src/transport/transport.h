// The transport seam: how tasks reach the host and how answers leave it.
//
// A Transport delivers each message it reads to the Inbox together with a
// ReplyRoute naming itself as the route's sink; whatever answers the
// message later (at once, or when the task ends) hands the encoded answer
// to that sink. So the loop, admission, scheduling and execution never
// know which wire a task came over. ZeroMQ (zmq_transport.h) is the first
// implementation; a second one adds a file pair, not code in the loop.
//
// Backpressure: the transport asks Inbox::accepting_tasks() before it reads
// each task and leaves tasks where they are (in the peer's queue, in the
// stream) while it is false; it also stops reading while its own answers
// wait beyond its bound.
//
// Thread safety: everything on the loop's thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "common/farm_report.h"

#include "common/status.h"
#include "scheduling/task.h"

namespace umi {

class Poller;

// What a host is doing, for a transport that tells others (a farm's
// heartbeat).
struct HostLoad {
  size_t running = 0;
  size_t queued = 0;
  bool draining = false;
  int64_t cpu_threads_used = 0, cpu_threads_total = 0;
  int64_t memory_mb_used = 0, memory_mb_total = 0;
  int gpus_busy = 0, gpus_total = 0;
};

// Where a transport hands what it reads.
class Inbox {
 public:
  virtual ~Inbox() = default;
  // False while the host takes no tasks (queue full, draining).
  virtual bool accepting_tasks() const = 0;
  // How many tasks of `plugin` could start now (a pulling transport takes
  // no more than that).
  virtual size_t Room(const std::string& plugin) const = 0;
  // How many more than `room` a pulling transport may take at once: what
  // the host would finish within a short window at the plugin's recent run
  // time (0 for tasks it has not timed yet, and for any but short ones).
  virtual size_t ReadAhead(const std::string& plugin, size_t room) const = 0;
  // Whether tasks of `plugin` run inside the host as they arrive, one after
  // another (run_inline): a transport marks a read's tasks of it as started
  // together.
  virtual bool RunsOnArrival(const std::string&) const { return false; }
  // Whether this host may take a task of `plugin` that no host could start
  // for long and queue it, to reserve for it (no starvation across hosts):
  // its pool could run it, and none of it is queued here already.
  virtual bool MayHoldStarving(const std::string&) const { return false; }
  // One message, undecoded; `route.sink` is the transport that read it.
  virtual void Deliver(std::string_view bytes, ReplyRoute route) = 0;

  // What a transport reports back (each a no-op unless the host counts it).
  // `n` answers could not be delivered (the client is gone, or nobody took
  // them by the end of a drain).
  virtual void RepliesDropped(size_t /*n*/) {}
  // The transport can (or cannot) deliver answers now: readiness.
  virtual void ReadyChanged(bool /*ready*/) {}
  // A farm transport's counters and backlog, at each of its heartbeats.
  virtual void FarmReported(const FarmReport&) {}
  // What the host is doing now.
  virtual HostLoad load() const { return {}; }
};

// task.* events for whoever listens.
class EventSink {
 public:
  virtual ~EventSink() = default;
  // False when nobody listens: callers skip even encoding the event.
  virtual bool listening() const = 0;
  virtual void Publish(std::string_view topic, std::string_view body) = 0;
};

class Transport : public ResultSink {
 public:
  // Binds or connects, and registers with `poller`; messages go to `inbox`.
  virtual Status Open(Poller& poller, Inbox& inbox) = 0;
  // Endpoints as bound (ports resolved), by name.
  virtual std::map<std::string, std::string> endpoints() const = 0;
  // Answers not yet taken by their reader.
  virtual size_t waiting() const = 0;
  // Called once per loop turn, after the poll's handlers and before tasks
  // start: a pulling transport sends its next read here, so that Redis
  // works while the turn's tasks run.
  virtual void BeforeTasks() {}
  // Called once per loop turn, last: sends the turn's answers, retries what
  // waits (a transport that must come back even if nothing happens
  // registers a timer with the Poller in Open).
  virtual void AfterPoll() {}
  // The end of a drain: tries to deliver what waits until `deadline`; then
  // counts the rest as dropped and returns how many.
  virtual size_t Flush(std::chrono::steady_clock::time_point deadline) = 0;

  // The plugins this host runs (a reload may change them): a pulling
  // transport reads only their tasks. Called before Open, and after.
  virtual void SetPlugins(const std::set<std::string>& /*plugins*/) {}
  // The host drains: a pulling transport ends a read under way and takes
  // nothing more.
  virtual void StopReading() {}
  // Answers a transport holds before it stops reading tasks (a reload may
  // change it; transport.max_pending_results).
  virtual void SetMaxPendingResults(int64_t /*limit*/) {}
  // How long a transport that stores results for lookups by id keeps each
  // (dedup.window_s; a reload may change it).
  virtual void KeepResultsFor(std::chrono::milliseconds /*keep*/) {}
  // Cancels a flow this transport runs elsewhere (a farm spreads flows over
  // its hosts): true when it found the flow in progress. Called when no
  // task or flow of that id is here.
  virtual bool CancelFlow(const std::string& /*id*/) { return false; }
  // Its answers wait beyond that bound: it reads no tasks now.
  virtual bool backlogged() const { return false; }
  // Closes what it opened, delivering what it can on the way (an exit
  // without a drain).
  virtual void Close() {}
};

}  // namespace umi
