#include "host/result_cache.h"

#include <algorithm>
#include <functional>

namespace umi {

void ResultCache::SetLimits(Clock::duration window, size_t max_entries) {
  window_ = window;
  max_entries_ = max_entries;
}

uint32_t ResultCache::HashOf(std::string_view id) {
  const uint64_t hash = std::hash<std::string_view>{}(id);
  return static_cast<uint32_t>(hash ^ (hash >> 32));
}

size_t ResultCache::Probe(std::string_view id, uint32_t hash) const {
  const size_t mask = index_.size() - 1;
  for (size_t cell = hash & mask;; cell = (cell + 1) & mask) {
    const Cell& c = index_[cell];
    if (c.slot_plus_one == 0 || (c.hash == hash && ring_[c.slot_plus_one - 1].id == id)) return cell;
  }
}

// Linear probing without tombstones: the cells after the hole that may move
// into it (their home is not between the hole and them) do, one by one.
void ResultCache::Unindex(size_t cell) {
  const size_t mask = index_.size() - 1;
  size_t hole = cell;
  for (size_t next = (hole + 1) & mask; index_[next].slot_plus_one != 0; next = (next + 1) & mask) {
    const size_t home = index_[next].hash & mask;
    if (((next - home) & mask) >= ((next - hole) & mask)) {
      index_[hole] = index_[next];
      hole = next;
    }
  }
  index_[hole] = Cell{};
}

void ResultCache::Reindex(size_t cells) {
  index_.assign(cells, Cell{});
  for (size_t i = 0; i < used_; ++i) {
    const size_t slot = (head_ + i) % ring_.size();
    if (ring_[slot].live) {
      index_[Probe(ring_[slot].id, ring_[slot].hash)] = {static_cast<uint32_t>(slot + 1), ring_[slot].hash};
    }
  }
}

void ResultCache::Expire(Clock::time_point now, size_t keep) {
  while (used_ > 0) {
    Slot& oldest = ring_[head_];
    if (used_ <= keep && now - oldest.at <= window_) break;
    if (oldest.live) {
      oldest.live = false;
      --live_;
      Unindex(Probe(oldest.id, oldest.hash));
    }
    head_ = (head_ + 1) % ring_.size();
    --used_;
  }
}

size_t ResultCache::Append() {
  if (used_ < ring_.size()) return (head_ + used_++) % ring_.size();
  // Full, and below max_entries (Expire made room otherwise): grow, the
  // oldest first again so the ring stays in order.
  if (head_ != 0) {
    std::rotate(ring_.begin(), ring_.begin() + static_cast<std::ptrdiff_t>(head_), ring_.end());
    head_ = 0;
    Reindex(std::max<size_t>(16, index_.size()));
  }
  ring_.emplace_back();
  ++used_;
  return ring_.size() - 1;
}

void ResultCache::Remember(std::string_view id, std::string_view body, TaskFingerprint fingerprint,
                           Clock::time_point now) {
  if (max_entries_ == 0 || window_ <= Clock::duration::zero()) return;
  Expire(now, max_entries_ - 1);
  const uint32_t hash = HashOf(id);
  if (!index_.empty()) {
    if (const size_t cell = Probe(id, hash); index_[cell].slot_plus_one != 0) {
      ring_[index_[cell].slot_plus_one - 1].live = false;  // the newer entry replaces it
      --live_;
      Unindex(cell);
    }
  }
  const size_t slot = Append();
  Slot& entry = ring_[slot];
  entry.id.assign(id);
  entry.body.assign(body);
  entry.at = now;
  entry.fingerprint = fingerprint;
  entry.hash = hash;
  entry.live = true;
  ++live_;
  if (index_.size() < 2 * live_) {
    Reindex(std::max<size_t>(16, index_.size() * 2));
  } else {
    index_[Probe(id, hash)] = {static_cast<uint32_t>(slot + 1), hash};
  }
}

const ResultCache::Entry* ResultCache::Find(std::string_view id, Clock::time_point now) {
  Expire(now, max_entries_);
  if (live_ == 0) return nullptr;
  // A full window drops its oldest entry when this task's result comes in:
  // its index cell is fetched now, alongside this lookup's own, so that
  // miss overlaps this one instead of following it.
  __builtin_prefetch(&index_[ring_[head_].hash & (index_.size() - 1)], 1);
  const Cell& cell = index_[Probe(id, HashOf(id))];
  return cell.slot_plus_one == 0 ? nullptr : &ring_[cell.slot_plus_one - 1];
}

}  // namespace umi
