#include "scheduling/resource_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>

namespace umi {
namespace {

PoolCapacity Capacity(int gpus = 2) {
  PoolCapacity c;
  c.cpu_cores = Quantity::Whole(8);
  c.cpu_threads = 16;
  c.memory_mb = 16384;
  c.max_concurrent_tasks = 4;
  for (int id = 0; id < gpus; ++id) c.gpus.push_back({id, "test", 24});
  return c;
}

Demand Cpu(double cores, int threads, int64_t memory_mb = 100) {
  Demand d;
  d.plugin = "p";
  d.requirement.cpu_cores = Quantity::FromDouble(cores);
  d.requirement.cpu_threads = threads;
  d.requirement.memory_mb = memory_mb;
  return d;
}

Demand Gpu(double count, bool exclusive) {
  Demand d = Cpu(1, 1);
  d.requirement.gpu_count = Quantity::FromDouble(count);
  d.requirement.exclusive_gpu = exclusive;
  return d;
}

TEST(ResourcePool, CoresThreadsAndMemoryAreSeparateBudgets) {
  ResourcePool pool(Capacity());
  // Threads run out first: 4 threads each, 16 in all.
  ASSERT_TRUE(pool.TryAllocate(1, Cpu(0.5, 8)));
  ASSERT_TRUE(pool.TryAllocate(2, Cpu(0.5, 8)));
  EXPECT_FALSE(pool.CanAllocate(Cpu(0.5, 1)));
  EXPECT_TRUE(pool.Release(1));
  // Cores: 8 in all.
  EXPECT_FALSE(pool.CanAllocate(Cpu(8, 1)));
  EXPECT_TRUE(pool.CanAllocate(Cpu(7.5, 1)));
  // Memory.
  EXPECT_FALSE(pool.CanAllocate(Cpu(1, 1, 16384)));
  EXPECT_TRUE(pool.CanAllocate(Cpu(1, 1, 16384 - 100)));
}

TEST(ResourcePool, AllocationIsAllOrNothing) {
  ResourcePool pool(Capacity());
  ASSERT_TRUE(pool.TryAllocate(1, Cpu(7, 2)));
  EXPECT_FALSE(pool.TryAllocate(2, Cpu(2, 1)));  // threads fit, cores do not
  const PoolUsage usage = pool.Usage();
  EXPECT_EQ(usage.cpu_threads_used, 2);
  EXPECT_EQ(usage.cpu_cores_used, Quantity::Whole(7));
  EXPECT_EQ(usage.memory_mb_used, 100);
}

TEST(ResourcePool, ReleaseReturnsEverythingAndOnlyOnce) {
  ResourcePool pool(Capacity());
  ASSERT_TRUE(pool.TryAllocate(1, Cpu(2.5, 3)));
  ASSERT_TRUE(pool.TryAllocate(2, Gpu(0.5, false)));
  EXPECT_TRUE(pool.Release(1));
  EXPECT_FALSE(pool.Release(1));
  EXPECT_TRUE(pool.Release(2));
  EXPECT_FALSE(pool.Release(99));
  const PoolUsage usage = pool.Usage();
  EXPECT_EQ(usage.cpu_cores_used, Quantity());
  EXPECT_EQ(usage.cpu_threads_used, 0);
  EXPECT_EQ(usage.memory_mb_used, 0);
  EXPECT_EQ(usage.gpu_used[0], Quantity());
}

TEST(ResourcePool, SameKeyCannotHoldTwoAllocations) {
  ResourcePool pool(Capacity());
  ASSERT_TRUE(pool.TryAllocate(1, Cpu(1, 1)));
  EXPECT_FALSE(pool.TryAllocate(1, Cpu(1, 1)));
}

TEST(ResourcePool, MaxConcurrentTasksCapsCpuTasksOnly) {
  ResourcePool pool(Capacity());
  for (uint64_t key = 1; key <= 4; ++key) ASSERT_TRUE(pool.TryAllocate(key, Cpu(0.1, 1)));
  EXPECT_FALSE(pool.CanAllocate(Cpu(0.1, 1)));
  // A GPU task still starts: the CPU-task cap does not block it.
  EXPECT_TRUE(pool.TryAllocate(5, Gpu(1, true)));
}

TEST(ResourcePool, ExclusiveGpuBlocksOnlyOtherGpuTasks) {
  ResourcePool pool(Capacity(1));
  const auto gpu = pool.TryAllocate(1, Gpu(1, true));
  ASSERT_TRUE(gpu);
  EXPECT_EQ(gpu->gpu_ids, std::vector<int>{0});
  EXPECT_FALSE(pool.CanAllocate(Gpu(1, true)));
  EXPECT_FALSE(pool.CanAllocate(Gpu(0.25, false)));
  EXPECT_TRUE(pool.CanAllocate(Cpu(1, 1)));
  pool.Release(1);
  EXPECT_TRUE(pool.CanAllocate(Gpu(1, true)));
}

TEST(ResourcePool, FractionalGpusShareOneDeviceBestFit) {
  ResourcePool pool(Capacity(2));
  const auto a = pool.TryAllocate(1, Gpu(0.5, false));
  const auto b = pool.TryAllocate(2, Gpu(0.25, false));
  const auto c = pool.TryAllocate(3, Gpu(0.25, false));
  ASSERT_TRUE(a && b && c);
  // All three pack onto device 0, leaving device 1 whole.
  EXPECT_EQ(a->gpu_ids, std::vector<int>{0});
  EXPECT_EQ(b->gpu_ids, std::vector<int>{0});
  EXPECT_EQ(c->gpu_ids, std::vector<int>{0});
  const auto whole = pool.TryAllocate(4, Gpu(1, true));
  ASSERT_TRUE(whole);
  EXPECT_EQ(whole->gpu_ids, std::vector<int>{1});
  EXPECT_FALSE(pool.CanAllocate(Gpu(0.0001, false)));
}

TEST(ResourcePool, ExclusiveFractionTakesAWholeDevice) {
  ResourcePool pool(Capacity(1));
  ASSERT_TRUE(pool.TryAllocate(1, Gpu(0.5, true)));
  EXPECT_FALSE(pool.CanAllocate(Gpu(0.5, false)));
}

TEST(ResourcePool, MultiGpuTakesWholeFreeDevices) {
  ResourcePool pool(Capacity(3));
  ASSERT_TRUE(pool.TryAllocate(1, Gpu(0.5, false)));
  const auto two = pool.TryAllocate(2, Gpu(2, false));
  ASSERT_TRUE(two);
  EXPECT_EQ(two->gpu_ids, (std::vector<int>{1, 2}));
}

TEST(ResourcePool, InfeasibleNamesEveryDimensionThatCannotFit) {
  ResourcePool pool(Capacity(1));
  Demand d = Cpu(9, 64, 20000);
  d.requirement.gpu_count = Quantity::Whole(2);
  const Status feasible = pool.CheckFeasible(d);
  EXPECT_EQ(feasible.code(), ErrorCode::kInfeasible);
  const std::string& why = feasible.message();
  EXPECT_NE(why.find("cpu_cores: needs 9, pool has 8"), std::string::npos) << why;
  EXPECT_NE(why.find("cpu_threads: needs 64, pool has 16"), std::string::npos) << why;
  EXPECT_NE(why.find("memory_mb: needs 20000, pool has 16384"), std::string::npos) << why;
  EXPECT_NE(why.find("gpu_count: needs 2, pool has 1"), std::string::npos) << why;
  EXPECT_TRUE(pool.CheckFeasible(Cpu(8, 16, 16384)).ok());
}

TEST(ResourcePool, GroupAndPluginCapsLimitInstances) {
  PoolCapacity capacity = Capacity();
  capacity.group_caps["g"] = 2;
  capacity.plugin_caps["solo"] = 1;
  ResourcePool pool(capacity);
  Demand grouped = Cpu(0.1, 1);
  grouped.task_group = "g";
  ASSERT_TRUE(pool.TryAllocate(1, grouped));
  ASSERT_TRUE(pool.TryAllocate(2, grouped));
  EXPECT_FALSE(pool.CanAllocate(grouped));
  Demand solo = Cpu(0.1, 1);
  solo.plugin = "solo";
  ASSERT_TRUE(pool.TryAllocate(3, solo));
  EXPECT_FALSE(pool.CanAllocate(solo));
  pool.Release(3);
  EXPECT_TRUE(pool.CanAllocate(solo));
}

}  // namespace
}  // namespace umi

namespace umi {
namespace {

PoolCapacity Pinned(Strategy strategy) {
  PoolCapacity c = Capacity(0);
  c.cpu_threads = 8;
  c.pinned_cores = {{0, 4}, {1, 5}, {2, 6}, {3, 7}};  // 4 cores x 2 hyperthreads
  c.cpu_strategy = strategy;
  return c;
}

TEST(ResourcePoolPinning, PackTakesSiblingsOfOneCoreFirst) {
  ResourcePool pool(Pinned(Strategy::kPack));
  const auto a = pool.TryAllocate(1, Cpu(1, 3));
  ASSERT_TRUE(a);
  EXPECT_EQ(a->cpu_ids, (std::vector<int>{0, 4, 1}));
  // The half-used core fills before an idle one.
  const auto b = pool.TryAllocate(2, Cpu(1, 1));
  ASSERT_TRUE(b);
  EXPECT_EQ(b->cpu_ids, std::vector<int>{5});
}

TEST(ResourcePoolPinning, SpreadTakesOneThreadPerCoreIdleCoresFirst) {
  ResourcePool pool(Pinned(Strategy::kSpread));
  const auto a = pool.TryAllocate(1, Cpu(1, 3));
  ASSERT_TRUE(a);
  EXPECT_EQ(a->cpu_ids, (std::vector<int>{0, 1, 2}));
  const auto b = pool.TryAllocate(2, Cpu(1, 2));
  ASSERT_TRUE(b);
  EXPECT_EQ(b->cpu_ids, (std::vector<int>{3, 4}));  // the idle core, then a sibling
}

TEST(ResourcePoolPinning, LogicalCpusAreNeverSharedAndComeBack) {
  ResourcePool pool(Pinned(Strategy::kPack));
  ASSERT_TRUE(pool.TryAllocate(1, Cpu(1, 5)));
  const auto b = pool.TryAllocate(2, Cpu(1, 3));
  ASSERT_TRUE(b);
  EXPECT_FALSE(pool.CanAllocate(Cpu(0.1, 1)));
  pool.Release(1);
  const auto c = pool.TryAllocate(3, Cpu(1, 5));
  ASSERT_TRUE(c);
  for (int cpu : c->cpu_ids) {
    EXPECT_EQ(std::count(b->cpu_ids.begin(), b->cpu_ids.end(), cpu), 0) << cpu;
  }
}

TEST(ResourcePoolPinning, FromConfigTakesTheFirstThreadsLogicalCpus) {
  HardwareConfig config;
  config.hardware.cpu.cores = 2;
  config.hardware.cpu.threads = 3;
  config.hardware.cpu.pinning = true;
  const PoolCapacity c = PoolCapacity::FromConfig(config, {{0, 4}, {1, 5}, {2, 6}});
  EXPECT_EQ(c.pinned_cores, (std::vector<std::vector<int>>{{0, 4}, {1}}));
  config.hardware.cpu.pinning = false;
  EXPECT_TRUE(PoolCapacity::FromConfig(config, {{0, 4}}).pinned_cores.empty());
}

TEST(ResourcePoolPinning, FromConfigPinsAsManyPhysicalCoresAsItCharges) {
  HardwareConfig config;
  config.hardware.cpu.cores = 4;
  config.hardware.cpu.threads = 4;
  config.hardware.cpu.pinning = true;
  const std::vector<std::vector<int>> smt2 = {{0, 4}, {1, 5}, {2, 6}, {3, 7}};
  // Before: {{0, 4}, {1, 5}}, four threads on two physical cores while four were charged.
  EXPECT_EQ(PoolCapacity::FromConfig(config, smt2).pinned_cores,
            (std::vector<std::vector<int>>{{0}, {1}, {2}, {3}}));
  config.hardware.cpu.cores = 2.5;
  config.hardware.cpu.threads = 5;
  EXPECT_EQ(PoolCapacity::FromConfig(config, smt2).pinned_cores,
            (std::vector<std::vector<int>>{{0, 4}, {1, 5}, {2}}));
  config.hardware.cpu.cores = 1;
  config.hardware.cpu.threads = 3;  // more threads than one core has: the next core's
  EXPECT_EQ(PoolCapacity::FromConfig(config, smt2).pinned_cores, (std::vector<std::vector<int>>{{0, 4}, {1}}));
}

TEST(ResourcePool, GrantsTheConfiguredGpuIds) {
  PoolCapacity c = Capacity(0);
  c.gpus = {{2, "test", 24}, {3, "test", 24}};
  ResourcePool pool(c);
  const auto a = pool.TryAllocate(1, Gpu(1, true));
  const auto b = pool.TryAllocate(2, Gpu(0.5, false));
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->gpu_ids, std::vector<int>{2});  // before: 0, the index
  EXPECT_EQ(b->gpu_ids, std::vector<int>{3});
  EXPECT_EQ(pool.Usage().gpu_ids, (std::vector<int>{2, 3}));
  EXPECT_FALSE(pool.CanAllocate(Gpu(1, true)));
  ASSERT_TRUE(pool.Release(1));
  EXPECT_EQ(pool.Usage().gpu_used[0], Quantity());
  // A reload that drops a held device is refused; one that keeps it (moved) is fine.
  PoolCapacity without = c;
  without.gpus = {{2, "test", 24}};
  EXPECT_EQ(pool.Reconfigure(without).message(), "GPU 3 is held by a running task and the new pool lacks it");
  PoolCapacity moved = c;
  moved.gpus = {{3, "test", 24}, {2, "test", 24}};
  EXPECT_TRUE(pool.Reconfigure(moved).ok());
  EXPECT_EQ(pool.Usage().gpu_used[0], Quantity::FromDouble(0.5));
  ASSERT_TRUE(pool.Release(2));
}

TEST(ResourcePool, GpuSpreadPutsFractionsOnTheEmptiestDevice) {
  PoolCapacity c = Capacity(2);
  c.gpu_strategy = Strategy::kSpread;
  ResourcePool pool(c);
  const auto a = pool.TryAllocate(1, Gpu(0.25, false));
  const auto b = pool.TryAllocate(2, Gpu(0.25, false));
  ASSERT_TRUE(a && b);
  EXPECT_NE(a->gpu_ids, b->gpu_ids);
}

// Long random sequences never exceed a capacity, never share an exclusive
// GPU, and end with an empty pool.
TEST(ResourcePool, RandomAllocateReleaseKeepsEveryInvariant) {
  PoolCapacity capacity = Capacity(3);
  capacity.group_caps["g"] = 3;
  ResourcePool pool(capacity);
  std::mt19937 random(12345);
  std::map<uint64_t, Allocation> held;
  uint64_t next_key = 1;
  for (int step = 0; step < 200000; ++step) {
    if (held.empty() || random() % 2 == 0) {
      Demand d = Cpu((random() % 40) / 10.0, static_cast<int>(random() % 6), static_cast<int64_t>(random() % 5000));
      if (random() % 4 == 0) {
        const double counts[] = {0.25, 0.5, 0.3333, 1, 2};
        d.requirement.gpu_count = Quantity::FromDouble(counts[random() % 5]);
        d.requirement.exclusive_gpu = random() % 2 == 0;
      }
      if (random() % 3 == 0) d.task_group = "g";
      if (auto a = pool.TryAllocate(next_key, d)) held.emplace(next_key, *a);
      ++next_key;
    } else {
      auto victim = held.begin();
      std::advance(victim, static_cast<long>(random() % held.size()));
      ASSERT_TRUE(pool.Release(victim->first));
      held.erase(victim);
    }
    const PoolUsage u = pool.Usage();
    ASSERT_LE(u.cpu_cores_used, u.cpu_cores_total);
    ASSERT_LE(u.cpu_threads_used, u.cpu_threads_total);
    ASSERT_LE(u.memory_mb_used, u.memory_mb_total);
    ASSERT_LE(u.cpu_tasks_running, u.max_concurrent_tasks);
    for (const Quantity& used : u.gpu_used) ASSERT_LE(used, Quantity::Whole(1));
    // An exclusive grant is alone on its device.
    std::map<int, int> holders, exclusive;
    int grouped = 0;
    for (const auto& [key, a] : held) {
      for (int id : a.gpu_ids) {
        ++holders[id];
        if (a.gpu_share == Quantity::Whole(1)) ++exclusive[id];
      }
      grouped += a.task_group == "g";
    }
    for (const auto& [id, count] : exclusive) ASSERT_EQ(holders[id], 1) << "device " << id;
    ASSERT_LE(grouped, 3);
  }
  for (const auto& [key, a] : held) ASSERT_TRUE(pool.Release(key));
  const PoolUsage u = pool.Usage();
  EXPECT_EQ(u.cpu_cores_used, Quantity());
  EXPECT_EQ(u.cpu_threads_used, 0);
  EXPECT_EQ(u.memory_mb_used, 0);
  EXPECT_EQ(u.cpu_tasks_running, 0);
  for (const Quantity& used : u.gpu_used) EXPECT_EQ(used, Quantity());
  EXPECT_EQ(pool.running(), 0u);
}

}  // namespace
}  // namespace umi
