// Protocol v1 codec: msgpack task and control messages in, results out.
//
// docs/protocol.md is the wire reference. DecodeMessage never throws: any
// byte string yields a TaskMessage, a ControlRequest, a FlowMessage (a
// message with `flow`: scheduling/flow.h) or a BadMessage that
// carries the task id when one could be read, so the host can answer it.
// Decoding limits nesting depth and container sizes so hostile input costs
// bounded memory.
//
// Thread safety: stateless functions.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/requirement.h"
#include "common/fingerprint.h"
#include "common/status.h"
#include "scheduling/flow.h"
#include "scheduling/task.h"

namespace umi {

inline constexpr int kProtocolVersion = 1;
inline constexpr size_t kMaxIdBytes = 256;
inline constexpr size_t kMaxPluginNameBytes = 64;
// The numbers a task may carry share the config's bounds (hardware_config.h);
// timeout_ms is at most kMaxMs, so a deadline always fits in nanoseconds.

struct ControlRequest {
  std::string op;
  std::string id;  // for ops that name a task
};

struct BadMessage {
  std::optional<std::string> id;
  std::string plugin;
  Status status;  // kBadRequest or kUnsupportedVersion, and why
};

using Message = std::variant<TaskMessage, ControlRequest, BadMessage, FlowMessage>;

Message DecodeMessage(std::string_view bytes);

// The top-level string fields of a task map a transport needs (a farm's,
// to route an entry and answer it), without decoding the task; each absent
// when missing or not a string, all of them when the bytes are not msgpack.
struct TaskFields {
  std::optional<std::string> id, plugin, reply_to, step_of;
};
TaskFields PeekTaskFields(std::string_view bytes);

// What makes two messages the same task: plugin, input and resources. A
// retry carries the same fingerprint; another task reusing the id does not,
// even one made to: the hash (XXH3-128) is keyed with a secret drawn at
// random once per process.
TaskFingerprint Fingerprint(const TaskMessage& task);
// A flow's: the whole `flow` map as sent.
TaskFingerprint Fingerprint(const FlowMessage& flow);

// The fingerprints' key, for a farm whose hosts share one (so that a retry
// read by any host matches the result another host kept): RedisTransport
// reads it from Redis at its first connect, before any task is
// fingerprinted, and the loop's thread is the only one that fingerprints.
inline constexpr size_t kFingerprintSecretBytes = 192;
std::string FingerprintKey();
// False (and the key unchanged) unless `key` has kFingerprintSecretBytes.
bool UseFingerprintKey(std::string_view key);
// A result as a farm keeps it for lookups by id: the result map with
// `fingerprint` (16 bytes, bin) added last, what a retry read by another
// host is compared with. SplitFingerprint gives back the result as it was
// sent, byte for byte, and the fingerprint; nothing when `kept` has none.
std::string WithFingerprint(std::string result, const TaskFingerprint& fingerprint);
// The pair WithFingerprint appends: `fingerprint` and its 16 bytes, packed.
std::string FingerprintField(const TaskFingerprint& fingerprint);
std::optional<std::pair<std::string, TaskFingerprint>> SplitFingerprint(std::string_view kept);

// The wire word of a code: "bad_request", "infeasible", ... (docs/protocol.md,
// "Error codes"). The one table between ErrorCode and the protocol.
std::string_view WireCode(ErrorCode code);

// A task refused before it was queued (rejected/<code>), or ended by the
// host with `status` (cancelled, timeout, crashed, error) and `why`.
TaskResult RejectedResult(std::optional<std::string> id, std::string plugin, const Status& why);
TaskResult EndedResult(std::optional<std::string> id, std::string plugin, TaskStatus status, const Status& why);

std::string EncodeResult(const TaskResult& result, std::string_view host);
// The same into `out` (cleared first), whose buffer a caller can reuse.
void EncodeResultInto(const TaskResult& result, std::string_view host, std::string& out);

// Events (the events socket): the body of task.queued and task.started, and
// of task.progress (fraction clamped to 0..1; an empty message is left out).
// task.queued and task.started; `flow`: the flow of a step (empty: none).
std::string EncodeTaskEvent(std::string_view id, std::string_view plugin, std::string_view flow = {});
std::string EncodeProgressEvent(std::string_view id, std::string_view plugin, double fraction,
                                std::string_view message);
// task.retrying: run `attempts` failed with `code` and the task runs again in `retry_in_ms`.
std::string EncodeRetryEvent(std::string_view id, std::string_view plugin, int attempts, int64_t retry_in_ms,
                             std::string_view code, std::string_view message);

// Control replies (docs/protocol.md, "Control requests").
std::string EncodeControlOk();                                              // {ok: true}
std::string EncodeControlError(const Status& why);  // {ok: false, error: {code, message}}
// `map` (an encoded msgpack map) with `key: value` added.
std::string WithStringField(std::string map, std::string_view key, std::string_view value);
// `map` with `key` and a value already packed (`packed_value`) added.
std::string WithPackedField(std::string map, std::string_view key, std::string_view packed_value);
std::string EncodeHealthReply(bool draining, std::string_view host, size_t plugins);
std::string EncodeCancelReply(std::string_view state);  // "queued" or "running"
// {ok: true, state}, and `result` (the stored result, encoded) when there is one.
std::string EncodeResultReply(std::string_view state, std::string_view stored_result = {});
// `applied`: the changed keys now in force (config/reload_plan.h).
std::string EncodeReloadReply(const std::vector<std::string>& loaded, const std::vector<std::string>& refused,
                              const std::vector<std::string>& restart_needed, const std::vector<std::string>& applied);
// The `stats` map (telemetry.h, Telemetry::Stats) with ok: true.
std::string EncodeStatsReply(nlohmann::json stats);

}  // namespace umi
