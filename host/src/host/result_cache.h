// ResultCache: the dedup window. The encoded result of each finished task
// is kept by id for `window` (at most `max_entries`, oldest out first), with
// the task's fingerprint, so a retry is answered with the same bytes and
// another task under the same id is told apart (docs/protocol.md).
//
// Every finished task passes through here, so it is built for that: the
// entries sit in a ring in the order they finished (their strings keep
// their buffers when a slot is reused, so a full window allocates nothing
// per task), and an open-addressing index of slot numbers finds an id with
// one probe into a flat array where a node-based map would chase pointers.
//
// Time is passed in: tests run it on a virtual clock.
//
// Thread safety: none; the event loop owns it.
#pragma once

#include <sys/mman.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include "common/fingerprint.h"

namespace umi {

// Memory for large arrays read at random: 2 MiB-aligned and marked for
// transparent huge pages (where the kernel allows them), so a lookup in a
// table of several MiB costs a cache miss but not also a TLB miss.
template <typename T>
struct HugePageAllocator {
  using value_type = T;
  static constexpr size_t kHugePage = size_t{2} << 20;
  HugePageAllocator() = default;
  template <typename U>
  HugePageAllocator(const HugePageAllocator<U>&) {}
  T* allocate(size_t n) {
    const size_t bytes = n * sizeof(T);
    if (bytes < kHugePage) {
      if (void* p = std::malloc(bytes)) return static_cast<T*>(p);
      throw std::bad_alloc();
    }
    const size_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
    void* p = std::aligned_alloc(kHugePage, rounded);
    if (!p) throw std::bad_alloc();
    madvise(p, rounded, MADV_HUGEPAGE);  // advice: ignored where THP is off
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) { std::free(p); }
  template <typename U>
  bool operator==(const HugePageAllocator<U>&) const { return true; }
};

class ResultCache {
 public:
  using Clock = std::chrono::steady_clock;
  struct Entry {
    std::string body;  // the encoded result
    Clock::time_point at;
    TaskFingerprint fingerprint;
  };

  // A window of 0 or max_entries of 0 keeps nothing.
  ResultCache(Clock::duration window, size_t max_entries) { SetLimits(window, max_entries); }
  // A config reload may change them; they apply from the next call.
  void SetLimits(Clock::duration window, size_t max_entries);

  // Remembers `body` as the answer for `id`, replacing an earlier one.
  void Remember(std::string_view id, std::string_view body, TaskFingerprint fingerprint, Clock::time_point now);
  // The entry for `id` if it finished within the window, else null (valid
  // until the next call).
  const Entry* Find(std::string_view id, Clock::time_point now);
  size_t size() const { return live_; }

 private:
  struct Slot : Entry {
    std::string id;
    uint32_t hash = 0;
    bool live = false;  // false: expired, or replaced by a newer entry for its id
  };
  // An index cell: 0 = empty, else the slot number + 1, with the low bits of
  // the id's hash (its home cell, and a cheap check before comparing ids).
  struct Cell {
    uint32_t slot_plus_one = 0;
    uint32_t hash = 0;
  };

  static uint32_t HashOf(std::string_view id);
  // The index cell that holds `id`, or the empty cell where it would go.
  size_t Probe(std::string_view id, uint32_t hash) const;
  void Unindex(size_t cell);
  // Drops the oldest entries out of the window or beyond `keep` entries.
  void Expire(Clock::time_point now, size_t keep);
  // Makes the ring hold one more entry and returns its slot.
  size_t Append();
  void Reindex(size_t cells);

  Clock::duration window_{};
  size_t max_entries_ = 0;
  std::vector<Slot, HugePageAllocator<Slot>> ring_;  // oldest at head_, `used_` slots from there (live or not)
  size_t head_ = 0, used_ = 0, live_ = 0;
  std::vector<Cell, HugePageAllocator<Cell>> index_;  // a power of two, at most half full
};

}  // namespace umi
