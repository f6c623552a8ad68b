#include "scheduler.h"

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
  ShapeQueue& queue = shapes_[ShapeKey(task.demand)];
  const Rank rank = RankOf(task);
  queue.emplace(rank, std::move(task));
  ++size_;
}

std::vector<std::pair<QueuedTask, Allocation>> Scheduler::TakeRunnable() {
  std::vector<std::pair<QueuedTask, Allocation>> runnable;
  using Candidate = std::pair<Rank, std::map<std::string, ShapeQueue>::iterator>;
  auto worse = [](const Candidate& a, const Candidate& b) { return a.first > b.first; };
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(worse)> heads(worse);
  for (auto shape = shapes_.begin(); shape != shapes_.end(); ++shape) {
    heads.emplace(shape->second.begin()->first, shape);
  }
  while (!heads.empty()) {
    const auto shape = heads.top().second;
    heads.pop();
    ShapeQueue& queue = shape->second;
    auto head = queue.begin();
    std::optional<Allocation> allocation = pool_.TryAllocate(head->second.key, head->second.demand);
    if (!allocation) continue;  // this shape stays blocked for the rest of the pass
    runnable.emplace_back(std::move(head->second), std::move(*allocation));
    queue.erase(head);
    --size_;
    if (queue.empty()) {
      shapes_.erase(shape);
    } else {
      heads.emplace(queue.begin()->first, shape);
    }
  }
  return runnable;
}

std::vector<QueuedTask> Scheduler::TakeAll() {
  std::vector<QueuedTask> all;
  for (auto& [key, queue] : shapes_) {
    for (auto& [rank, task] : queue) all.push_back(std::move(task));
  }
  shapes_.clear();
  size_ = 0;
  return all;
}

}  // namespace umi
