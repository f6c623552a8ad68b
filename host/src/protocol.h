// Protocol v1 codec: msgpack task and control messages in, results out.
//
// docs/protocol.md is the wire reference. DecodeMessage never throws: any
// byte string yields a TaskMessage, a ControlRequest or a BadMessage that
// carries the task id when one could be read, so the host can answer it.
// Decoding limits nesting depth and container sizes so hostile input costs
// bounded memory.
//
// Thread safety: stateless functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "requirement.h"
#include "resource_pool.h"

namespace umi {

inline constexpr int kProtocolVersion = 1;
inline constexpr size_t kMaxIdBytes = 256;
inline constexpr size_t kMaxPluginNameBytes = 64;
// The numbers a task may carry share the config's bounds (hardware_config.h);
// timeout_ms is at most kMaxMs, so a deadline always fits in nanoseconds.

struct TaskMessage {
  std::string id;
  std::string plugin;
  std::string input_msgpack;  // always a msgpack map
  int64_t priority = 0;
  int64_t timeout_ms = 0;  // 0: none
  std::optional<RequirementOverride> resources;
};

struct ControlRequest {
  std::string op;
  std::string id;  // for ops that name a task
};

struct BadMessage {
  std::optional<std::string> id;
  std::string plugin;
  std::string code;  // bad_request, unsupported_version
  std::string message;
};

using Message = std::variant<TaskMessage, ControlRequest, BadMessage>;

Message DecodeMessage(std::string_view bytes);

// What makes two messages the same task: plugin, input and resources. A
// retry carries the same fingerprint; another task reusing the id does not.
uint64_t Fingerprint(const TaskMessage& task);

enum class TaskStatus { kOk, kError, kRejected, kTimeout, kCancelled, kCrashed };
const char* ToString(TaskStatus status);

struct TaskResult {
  std::optional<std::string> id;
  std::string plugin;
  TaskStatus status = TaskStatus::kOk;
  std::string output_msgpack;  // a msgpack map, for kOk
  std::string error_code;      // for every status but kOk
  std::string error_message;
  double queued_ms = 0;
  double run_ms = 0;
  std::optional<double> started_at;  // Unix seconds
  std::optional<double> finished_at;
  std::optional<Allocation> allocation;

  static TaskResult Rejected(std::optional<std::string> id, std::string plugin, std::string code,
                             std::string message);
};

std::string EncodeResult(const TaskResult& result, std::string_view host);

// Events (the events socket): the body of task.queued and task.started, and
// of task.progress (fraction clamped to 0..1; an empty message is left out).
std::string EncodeTaskEvent(std::string_view id, std::string_view plugin);
std::string EncodeProgressEvent(std::string_view id, std::string_view plugin, double fraction,
                                std::string_view message);

// Control replies (docs/protocol.md, "Control requests").
std::string EncodeControlOk();                                              // {ok: true}
std::string EncodeControlError(std::string_view code, std::string_view message);  // {ok: false, error}
std::string EncodeHealthReply(bool draining, std::string_view host, size_t plugins);
std::string EncodeCancelReply(std::string_view state);  // "queued" or "running"
std::string EncodeReloadReply(const std::vector<std::string>& loaded, const std::vector<std::string>& refused,
                              const std::vector<std::string>& restart_needed);

}  // namespace umi
