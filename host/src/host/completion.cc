#include "host/completion.h"

#include <msgpack.hpp>

namespace umi {
namespace {

// Checked without building objects (no zone, no allocation for a flat map).
bool IsMsgpackMap(const std::string& bytes) {
  if (bytes.empty()) return false;
  const auto first = static_cast<uint8_t>(bytes[0]);
  const bool map = (first >= 0x80 && first <= 0x8f) || first == 0xde || first == 0xdf;  // fixmap, map16, map32
  if (!map) return false;
  try {
    msgpack::null_visitor visitor;
    size_t offset = 0;
    return msgpack::parse(bytes.data(), bytes.size(), offset, visitor) && offset == bytes.size();
  } catch (const std::exception&) {
    return false;
  }
}

void Fail(TaskResult& result, TaskStatus status, std::string code, std::string message) {
  result.status = status;
  result.error_code = std::move(code);
  result.error_message = std::move(message);
}

void Fail(TaskResult& result, TaskStatus status, ErrorCode code, std::string message) {
  Fail(result, status, std::string(WireCode(code)), std::move(message));
}

}  // namespace

TaskResult CompleteRun(const TaskMessage& task, Allocation allocation, RunOutcome outcome) {
  TaskResult result;
  result.id = task.id;
  result.plugin = task.plugin;
  result.flow = task.flow;
  result.queued_ms = outcome.queued_ms;
  result.run_ms = outcome.run_ms;
  result.started_at = outcome.started_at;
  result.finished_at = outcome.finished_at;
  result.allocation = std::move(allocation);
  if (outcome.cancel_requested) {
    Fail(result, TaskStatus::kCancelled, ErrorCode::kCancelled, "cancelled by request while running");
  } else if (outcome.timed_out) {
    Fail(result, TaskStatus::kTimeout, ErrorCode::kTimeout,
         "ran past timeout_ms=" + std::to_string(task.timeout_ms) +
             (outcome.killed ? "; its worker process was killed after the grace period" : ""));
  } else if (outcome.drain_cancelled) {
    Fail(result, TaskStatus::kCancelled, ErrorCode::kCancelled, "cancelled: the host was shutting down past its drain timeout");
  } else if (outcome.crashed) {
    Fail(result, TaskStatus::kCrashed, ErrorCode::kCrashed,
         outcome.error_code.empty() ? "the plugin's worker process died" : outcome.error_message);
  } else if (!outcome.error_code.empty()) {
    Fail(result, TaskStatus::kError, outcome.error_code, outcome.error_message);
    result.error_detail = std::move(outcome.error_detail);
  } else if (!outcome.output_msgpack.empty() && !IsMsgpackMap(outcome.output_msgpack)) {
    Fail(result, TaskStatus::kError, ErrorCode::kBadOutput, "the plugin's output is not a msgpack map");
  } else {
    result.output_msgpack = std::move(outcome.output_msgpack);
  }
  return result;
}

}  // namespace umi
