// W4 (in process): one CPU task's enqueue + scheduling pass + release, with
// 0, 1,000 and 100,000 GPU tasks blocked in the queue behind a busy GPU.
#include <benchmark/benchmark.h>

#include "scheduling/scheduler.h"

namespace umi {
namespace {

QueuedTask Task(uint64_t key, bool gpu) {
  QueuedTask task;
  task.key = key;
  task.message.id = "task-" + std::to_string(key);
  task.message.plugin = gpu ? "gpu_sleep" : "noop";
  task.demand.plugin = task.message.plugin;
  task.demand.requirement.cpu_cores = Quantity::FromDouble(gpu ? 1 : 0.1);
  task.demand.requirement.cpu_threads = gpu ? 2 : 1;
  task.demand.requirement.memory_mb = gpu ? 2048 : 16;
  task.demand.requirement.gpu_count = Quantity::Whole(gpu ? 1 : 0);
  return task;
}

void BM_DispatchWithBlockedGpuTasks(benchmark::State& state) {
  PoolCapacity capacity;
  capacity.cpu_cores = Quantity::Whole(24);
  capacity.cpu_threads = 48;
  capacity.memory_mb = 1 << 30;
  capacity.max_concurrent_tasks = 8;
  capacity.gpus.push_back({0, "bench", 24});
  ResourcePool pool(capacity);
  Scheduler scheduler(pool, std::chrono::hours(1));
  const auto now = Scheduler::Clock::now();
  uint64_t key = 0;
  ++key;
  pool.TryAllocate(key, Task(key, true).demand);  // the GPU is busy
  for (int64_t i = 0; i < state.range(0); ++i) {
    QueuedTask blocked = Task(++key, true);
    blocked.enqueued_at = now;
    scheduler.Enqueue(std::move(blocked));
  }
  for (auto _ : state) {
    QueuedTask task = Task(++key, false);
    task.enqueued_at = now;
    scheduler.Enqueue(std::move(task));
    auto runnable = scheduler.TakeRunnable(now);
    if (runnable.size() != 1) state.SkipWithError("the CPU task did not start");
    pool.Release(runnable.front().first.key);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_DispatchWithBlockedGpuTasks)->Arg(0)->Arg(1000)->Arg(100000)->ArgNames({"blocked"});

}  // namespace
}  // namespace umi
