#include "scheduling/task.h"

namespace umi {

const char* ToString(TaskStatus status) {
  switch (status) {
    case TaskStatus::kOk: return "ok";
    case TaskStatus::kError: return "error";
    case TaskStatus::kRejected: return "rejected";
    case TaskStatus::kTimeout: return "timeout";
    case TaskStatus::kCancelled: return "cancelled";
    case TaskStatus::kCrashed: return "crashed";
  }
  return "error";
}

}  // namespace umi
