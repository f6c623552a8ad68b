// TaskFingerprint: what makes two messages the same task (plugin, input,
// resources), 128 bits of a keyed hash (transport/protocol.h, Fingerprint).
// Equal fingerprints mean a retry; the key is random per process, so nobody
// outside can make two different tasks share one.
//
// Thread safety: a value.
#pragma once

#include <cstdint>

namespace umi {

struct TaskFingerprint {
  uint64_t low = 0;
  uint64_t high = 0;
  friend bool operator==(const TaskFingerprint&, const TaskFingerprint&) = default;
};

}  // namespace umi
