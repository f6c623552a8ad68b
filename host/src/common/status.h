// Status: the outcome of an operation that can fail in an expected way, as a
// code and a message for people. Status() is success. StatusOr<T> (status_or.h)
// is a value or the Status saying why there is none.
//
// ErrorCode names every failure umi reports. The ones a task or a control
// request can end with have a wire word (bad_request, infeasible, ...); that
// table lives in one place, the protocol codec (transport/protocol.h,
// WireCode). Codes a plugin chooses itself are not in the enum: they travel
// as the plugin's own strings.
//
// Thread safety: a value type.
#pragma once

#include <string>
#include <utility>

namespace umi {

enum class ErrorCode {
  kOk = 0,
  // A task or request refused at the door.
  kBadRequest,
  kUnsupportedVersion,
  kUnknownPlugin,
  kInfeasible,
  kQueueFull,
  kShuttingDown,
  kDuplicateId,
  kIdConflict,
  // A task the host ended.
  kCancelled,
  kTimeout,
  kCrashed,
  kMaxDeliveries,  // every host that took the task died (Redis Streams)
  kPluginError,  // a plugin failed without naming a code
  kBadOutput,    // a plugin's output is not a msgpack map
  // Control requests.
  kNotFound,
  kUnknownOp,
  kInvalidConfig,
  // Inside the host: what an operator reads in a log or an error message.
  kIoError,      // a file, socket or listener could not be used
  kUnavailable,  // a resource (pool, device, worker) cannot serve it now
  kInternal,
};

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}

  bool ok() const { return code_ == ErrorCode::kOk; }
  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // The same failure with `context` in front: "tasks socket: cannot bind".
  Status Prefixed(const std::string& context) const {
    return ok() ? *this : Status(code_, context + ": " + message_);
  }

  friend bool operator==(const Status&, const Status&) = default;

 private:
  ErrorCode code_ = ErrorCode::kOk;
  std::string message_;
};

// The enum's name for logs and tests ("kBadRequest" -> "BadRequest").
const char* ErrorCodeName(ErrorCode code);

}  // namespace umi
