// Scheduler: the queue of accepted tasks waiting for resources.
//
// Tasks are indexed by shape (plugin + task group + exact requirement); each
// shape keeps its own queue ordered by priority (higher first), then arrival:
// one FIFO per priority (a level), which holds the shape's demand and the
// priority once, so a queued task costs about 128 bytes here (with the
// ledger's entry for its id, about 220 in the host: docs/performance.md).
// TakeRunnable looks only at the head of each shape: if a shape's head does
// not fit, nothing behind it (same shape, same or lower rank) fits either,
// so one scheduling pass costs O(shapes x log shapes) plus the tasks it
// starts, however many tasks are blocked. A task that fits never waits
// behind one that does not (no head-of-line blocking).
//
// No starvation: once a head has waited reserve_after and still does not
// fit (a GPU task whose GPU is free qualifies at once, so CPU work never
// keeps a GPU idle), the best-ranked such head (priority, then age) holds a
// reservation:
// other tasks start only if they leave it everything it still needs
// (ResourcePool::CanAllocateBeside). As running tasks finish, what they free
// accrues to the reserved task, so it starts once enough of them end. One
// exception keeps the GPU busy: a GPU task whose device is free goes ahead
// of a reserved CPU task when the pool holds that task beside every GPU
// task's CPU share (ResourcePool::GpuTaskMayGoFirst): the reserved task
// still starts once the CPU tasks before it end.
//
// Thread safety: none. The host's event loop owns it, together with the
// ResourcePool it allocates from. Time is passed in, so tests use a virtual
// clock.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "scheduling/resource_pool.h"
#include "scheduling/task.h"

namespace umi {

struct LoadedPlugin;

struct QueuedTask {
  uint64_t key = 0;  // host-unique, in arrival order
  TaskMessage message;
  Demand demand;
  const LoadedPlugin* plugin = nullptr;
  ReplyRoute reply;
  std::chrono::steady_clock::time_point enqueued_at;
  int runs = 0;  // runs that failed and were retried (its retry policy)
};

class Scheduler {
 public:
  using Clock = std::chrono::steady_clock;

  // reserve_after: how long a blocked head waits before it reserves.
  Scheduler(ResourcePool& pool, Clock::duration reserve_after) : pool_(pool), reserve_after_(reserve_after) {}

  // O(1) when `task.key` is the newest of its shape and priority (the host
  // numbers tasks as they arrive); an older key is put in its place.
  void Enqueue(QueuedTask task);
  // Allocates for and removes every queued task that may start at `now`, in
  // priority order; the caller runs them.
  std::vector<std::pair<QueuedTask, Allocation>> TakeRunnable(Clock::time_point now);
  // Removes one queued task (cancel); nothing if it is not queued.
  // O(levels x log tasks): a level is one shape's tasks of one priority.
  std::optional<QueuedTask> Remove(uint64_t key);
  // Empties the queue (for shutdown, or a reload that queues them again), in key order.
  std::vector<QueuedTask> TakeAll();

  // A config reload may change it.
  void set_reserve_after(Clock::duration reserve_after) { reserve_after_ = reserve_after; }

  size_t size() const { return size_; }
  // When the task waiting longest was queued (for the oldest-waiting-age
  // gauge an alert needs: queue-time histograms see a stall only once it
  // ends): the oldest head of a level, exact when keys follow arrival times.
  std::optional<Clock::time_point> oldest_enqueued_at() const;
  // Queued tasks per plugin name; plugins with none are absent.
  const std::map<std::string, size_t>& queued_by_plugin() const { return queued_by_plugin_; }
  bool has_queued(const std::string& plugin) const { return !queued_by_plugin_.empty() && queued_by_plugin_.count(plugin); }
  size_t shapes() const { return shapes_.size(); }
  // The task holding the reservation after the last pass, if any.
  std::optional<uint64_t> reserved() const { return reserved_; }

 private:
  struct Rare {
    int64_t timeout_ms = 0;
    std::optional<RequirementOverride> resources;
    std::optional<RetryPolicy> retry;
    std::string flow;
  };
  // A queued task as the queue holds it, 128 bytes: what its shape and its
  // level share (plugin, demand, priority) is held there once, and what
  // few tasks carry (a timeout, their own resources or retry policy, a
  // flow) behind one pointer.
  struct Waiting {
    uint64_t key = 0;
    Clock::time_point enqueued_at;
    std::string id;
    std::string input_msgpack;
    std::vector<std::string> address;  // its ReplyRoute's
    ResultSink* sink = nullptr;
    std::unique_ptr<Rare> rare;  // null: none of it
    int32_t runs = 0;
    bool rpc = false;
    bool removed = false;  // cancelled: dropped once it reaches an end of its level
  };
  // One shape's tasks of one priority, in key order. Removed ones in the
  // middle stay (emptied) until they reach an end: both ends are always live.
  struct Level {
    std::deque<Waiting> tasks;
    size_t live = 0;
  };
  struct Shape {
    Demand demand;
    const LoadedPlugin* plugin = nullptr;
    std::map<int64_t, Level> levels;  // by ~priority: the highest priority first
  };
  using Shapes = std::map<std::string, Shape>;
  // (~priority, key): ordered "higher priority, then older". ~p is -p - 1:
  // the same order as -p without overflow at INT64_MIN.
  using Rank = std::pair<int64_t, uint64_t>;
  struct Head {
    Shapes::iterator shape;
    Rank rank;
    Waiting* task;
  };
  static std::string ShapeKey(const Demand& demand);
  static Head HeadOf(Shapes::iterator shape);
  static Waiting Pack(QueuedTask task);
  static QueuedTask Unpack(Waiting task, const Shape& shape, int64_t level);
  std::optional<Head> FindReservation(Clock::time_point now);
  // Takes the task out of its level (its front, or one inside it) and drops
  // what is left empty.
  QueuedTask Take(Shapes::iterator shape, std::map<int64_t, Level>::iterator level, std::deque<Waiting>::iterator at);

  ResourcePool& pool_;
  Clock::duration reserve_after_;
  Shapes shapes_;
  size_t size_ = 0;
  std::optional<uint64_t> reserved_;
  std::map<std::string, size_t> queued_by_plugin_;
};

}  // namespace umi
