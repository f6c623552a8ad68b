// ResourcePool: cost of one TryAllocate + Release pair.
#include <benchmark/benchmark.h>

#include "scheduling/resource_pool.h"

namespace umi {
namespace {

PoolCapacity Capacity() {
  PoolCapacity c;
  c.cpu_cores = Quantity::Whole(24);
  c.cpu_threads = 48;
  c.memory_mb = 128 * 1024;
  c.max_concurrent_tasks = 8;
  for (int id = 0; id < 4; ++id) c.gpus.push_back({id, "bench", 24});
  c.group_caps["cpu_task"] = 8;
  return c;
}

Demand CpuDemand() {
  Demand d;
  d.plugin = "sleep";
  d.task_group = "cpu_task";
  d.requirement.cpu_cores = Quantity::FromDouble(2);
  d.requirement.cpu_threads = 4;
  d.requirement.memory_mb = 4096;
  return d;
}

void BM_PoolCpuAllocateRelease(benchmark::State& state) {
  ResourcePool pool(Capacity());
  const Demand demand = CpuDemand();
  uint64_t key = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(pool.TryAllocate(++key, demand));
    pool.Release(key);
  }
}
BENCHMARK(BM_PoolCpuAllocateRelease);

void BM_PoolGpuAllocateRelease(benchmark::State& state) {
  ResourcePool pool(Capacity());
  Demand demand = CpuDemand();
  demand.plugin = "scenes_cuda";
  demand.requirement.gpu_count = Quantity::FromDouble(state.range(0) == 0 ? 1.0 : 0.25);
  demand.requirement.exclusive_gpu = state.range(0) == 0;
  // Some devices busy, so the pick has to look.
  ResourcePool* p = &pool;
  Demand shared = demand;
  shared.requirement.gpu_count = Quantity::FromDouble(0.5);
  shared.requirement.exclusive_gpu = false;
  p->TryAllocate(1000000000, shared);
  uint64_t key = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(pool.TryAllocate(++key, demand));
    pool.Release(key);
  }
}
BENCHMARK(BM_PoolGpuAllocateRelease)->Arg(0)->Arg(1)->ArgNames({"fraction"});

void BM_PoolPinnedAllocateRelease(benchmark::State& state) {
  PoolCapacity c = Capacity();
  for (int core = 0; core < 24; ++core) c.pinned_cores.push_back({core, core + 24});
  c.cpu_strategy = state.range(0) == 0 ? Strategy::kPack : Strategy::kSpread;
  ResourcePool pool(c);
  const Demand demand = CpuDemand();
  uint64_t key = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(pool.TryAllocate(++key, demand));
    pool.Release(key);
  }
}
BENCHMARK(BM_PoolPinnedAllocateRelease)->Arg(0)->Arg(1)->ArgNames({"spread"});

}  // namespace
}  // namespace umi


