#include "common/status.h"

namespace umi {

const char* ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk: return "Ok";
    case ErrorCode::kBadRequest: return "BadRequest";
    case ErrorCode::kUnsupportedVersion: return "UnsupportedVersion";
    case ErrorCode::kUnknownPlugin: return "UnknownPlugin";
    case ErrorCode::kInfeasible: return "Infeasible";
    case ErrorCode::kQueueFull: return "QueueFull";
    case ErrorCode::kShuttingDown: return "ShuttingDown";
    case ErrorCode::kDuplicateId: return "DuplicateId";
    case ErrorCode::kIdConflict: return "IdConflict";
    case ErrorCode::kCancelled: return "Cancelled";
    case ErrorCode::kTimeout: return "Timeout";
    case ErrorCode::kCrashed: return "Crashed";
    case ErrorCode::kMaxDeliveries: return "MaxDeliveries";
    case ErrorCode::kPluginError: return "PluginError";
    case ErrorCode::kBadOutput: return "BadOutput";
    case ErrorCode::kNotFound: return "NotFound";
    case ErrorCode::kUnknownOp: return "UnknownOp";
    case ErrorCode::kInvalidConfig: return "InvalidConfig";
    case ErrorCode::kIoError: return "IoError";
    case ErrorCode::kUnavailable: return "Unavailable";
    case ErrorCode::kInternal: return "Internal";
  }
  return "Unknown";
}

}  // namespace umi
