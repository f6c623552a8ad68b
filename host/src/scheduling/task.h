// The task as every part of the host sees it: the message a producer sent
// (TaskMessage), where its answer goes (ReplyRoute), and how it ended
// (TaskResult). The protocol codec (transport/protocol.h) turns bytes into
// these and these into bytes; nothing else knows the wire.
//
// Thread safety: value types.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/requirement.h"
#include "scheduling/resource_pool.h"

namespace umi {

class ResultSink;  // transport/transport.h

struct TaskMessage {
  std::string id;
  std::string plugin;
  std::string input_msgpack;  // always a msgpack map
  int64_t priority = 0;
  int64_t timeout_ms = 0;  // 0: none
  std::optional<RequirementOverride> resources;
};

// Where a task's answer goes: back through the transport that delivered it.
// `address` is that transport's own (an rpc client's routing frames, a
// stream entry); the rest of the host only carries it.
struct ReplyRoute {
  ResultSink* sink = nullptr;  // null: nowhere (unit tests)
  bool rpc = false;  // a request/reply peer: it may send control requests; a full queue answers it queue_full
  std::vector<std::string> address;
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
  std::string output_msgpack;  // a msgpack map, for kOk
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
};

}  // namespace umi
