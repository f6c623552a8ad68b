#include "scheduling/scheduler.h"

#include <queue>

namespace umi {

std::string Scheduler::ShapeKey(const Demand& demand) {
  const ResourceRequirement& r = demand.requirement;
  std::string key = demand.plugin;
  key += '\0';
  key += demand.task_group;
  key += '\0';
  for (int64_t field : {r.cpu_cores.units(), static_cast<int64_t>(r.cpu_threads), r.gpu_count.units(),
                        r.memory_mb, static_cast<int64_t>(r.exclusive_gpu)}) {
    key.append(reinterpret_cast<const char*>(&field), sizeof(field));
  }
  return key;
}

void Scheduler::Enqueue(QueuedTask task) {
  const auto shape = shapes_.try_emplace(ShapeKey(task.demand)).first;
  const Rank rank = RankOf(task);
  index_.emplace(task.key, std::make_pair(shape, rank));
  arrivals_.emplace(task.key, Arrival{task.enqueued_at, task.message.plugin});
  ++queued_by_plugin_[task.message.plugin];
  shape->second.emplace(rank, std::move(task));
}

std::optional<Scheduler::Clock::time_point> Scheduler::oldest_enqueued_at() const {
  if (arrivals_.empty()) return std::nullopt;
  return arrivals_.begin()->second.at;
}

void Scheduler::Erase(Shapes::iterator shape, ShapeQueue::iterator entry) {
  // The entry's task may have been moved out already: only its key is read.
  const uint64_t key = entry->second.key;
  index_.erase(key);
  if (const auto arrival = arrivals_.find(key); arrival != arrivals_.end()) {
    if (const auto count = queued_by_plugin_.find(arrival->second.plugin);
        count != queued_by_plugin_.end() && --count->second == 0) {
      queued_by_plugin_.erase(count);
    }
    arrivals_.erase(arrival);
  }
  shape->second.erase(entry);
  if (shape->second.empty()) shapes_.erase(shape);
}

const QueuedTask* Scheduler::FindReservation(Clock::time_point now) const {
  const QueuedTask* best = nullptr;
  for (const auto& [key, queue] : shapes_) {
    const QueuedTask& head = queue.begin()->second;
    // A head held back by its own max_instances starts only when one of its
    // own ends: reserving for it would idle what others could use.
    if (pool_.AtItsCap(head.demand)) continue;
    // A GPU task whose device is free but whose CPU share is taken reserves
    // at once: otherwise CPU work would keep the GPU idle.
    if (now - head.enqueued_at < reserve_after_ && !pool_.GpusAvailableFor(head.demand)) continue;
    if (best && RankOf(*best) < RankOf(head)) continue;
    if (!pool_.CanAllocate(head.demand)) best = &head;
  }
  return best;
}

std::vector<std::pair<QueuedTask, Allocation>> Scheduler::TakeRunnable(Clock::time_point now) {
  std::vector<std::pair<QueuedTask, Allocation>> runnable;
  const QueuedTask* reserved = FindReservation(now);
  reserved_ = reserved ? std::optional<uint64_t>(reserved->key) : std::nullopt;

  using Candidate = std::pair<Rank, Shapes::iterator>;
  auto worse = [](const Candidate& a, const Candidate& b) { return a.first > b.first; };
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(worse)> heads(worse);
  for (auto shape = shapes_.begin(); shape != shapes_.end(); ++shape) {
    heads.emplace(shape->second.begin()->first, shape);
  }
  while (!heads.empty()) {
    const auto shape = heads.top().second;
    heads.pop();
    const auto head = shape->second.begin();
    QueuedTask& task = head->second;
    // The reserved task did not fit at the start of the pass and nothing
    // has been freed since; the rest may only use what it does not need.
    if (reserved && (&task == reserved || !pool_.CanAllocateBeside(task.demand, reserved->demand))) continue;
    std::optional<Allocation> allocation = pool_.TryAllocate(task.key, task.demand);
    if (!allocation) continue;  // this shape stays blocked for the rest of the pass
    runnable.emplace_back(std::move(task), std::move(*allocation));
    const bool shape_left = shape->second.size() > 1;
    Erase(shape, head);
    if (shape_left) heads.emplace(shape->second.begin()->first, shape);
  }
  return runnable;
}

std::optional<QueuedTask> Scheduler::Remove(uint64_t key) {
  const auto found = index_.find(key);
  if (found == index_.end()) return std::nullopt;
  const auto [shape, rank] = found->second;
  const auto entry = shape->second.find(rank);
  QueuedTask task = std::move(entry->second);
  Erase(shape, entry);
  return task;
}

std::vector<QueuedTask> Scheduler::TakeAll() {
  std::vector<QueuedTask> all;
  for (auto& [key, queue] : shapes_) {
    for (auto& [rank, task] : queue) all.push_back(std::move(task));
  }
  shapes_.clear();
  index_.clear();
  arrivals_.clear();
  queued_by_plugin_.clear();
  return all;
}

}  // namespace umi
