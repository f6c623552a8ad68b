// The pool and the scheduler under long random sequences: random configs,
// reloads, arrivals, grants, releases, cancels and priorities on a virtual
// clock. After every step the pool's counters equal the sum of the live
// grants, nothing exceeds a capacity or a cap (beyond what a shrinking
// reload left running), pinned CPU sets are disjoint, no GPU is above 1.0, an
// exclusive GPU has one holder; once arrivals stop, the queue drains.
//
// CI runs kDefaultSteps with a fixed seed; UMI_INVARIANT_STEPS and
// UMI_INVARIANT_SEED run it longer (scripts/soak does).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <random>
#include <set>

#include "scheduling/scheduler.h"

namespace umi {
namespace {

using std::chrono::milliseconds;
constexpr uint64_t kDefaultSteps = 100000;

uint64_t FromEnvironment(const char* name, uint64_t fallback) {
  const char* text = std::getenv(name);
  return text && *text ? std::strtoull(text, nullptr, 10) : fallback;
}

class Invariants {
 public:
  explicit Invariants(uint64_t seed) : random_(seed), pool_(RandomCapacity()), scheduler_(pool_, milliseconds(50)) {
    MarkReload();
  }

  void Step() {
    switch (random_() % 10) {
      case 0: case 1: case 2: case 3: Arrive(); break;
      case 4: case 5: ReleaseOne(); break;
      case 6: Cancel(); break;
      case 7: now_ += milliseconds(random_() % 120); break;
      case 8: if (random_() % 20 == 0) Reload(); break;
      default: break;
    }
    Dispatch(now_);
    Check();
  }

  // Arrivals stop: every queued task must start once the running ones end.
  void Drain() {
    for (int round = 0; scheduler_.size() > 0; ++round) {
      ASSERT_LT(round, 100000) << scheduler_.size() << " task(s) never started";
      while (!live_.empty()) ReleaseOne();
      now_ += milliseconds(1000);
      Dispatch(now_);
      Check();
    }
    while (!live_.empty()) ReleaseOne();
    const PoolUsage u = pool_.Usage();
    EXPECT_EQ(u.cpu_cores_used, Quantity());
    EXPECT_EQ(u.cpu_threads_used, 0);
    EXPECT_EQ(u.memory_mb_used, 0);
    EXPECT_EQ(pool_.running(), 0u);
  }

  uint64_t grants() const { return grants_; }

 private:
  PoolCapacity RandomCapacity() {
    PoolCapacity c;
    c.cpu_cores = Quantity::FromUnits(static_cast<int64_t>(1 + random_() % 16) * 5000);  // 0.5..8
    c.cpu_threads = static_cast<int>(1 + random_() % 16);
    c.memory_mb = static_cast<int64_t>(1 + random_() % 8) * 1024;
    c.max_concurrent_tasks = static_cast<int>(1 + random_() % 6);
    const int gpus = static_cast<int>(random_() % 4);
    std::vector<int> ids = {7, 1, 4, 0};  // configured ids, in no particular order
    for (int i = 0; i < gpus; ++i) c.gpus.push_back({ids[i], "test", 24});
    if (random_() % 2) c.group_caps["g"] = static_cast<int>(1 + random_() % 3);
    if (random_() % 2) c.plugin_caps["p1"] = static_cast<int>(1 + random_() % 2);
    c.cpu_strategy = random_() % 2 ? Strategy::kPack : Strategy::kSpread;
    c.gpu_strategy = random_() % 2 ? Strategy::kPack : Strategy::kSpread;
    if (random_() % 2) {  // pinning over SMT-2 cores, at most the pool's threads
      for (int core = 0, cpu = 0; cpu < c.cpu_threads; ++core) {
        c.pinned_cores.push_back({cpu++});
        if (cpu < c.cpu_threads) c.pinned_cores.back().push_back(cpu++);
      }
    }
    return c;
  }

  void Arrive() {
    QueuedTask task;
    task.key = ++next_key_;
    task.message.id = "t" + std::to_string(task.key);
    const int64_t priorities[] = {0, 1, -1, 10, INT64_MIN, INT64_MAX};
    task.message.priority = priorities[random_() % 6];
    task.enqueued_at = now_;
    const char* plugins[] = {"p1", "p2", "p3"};
    task.demand.plugin = plugins[random_() % 3];
    if (random_() % 3 == 0) task.demand.task_group = "g";
    ResourceRequirement& r = task.demand.requirement;
    r.cpu_cores = Quantity::FromUnits(static_cast<int64_t>(random_() % 5) * 2500);
    r.cpu_threads = static_cast<int>(random_() % 5);
    r.memory_mb = static_cast<int64_t>(random_() % 3000);
    if (random_() % 3 == 0) {
      const int64_t shares[] = {2500, 5000, 3333, 10000, 20000};
      r.gpu_count = Quantity::FromUnits(shares[random_() % 5]);
      r.exclusive_gpu = random_() % 2 == 0;
    }
    if (!pool_.CheckFeasible(task.demand).ok()) return;  // the host rejects it at the door
    scheduler_.Enqueue(std::move(task));
  }

  void Dispatch(Scheduler::Clock::time_point now) {
    for (auto& [task, allocation] : scheduler_.TakeRunnable(now)) {
      ASSERT_EQ(allocation.task_key, task.key);
      live_.emplace(task.key, std::move(allocation));
      ++grants_;
    }
  }

  void ReleaseOne() {
    if (live_.empty()) return;
    auto victim = live_.begin();
    std::advance(victim, static_cast<long>(random_() % live_.size()));
    ASSERT_TRUE(pool_.Release(victim->first));
    live_.erase(victim);
  }

  void Cancel() {
    if (next_key_ == 0) return;
    scheduler_.Remove(1 + random_() % next_key_);  // queued or not: Remove says
  }

  void Reload() {
    if (!pool_.Reconfigure(RandomCapacity()).ok()) return;  // refused: a held GPU is gone
    // As the host does: queued tasks that no longer fit at all are answered.
    for (QueuedTask& task : scheduler_.TakeAll()) {
      if (pool_.CheckFeasible(task.demand).ok()) scheduler_.Enqueue(std::move(task));
    }
    MarkReload();
  }

  // A reload may shrink the pool under running tasks: until they end, the
  // bound is what they held then.
  void MarkReload() {
    const PoolUsage u = pool_.Usage();
    const PoolCapacity& c = pool_.capacity();
    cores_bound_ = std::max(c.cpu_cores, u.cpu_cores_used);
    threads_bound_ = std::max(c.cpu_threads, u.cpu_threads_used);
    memory_bound_ = std::max(c.memory_mb, u.memory_mb_used);
    tasks_bound_ = std::max(c.max_concurrent_tasks, u.cpu_tasks_running);
    std::map<std::string, int> groups, plugins;
    for (const auto& [key, a] : live_) {
      if (!a.task_group.empty()) ++groups[a.task_group];
      ++plugins[a.plugin];
    }
    group_bound_.clear();
    plugin_bound_.clear();
    for (const auto& [group, cap] : c.group_caps) group_bound_[group] = std::max(groups[group], cap);
    for (const auto& [plugin, cap] : c.plugin_caps) plugin_bound_[plugin] = std::max(plugins[plugin], cap);
  }

  void Check() {
    const PoolUsage u = pool_.Usage();
    const PoolCapacity& c = pool_.capacity();
    Quantity cores;
    int threads = 0, cpu_tasks = 0;
    int64_t memory = 0;
    std::map<int, Quantity> gpu_used;
    std::map<int, int> holders, exclusive_holders;
    std::map<std::string, int> groups, plugins;
    std::set<int> pinned;
    for (const auto& [key, a] : live_) {
      cores += a.cpu_cores;
      threads += a.cpu_threads;
      memory += a.memory_mb;
      cpu_tasks += a.gpu_ids.empty();
      for (int id : a.gpu_ids) {
        gpu_used[id] += a.gpu_share;
        ++holders[id];
        if (a.gpu_share == Quantity::Whole(1)) ++exclusive_holders[id];
      }
      for (int cpu : a.cpu_ids) ASSERT_TRUE(pinned.insert(cpu).second) << "logical CPU " << cpu << " granted twice";
      if (!a.task_group.empty()) ++groups[a.task_group];
      ++plugins[a.plugin];
    }
    ASSERT_EQ(u.cpu_cores_used, cores);
    ASSERT_EQ(u.cpu_threads_used, threads);
    ASSERT_EQ(u.memory_mb_used, memory);
    ASSERT_EQ(u.cpu_tasks_running, cpu_tasks);
    ASSERT_EQ(pool_.running(), live_.size());
    for (size_t i = 0; i < c.gpus.size(); ++i) {
      const int id = c.gpus[i].id;
      ASSERT_EQ(u.gpu_used[i], gpu_used[id]) << "GPU " << id;
      ASSERT_LE(u.gpu_used[i], Quantity::Whole(1)) << "GPU " << id;
      if (exclusive_holders[id] > 0) {
        ASSERT_EQ(holders[id], 1) << "exclusive GPU " << id << " shared";
      }
    }
    ASSERT_LE(cores, cores_bound_);
    ASSERT_LE(threads, threads_bound_);
    ASSERT_LE(memory, memory_bound_);
    ASSERT_LE(cpu_tasks, tasks_bound_);
    for (const auto& [group, count] : groups) {
      if (group_bound_.count(group)) {
        ASSERT_LE(count, group_bound_[group]) << group;
      }
    }
    for (const auto& [plugin, count] : plugins) {
      if (plugin_bound_.count(plugin)) {
        ASSERT_LE(count, plugin_bound_[plugin]) << plugin;
      }
    }
    // Bounds tighten back to the capacity as the over-committed tasks end.
    cores_bound_ = std::max(c.cpu_cores, std::min(cores_bound_, cores));
    threads_bound_ = std::max(c.cpu_threads, std::min(threads_bound_, threads));
    memory_bound_ = std::max(c.memory_mb, std::min(memory_bound_, memory));
    tasks_bound_ = std::max(c.max_concurrent_tasks, std::min(tasks_bound_, cpu_tasks));
  }

  std::mt19937_64 random_;
  ResourcePool pool_;
  Scheduler scheduler_;
  Scheduler::Clock::time_point now_{};
  uint64_t next_key_ = 0, grants_ = 0;
  std::map<uint64_t, Allocation> live_;
  Quantity cores_bound_;
  int threads_bound_ = 0, tasks_bound_ = 0;
  int64_t memory_bound_ = 0;
  std::map<std::string, int> group_bound_, plugin_bound_;
};

TEST(SchedulerInvariants, RandomConfigsReloadsGrantsAndCancelsKeepEveryInvariant) {
  const uint64_t steps = FromEnvironment("UMI_INVARIANT_STEPS", kDefaultSteps);
  const uint64_t seed = FromEnvironment("UMI_INVARIANT_SEED", 20261129);
  Invariants run(seed);
  for (uint64_t step = 0; step < steps; ++step) {
    ASSERT_NO_FATAL_FAILURE(run.Step()) << "step " << step << ", seed " << seed;
  }
  ASSERT_NO_FATAL_FAILURE(run.Drain()) << "seed " << seed;
  EXPECT_GT(run.grants(), steps / 10) << "the sequence must exercise the pool";
  RecordProperty("steps", std::to_string(steps));
  RecordProperty("grants", std::to_string(run.grants()));
}

}  // namespace
}  // namespace umi
