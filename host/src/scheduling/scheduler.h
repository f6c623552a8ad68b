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
// No starvation: once a head has waited reserve_after and still does not
// fit (a GPU task whose GPU is free qualifies at once, so CPU work never
// keeps a GPU idle), the best-ranked such head (priority, then age) holds a
// reservation:
// other tasks start only if they leave it everything it still needs
// (ResourcePool::CanAllocateBeside). As running tasks finish, what they free
// accrues to the reserved task, so it starts once enough of them end.
//
// Thread safety: none. The host's event loop owns it, together with the
// ResourcePool it allocates from. Time is passed in, so tests use a virtual
// clock.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
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

  void Enqueue(QueuedTask task);
  // Allocates for and removes every queued task that may start at `now`, in
  // priority order; the caller runs them.
  std::vector<std::pair<QueuedTask, Allocation>> TakeRunnable(Clock::time_point now);
  // Removes one queued task (cancel); nothing if it is not queued.
  std::optional<QueuedTask> Remove(uint64_t key);
  // Empties the queue (for shutdown).
  std::vector<QueuedTask> TakeAll();

  // A config reload may change it.
  void set_reserve_after(Clock::duration reserve_after) { reserve_after_ = reserve_after; }

  size_t size() const { return index_.size(); }
  // When the task waiting longest was queued (for the oldest-waiting-age
  // gauge an alert needs: queue-time histograms see a stall only once it ends).
  std::optional<Clock::time_point> oldest_enqueued_at() const;
  // Queued tasks per plugin name; plugins with none are absent.
  const std::map<std::string, size_t>& queued_by_plugin() const { return queued_by_plugin_; }
  bool has_queued(const std::string& plugin) const { return !queued_by_plugin_.empty() && queued_by_plugin_.count(plugin); }
  size_t shapes() const { return shapes_.size(); }
  // The task holding the reservation after the last pass, if any.
  std::optional<uint64_t> reserved() const { return reserved_; }

 private:
  // (~priority, key): std::map order is then "higher priority, then older".
  // ~p is -p - 1: the same order as -p without overflow at INT64_MIN.
  using Rank = std::pair<int64_t, uint64_t>;
  using ShapeQueue = std::map<Rank, QueuedTask>;
  using Shapes = std::map<std::string, ShapeQueue>;
  static std::string ShapeKey(const Demand& demand);
  static Rank RankOf(const QueuedTask& task) { return {~task.message.priority, task.key}; }
  const QueuedTask* FindReservation(Clock::time_point now) const;
  void Erase(Shapes::iterator shape, ShapeQueue::iterator entry);

  ResourcePool& pool_;
  Clock::duration reserve_after_;
  Shapes shapes_;
  std::unordered_map<uint64_t, std::pair<Shapes::iterator, Rank>> index_;
  std::optional<uint64_t> reserved_;
  struct Arrival {
    Clock::time_point at;
    std::string plugin;
  };
  std::map<uint64_t, Arrival> arrivals_;  // key order is arrival order
  std::map<std::string, size_t> queued_by_plugin_;
};

}  // namespace umi
