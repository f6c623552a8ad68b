// ResourcePool: exact accounting of CPU cores, CPU threads, memory and GPUs.
//
// A task's Demand is granted all-or-nothing by TryAllocate, which returns
// the Allocation (including which GPU ids) or nothing; Release(task_key)
// returns it. Rules:
//   - cpu_cores, cpu_threads and memory_mb are separate budgets; each must
//     fit. Memory capacity is total x overcommit_ratio.
//   - CPU-only tasks (gpu_count == 0) are capped by max_concurrent_tasks.
//     GPU tasks are not: they are capped by their devices, so a GPU task is
//     never blocked by a pool full of CPU tasks' slots.
//   - exclusive_gpu takes ceil(gpu_count) wholly free devices. A shared
//     fraction below 1 goes best-fit onto one device (the fullest device it
//     still fits), so fractions pack and whole devices stay free. A shared
//     whole number takes that many wholly free devices.
//   - allocation.gpu pack puts a shared fraction on the fullest device it
//     fits (whole devices stay free); spread puts it on the emptiest.
//   - With pinning, a task also gets cpu_threads logical CPUs of its own:
//     pack takes sibling hyperthreads of one core before the next core;
//     spread takes one logical CPU per core, idle cores first.
//   - Task groups and plugins may carry max_instances caps.
// CheckFeasible tells a demand that no amount of waiting can satisfy.
//
// Thread safety: none. The host's event loop owns the pool.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "config/hardware_config.h"
#include "common/quantity.h"
#include "common/requirement.h"
#include "common/status.h"

namespace umi {

struct PoolCapacity {
  Quantity cpu_cores;
  int cpu_threads = 0;
  int64_t memory_mb = 0;
  int max_concurrent_tasks = 0;
  std::vector<GpuDevice> gpus;
  std::map<std::string, int> group_caps;   // task group -> max_instances
  std::map<std::string, int> plugin_caps;  // plugin -> max_instances
  Strategy cpu_strategy = Strategy::kPack;
  Strategy gpu_strategy = Strategy::kPack;
  // Logical CPU ids per physical core; non-empty turns pinning on.
  std::vector<std::vector<int>> pinned_cores;

  // With config.hardware.cpu.pinning, `machine_cores` (logical CPUs per core) supplies
  // cpu_threads logical CPUs spread over the first ceil(cpu_cores) cores
  // (one sibling of each core before the next), then further cores.
  static PoolCapacity FromConfig(const HardwareConfig& config,
                                 const std::vector<std::vector<int>>& machine_cores = {});
};

// Ok if `requirement` fits an idle pool of `capacity`; else kInfeasible
// naming each dimension that does not, e.g. "cpu_threads: needs 64, pool has 48".
Status CheckFeasible(const PoolCapacity& capacity, const ResourceRequirement& requirement);

struct Demand {
  ResourceRequirement requirement;
  std::string task_group;  // empty: none
  std::string plugin;
};

struct Allocation {
  uint64_t task_key = 0;
  Quantity cpu_cores;
  int cpu_threads = 0;
  int64_t memory_mb = 0;
  std::vector<int> gpu_ids;  // device ids, as configured (hardware.gpu.devices[].id)
  Quantity gpu_share;        // charged on each of gpu_ids
  std::vector<int> cpu_ids;  // logical CPUs, when pinning
  std::string task_group;
  std::string plugin;
};

struct PoolUsage {
  Quantity cpu_cores_used, cpu_cores_total;
  int cpu_threads_used = 0, cpu_threads_total = 0;
  int64_t memory_mb_used = 0, memory_mb_total = 0;
  int cpu_tasks_running = 0, max_concurrent_tasks = 0;
  std::vector<Quantity> gpu_used;  // per device, 1 = whole device
  std::vector<int> gpu_ids;        // the device id of each, as configured
};

class ResourcePool {
 public:
  explicit ResourcePool(PoolCapacity capacity);

  // Ok if the demand could run on an idle pool; else kInfeasible with the
  // numbers that did not fit, e.g. "cpu_threads: needs 64, pool has 48".
  Status CheckFeasible(const Demand& demand) const;
  bool CanAllocate(const Demand& demand) const;
  // True when the demand's task group or plugin runs as many instances as
  // its max_instances allows: only one of its own ending lets it start.
  bool AtItsCap(const Demand& demand) const;
  // Whether `demand` can be allocated now without taking anything that
  // `reserved` (a task that does not fit yet) still needs: on every
  // dimension, `demand` may use only what is free beyond `reserved`'s need.
  // Backfill under a reservation; see Scheduler.
  bool CanAllocateBeside(const Demand& demand, const Demand& reserved) const;
  // Whether GPU task `gpu_task` (which CanAllocate) may start ahead of
  // `reserved`, a CPU task holding the reservation: the pool's capacity
  // holds `reserved` beside every running GPU task and `gpu_task`, so
  // `reserved` still starts once the CPU tasks before it end, while the
  // GPU does not idle waiting for them (workload W3).
  bool GpuTaskMayGoFirst(const Demand& gpu_task, const Demand& reserved) const;
  // True if the demand needs GPUs and they are free now (whatever else it lacks).
  bool GpusAvailableFor(const Demand& demand) const {
    return demand.requirement.uses_gpu() && PickGpus(demand.requirement, GpuShare(demand.requirement));
  }
  std::optional<Allocation> TryAllocate(uint64_t task_key, const Demand& demand);
  // False when task_key holds nothing (never allocated or already released).
  bool Release(uint64_t task_key);
  // Switches to a new capacity (a config reload). Running allocations stay
  // and count against it, even where it is now smaller: new grants wait
  // until enough of them end. Refused (kInvalidConfig, nothing changed)
  // when a running task holds a GPU the new pool lacks.
  Status Reconfigure(PoolCapacity capacity);

  PoolUsage Usage() const;
  // The same into `usage`, reusing its vectors (the loop does it per task).
  void FillUsage(PoolUsage& usage) const;
  const PoolCapacity& capacity() const { return capacity_; }
  size_t running() const { return allocations_.size(); }

 private:
  struct GpuState {
    Quantity used;
    bool exclusive = false;
  };
  // Devices for the demand, or nothing if they are not free now.
  std::optional<std::vector<int>> PickGpus(const ResourceRequirement& requirement,
                                           Quantity share) const {
    return PickGpusFrom(gpus_, requirement, share);
  }
  std::optional<std::vector<int>> PickGpusFrom(const std::vector<GpuState>& gpus,
                                               const ResourceRequirement& requirement,
                                               Quantity share) const;
  void IndexCapacity(PoolCapacity capacity);
  int FreeSlots(const std::map<std::string, int>& caps, const std::unordered_map<std::string, int>& running,
                const std::string& key) const;
  std::optional<std::vector<int>> PickCpus(int threads) const;
  static Quantity GpuShare(const ResourceRequirement& requirement);
  bool UnderCap(const std::map<std::string, int>& caps,
                const std::unordered_map<std::string, int>& running, const std::string& key) const;

  PoolCapacity capacity_;
  Quantity cores_used_;
  int threads_used_ = 0;
  int64_t memory_used_ = 0;
  int cpu_tasks_running_ = 0;
  std::vector<GpuState> gpus_;                // parallel to capacity_.gpus
  std::unordered_map<int, size_t> gpu_index_;  // device id -> index in gpus_
  std::vector<std::vector<bool>> cpu_busy_;  // parallel to capacity_.pinned_cores
  std::unordered_map<int, std::pair<size_t, size_t>> cpu_slot_;  // logical CPU -> (core, sibling)
  std::unordered_map<std::string, int> group_running_;
  std::unordered_map<std::string, int> plugin_running_;
  std::unordered_map<uint64_t, Allocation> allocations_;
};

}  // namespace umi
