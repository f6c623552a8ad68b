// Scheduler: the queue of accepted tasks waiting for resources.
//
// Tasks are indexed by shape (plugin + task group + exact requirement); each
// shape keeps its own queue ordered by priority (higher first), then arrival.
// TakeRunnable looks only at the head of each shape: if a shape's head does
// not fit, nothing behind it (same shape, same or lower rank) fits either,
// so one scheduling pass costs O(shapes x log shapes) plus the tasks it
// starts, however many tasks are blocked. A task that fits never waits
// behind one that does not (no head-of-line blocking).
//
// Thread safety: none. The host's event loop owns it, together with the
// ResourcePool it allocates from.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "protocol.h"
#include "resource_pool.h"

namespace umi {

struct LoadedPlugin;

// Where a task's result goes: the results socket, or back to an rpc peer.
struct ReplyRoute {
  std::vector<std::string> envelope;  // rpc routing frames; empty: results socket
};

struct QueuedTask {
  uint64_t key = 0;  // host-unique, in arrival order
  TaskMessage message;
  Demand demand;
  const LoadedPlugin* plugin = nullptr;
  ReplyRoute reply;
  std::chrono::steady_clock::time_point enqueued_at;
};

class Scheduler {
 public:
  explicit Scheduler(ResourcePool& pool) : pool_(pool) {}

  void Enqueue(QueuedTask task);
  // Allocates for and removes every queued task that fits now, in priority
  // order; the caller runs them.
  std::vector<std::pair<QueuedTask, Allocation>> TakeRunnable();
  // Empties the queue (for shutdown).
  std::vector<QueuedTask> TakeAll();

  size_t size() const { return size_; }
  size_t shapes() const { return shapes_.size(); }

 private:
  // (-priority, key): std::map order is then "higher priority, then older".
  using Rank = std::pair<int64_t, uint64_t>;
  using ShapeQueue = std::map<Rank, QueuedTask>;
  static std::string ShapeKey(const Demand& demand);
  static Rank RankOf(const QueuedTask& task) { return {-task.message.priority, task.key}; }

  ResourcePool& pool_;
  std::map<std::string, ShapeQueue> shapes_;
  size_t size_ = 0;
};

}  // namespace umi
