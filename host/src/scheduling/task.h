// The task as every part of the host sees it: the message a producer sent
// (TaskMessage), where its answer goes (ReplyRoute, through a ResultSink), and
// how it ended (TaskResult). The protocol codec (transport/protocol.h) turns bytes into
// these and these into bytes; nothing else knows the wire.
//
// Thread safety: value types.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/fingerprint.h"
#include "common/requirement.h"
#include "common/retry_policy.h"
#include "scheduling/resource_pool.h"

namespace umi {

class ResultSink;  // below

struct TaskMessage {
  std::string id;
  std::string plugin;
  std::string input_msgpack;  // always a msgpack map
  int64_t priority = 0;
  int64_t timeout_ms = 0;  // 0: none
  std::optional<RequirementOverride> resources;
  std::optional<RetryPolicy> retry;  // none: the plugin's (plugins.<name>.retry), if any
  std::string flow;  // the flow this task is a step of (scheduling/flow.h); empty: none
};

// Where a task's answer goes: back through the transport that delivered it.
// `address` is that transport's own (an rpc client's routing frames, a
// stream entry); the rest of the host only carries it.
struct FlowMessage;

// A result another host of a farm wrote for an id within dedup.window_s,
// found by the transport that read a second submission of that id:
// admission weighs it as it weighs its own dedup window.
struct AnsweredElsewhere {
  std::string body;              // the result, encoded
  TaskFingerprint fingerprint;  // of the task or flow it answered
};

struct ReplyRoute {
  ResultSink* sink = nullptr;  // null: nowhere (unit tests)
  bool rpc = false;  // a request/reply peer: it may send control requests; a full queue answers it queue_full
  std::vector<std::string> address;
  // Set by the transport, read by admission (null: none found); a queued
  // task no longer carries it.
  std::shared_ptr<const AnsweredElsewhere> answered = nullptr;
};

// Where an answer goes: a result, a rejection or a control reply, encoded.
// Every transport is one (transport/transport.h); it is declared here, beside
// the route that names it, so that the layers below transport can carry a
// route without knowing any transport.
class ResultSink {
 public:
  virtual ~ResultSink() = default;
  // Copies `body` if it keeps it: the caller's buffer is reused.
  // `kept_as`: the fingerprint of the task it answers, for a sink that keeps
  // results for other hosts (a farm) and matches retries by it; null for a
  // refusal or a control reply, which are never kept.
  virtual void Send(std::string_view body, const ReplyRoute& route, const TaskFingerprint* kept_as) = 0;
  // A task taken but not started when the host drains: true when the
  // transport put it back for another host (it needs no answer); false:
  // answer it (rejected/shutting_down).
  virtual bool GiveBack(const ReplyRoute&) { return false; }
  // A task is about to run inside the host process (inline or on a worker
  // thread), where a crash takes the host down: a transport that redelivers
  // a dead host's tasks records it, so only tasks that were running are
  // charged a delivery, not those merely read ahead. Records of several
  // tasks starting together go out in one write at FlushStarting, which the
  // caller calls before any of them runs.
  virtual void Starting(const ReplyRoute&) {}
  virtual void FlushStarting() {}
  // A flow admitted here: true when the sink runs its steps itself (a farm
  // spreads them over its hosts, transport/redis_flows.h) and answers it;
  // the host then does nothing more with it. False: the host runs it.
  // `fingerprint`: the flow's, kept with its result (as Send's `kept_as`).
  virtual bool TakeFlow(const FlowMessage&, const ReplyRoute&, const TaskFingerprint& /*fingerprint*/) { return false; }
  // A sink that spreads flows over a farm's hosts (its TakeFlow takes them):
  // a flow it brings may name a step that only another live host runs.
  virtual bool SpreadsFlows() const { return false; }
  virtual bool ServedElsewhere(const std::string& /*plugin*/) { return false; }
};

enum class TaskStatus { kOk, kError, kRejected, kTimeout, kCancelled, kCrashed };
inline constexpr size_t kTaskStatusCount = 6;
const char* ToString(TaskStatus status);

// An error's detail (a traceback) is cut to this many bytes: a result stays small.
inline constexpr size_t kMaxErrorDetail = 4096;

struct TaskResult {
  std::optional<std::string> id;
  std::string plugin;
  TaskStatus status = TaskStatus::kOk;
  std::string output_msgpack;  // a msgpack map, for kOk (and for every status of a flow's result)
  bool output_whatever_status = false;  // a flow's result: its steps are its output, failed or not
  // For every status but kOk: the wire word (transport/protocol.h, WireCode)
  // or the code a plugin chose.
  std::string error_code;
  std::string error_message;
  std::string error_detail;  // kError from a plugin: more for people (a traceback, at most kMaxErrorDetail bytes)
  double queued_ms = 0;
  double run_ms = 0;
  std::optional<double> started_at;  // Unix seconds
  std::optional<double> finished_at;
  std::optional<Allocation> allocation;
  int attempts = 0;  // runs of a task with a retry policy, retries included; 0: no policy (not sent)
  std::string flow;  // a step's flow (its task's `flow`); empty: not sent
};

}  // namespace umi
