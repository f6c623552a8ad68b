#include "scheduling/scheduler.h"

#include <algorithm>
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

Scheduler::Waiting Scheduler::Pack(QueuedTask task) {
  TaskMessage& message = task.message;
  Waiting waiting;
  waiting.key = task.key;
  waiting.enqueued_at = task.enqueued_at;
  waiting.id = std::move(message.id);
  waiting.input_msgpack = std::move(message.input_msgpack);
  waiting.address = std::move(task.reply.address);
  waiting.sink = task.reply.sink;
  waiting.runs = task.runs;
  waiting.rpc = task.reply.rpc;
  if (message.timeout_ms != 0 || message.resources || message.retry || !message.flow.empty()) {
    waiting.rare = std::make_unique<Rare>(
        Rare{message.timeout_ms, std::move(message.resources), std::move(message.retry), std::move(message.flow)});
  }
  return waiting;
}

QueuedTask Scheduler::Unpack(Waiting task, const Shape& shape, int64_t level) {
  QueuedTask queued;
  queued.key = task.key;
  queued.message.id = std::move(task.id);
  queued.message.plugin = shape.demand.plugin;
  queued.message.input_msgpack = std::move(task.input_msgpack);
  queued.message.priority = ~level;
  if (Rare* rare = task.rare.get()) {
    queued.message.timeout_ms = rare->timeout_ms;
    queued.message.resources = std::move(rare->resources);
    queued.message.retry = std::move(rare->retry);
    queued.message.flow = std::move(rare->flow);
  }
  queued.demand = shape.demand;
  queued.plugin = shape.plugin;
  queued.reply.sink = task.sink;
  queued.reply.rpc = task.rpc;
  queued.reply.address = std::move(task.address);
  queued.enqueued_at = task.enqueued_at;
  queued.runs = task.runs;
  return queued;
}

void Scheduler::Enqueue(QueuedTask task) {
  Shape& shape = shapes_[ShapeKey(task.demand)];
  if (shape.levels.empty()) {
    shape.plugin = task.plugin;
    shape.demand = task.demand;
  }
  ++queued_by_plugin_[task.message.plugin];
  ++size_;
  Level& level = shape.levels[~task.message.priority];
  ++level.live;
  std::deque<Waiting>& tasks = level.tasks;
  if (tasks.empty() || tasks.back().key < task.key) {
    tasks.push_back(Pack(std::move(task)));
    return;
  }
  const auto at = std::lower_bound(tasks.begin(), tasks.end(), task.key,
                                   [](const Waiting& queued, uint64_t key) { return queued.key < key; });
  tasks.insert(at, Pack(std::move(task)));
}

std::optional<Scheduler::Clock::time_point> Scheduler::oldest_enqueued_at() const {
  std::optional<Clock::time_point> oldest;
  for (const auto& [key, shape] : shapes_) {
    for (const auto& [rank, level] : shape.levels) {
      const Clock::time_point at = level.tasks.front().enqueued_at;
      if (!oldest || at < *oldest) oldest = at;
    }
  }
  return oldest;
}

Scheduler::Head Scheduler::HeadOf(Shapes::iterator shape) {
  auto& [rank, level] = *shape->second.levels.begin();
  Waiting& front = level.tasks.front();
  return {shape, {rank, front.key}, &front};
}

QueuedTask Scheduler::Take(Shapes::iterator shape, std::map<int64_t, Level>::iterator level,
                           std::deque<Waiting>::iterator at) {
  std::deque<Waiting>& tasks = level->second.tasks;
  QueuedTask task = Unpack(std::move(*at), shape->second, level->first);
  --size_;
  if (const auto count = queued_by_plugin_.find(task.message.plugin);
      count != queued_by_plugin_.end() && --count->second == 0) {
    queued_by_plugin_.erase(count);
  }
  if (--level->second.live == 0) {
    shape->second.levels.erase(level);
    if (shape->second.levels.empty()) shapes_.erase(shape);
    return task;
  }
  at->removed = true;
  while (tasks.front().removed) tasks.pop_front();
  while (tasks.back().removed) tasks.pop_back();
  return task;
}

std::optional<Scheduler::Head> Scheduler::FindReservation(Clock::time_point now) {
  std::optional<Head> best;
  for (auto shape = shapes_.begin(); shape != shapes_.end(); ++shape) {
    const Head head = HeadOf(shape);
    const Demand& demand = shape->second.demand;
    // A head held back by its own max_instances starts only when one of its
    // own ends: reserving for it would idle what others could use.
    if (pool_.AtItsCap(demand)) continue;
    // A GPU task whose device is free but whose CPU share is taken reserves
    // at once: otherwise CPU work would keep the GPU idle.
    if (now - head.task->enqueued_at < reserve_after_ && !pool_.GpusAvailableFor(demand)) continue;
    if (best && best->rank < head.rank) continue;
    if (!pool_.CanAllocate(demand)) best = head;
  }
  return best;
}

std::vector<std::pair<QueuedTask, Allocation>> Scheduler::TakeRunnable(Clock::time_point now) {
  std::vector<std::pair<QueuedTask, Allocation>> runnable;
  const std::optional<Head> reserved = FindReservation(now);
  reserved_ = reserved ? std::optional<uint64_t>(reserved->task->key) : std::nullopt;

  auto worse = [](const Head& a, const Head& b) { return a.rank > b.rank; };
  std::priority_queue<Head, std::vector<Head>, decltype(worse)> heads(worse);
  for (auto shape = shapes_.begin(); shape != shapes_.end(); ++shape) heads.push(HeadOf(shape));
  while (!heads.empty()) {
    const Head head = heads.top();
    heads.pop();
    const Demand& demand = head.shape->second.demand;
    // The reserved task did not fit at the start of the pass and nothing
    // has been freed since; the rest may only use what it does not need.
    if (reserved && (head.task == reserved->task ||
                     (!pool_.CanAllocateBeside(demand, reserved->shape->second.demand) &&
                      !pool_.GpuTaskMayGoFirst(demand, reserved->shape->second.demand)))) {
      continue;
    }
    std::optional<Allocation> allocation = pool_.TryAllocate(head.task->key, demand);
    if (!allocation) continue;  // this shape stays blocked for the rest of the pass
    const auto level = head.shape->second.levels.begin();
    const bool shape_left = head.shape->second.levels.size() > 1 || level->second.live > 1;
    runnable.emplace_back(Take(head.shape, level, level->second.tasks.begin()), std::move(*allocation));
    if (shape_left) heads.push(HeadOf(head.shape));
  }
  return runnable;
}

std::optional<QueuedTask> Scheduler::Remove(uint64_t key) {
  for (auto shape = shapes_.begin(); shape != shapes_.end(); ++shape) {
    for (auto level = shape->second.levels.begin(); level != shape->second.levels.end(); ++level) {
      std::deque<Waiting>& tasks = level->second.tasks;
      const auto at = std::lower_bound(tasks.begin(), tasks.end(), key,
                                       [](const Waiting& queued, uint64_t wanted) { return queued.key < wanted; });
      if (at != tasks.end() && at->key == key && !at->removed) return Take(shape, level, at);
    }
  }
  return std::nullopt;
}

std::vector<QueuedTask> Scheduler::TakeAll() {
  std::vector<QueuedTask> all;
  all.reserve(size_);
  for (auto& [key, shape] : shapes_) {
    for (auto& [rank, level] : shape.levels) {
      for (Waiting& task : level.tasks) {
        if (!task.removed) all.push_back(Unpack(std::move(task), shape, rank));
      }
    }
  }
  std::sort(all.begin(), all.end(), [](const QueuedTask& a, const QueuedTask& b) { return a.key < b.key; });
  shapes_.clear();
  size_ = 0;
  queued_by_plugin_.clear();
  return all;
}

}  // namespace umi
