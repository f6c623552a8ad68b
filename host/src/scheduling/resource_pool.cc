#include "scheduling/resource_pool.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace umi {

PoolCapacity PoolCapacity::FromConfig(const HardwareConfig& config,
                                      const std::vector<std::vector<int>>& machine_cores) {
  PoolCapacity capacity;
  capacity.cpu_strategy = config.allocation.cpu;
  capacity.gpu_strategy = config.allocation.gpu;
  if (config.hardware.cpu.pinning) {
    // The threads spread over as many physical cores as the pool charges
    // (ceil(cores)), one sibling of each before the next: cores: 4,
    // threads: 4 pins one logical CPU on each of 4 cores, not both
    // siblings of 2. Threads beyond those cores' siblings take more cores.
    const size_t charged = std::min(machine_cores.size(),
                                    static_cast<size_t>(std::max(1.0, std::ceil(config.hardware.cpu.cores))));
    std::vector<std::vector<int>> chosen(machine_cores.size());
    int remaining = config.hardware.cpu.threads;
    for (size_t sibling = 0, progressed = 1; remaining > 0 && progressed; ++sibling) {
      progressed = 0;
      for (size_t core = 0; core < charged && remaining > 0; ++core) {
        if (sibling >= machine_cores[core].size()) continue;
        chosen[core].push_back(machine_cores[core][sibling]);
        --remaining;
        ++progressed;
      }
    }
    for (size_t core = charged; core < machine_cores.size() && remaining > 0; ++core) {
      for (size_t sibling = 0; sibling < machine_cores[core].size() && remaining > 0; ++sibling, --remaining) {
        chosen[core].push_back(machine_cores[core][sibling]);
      }
    }
    for (auto& core : chosen) {
      if (!core.empty()) capacity.pinned_cores.push_back(std::move(core));
    }
  }
  capacity.cpu_cores = Quantity::FromDouble(config.hardware.cpu.cores);
  capacity.cpu_threads = config.hardware.cpu.threads;
  capacity.memory_mb = config.memory_capacity_mb();
  capacity.max_concurrent_tasks = config.hardware.cpu.max_concurrent_tasks;
  capacity.gpus = config.hardware.gpus;
  for (const auto& [name, group] : config.task_groups) {
    if (group.max_instances) capacity.group_caps[name] = *group.max_instances;
  }
  for (const auto& [name, plugin] : config.plugins) {
    if (plugin.max_instances) capacity.plugin_caps[name] = *plugin.max_instances;
  }
  return capacity;
}

ResourcePool::ResourcePool(PoolCapacity capacity) { IndexCapacity(std::move(capacity)); }

void ResourcePool::IndexCapacity(PoolCapacity capacity) {
  capacity_ = std::move(capacity);
  gpus_.assign(capacity_.gpus.size(), GpuState{});
  gpu_index_.clear();
  for (size_t index = 0; index < capacity_.gpus.size(); ++index) gpu_index_[capacity_.gpus[index].id] = index;
  cpu_busy_.clear();
  cpu_slot_.clear();
  for (size_t core = 0; core < capacity_.pinned_cores.size(); ++core) {
    cpu_busy_.emplace_back(capacity_.pinned_cores[core].size(), false);
    for (size_t sibling = 0; sibling < capacity_.pinned_cores[core].size(); ++sibling) {
      cpu_slot_[capacity_.pinned_cores[core][sibling]] = {core, sibling};
    }
  }
}

Status ResourcePool::Reconfigure(PoolCapacity capacity) {
  for (const auto& [key, allocation] : allocations_) {
    for (int id : allocation.gpu_ids) {
      const bool kept = std::any_of(capacity.gpus.begin(), capacity.gpus.end(),
                                    [id](const GpuDevice& gpu) { return gpu.id == id; });
      if (!kept) {
        return Status(ErrorCode::kInvalidConfig,
                      "GPU " + std::to_string(id) + " is held by a running task and the new pool lacks it");
      }
    }
  }
  IndexCapacity(std::move(capacity));
  for (const auto& [key, a] : allocations_) {
    for (int cpu : a.cpu_ids) {
      if (const auto slot = cpu_slot_.find(cpu); slot != cpu_slot_.end()) {
        cpu_busy_[slot->second.first][slot->second.second] = true;
      }
    }
    for (int id : a.gpu_ids) {
      GpuState& gpu = gpus_[gpu_index_.at(id)];
      gpu.used += a.gpu_share;
      gpu.exclusive = gpu.exclusive || a.gpu_share == Quantity::Whole(1);
    }
  }
  return {};
}

Quantity ResourcePool::GpuShare(const ResourceRequirement& requirement) {
  if (requirement.exclusive_gpu || requirement.gpu_count >= Quantity::Whole(1)) {
    return Quantity::Whole(1);
  }
  return requirement.gpu_count;
}

Status ResourcePool::CheckFeasible(const Demand& demand) const {
  return umi::CheckFeasible(capacity_, demand.requirement);
}

Status CheckFeasible(const PoolCapacity& capacity, const ResourceRequirement& r) {
  std::string why;
  auto add = [&why](const std::string& what, const std::string& need, const std::string& have) {
    why += (why.empty() ? "" : "; ") + what + ": needs " + need + ", pool has " + have;
  };
  if (r.cpu_cores > capacity.cpu_cores) {
    add("cpu_cores", r.cpu_cores.ToString(), capacity.cpu_cores.ToString());
  }
  if (r.cpu_threads > capacity.cpu_threads) {
    add("cpu_threads", std::to_string(r.cpu_threads), std::to_string(capacity.cpu_threads));
  }
  if (r.memory_mb > capacity.memory_mb) {
    add("memory_mb", std::to_string(r.memory_mb), std::to_string(capacity.memory_mb));
  }
  if (r.uses_gpu() && r.gpu_count.CeilWholes() > static_cast<int64_t>(capacity.gpus.size())) {
    add("gpu_count", r.gpu_count.ToString(), std::to_string(capacity.gpus.size()));
  }
  return why.empty() ? Status() : Status(ErrorCode::kInfeasible, std::move(why));
}

bool ResourcePool::UnderCap(const std::map<std::string, int>& caps,
                            const std::unordered_map<std::string, int>& running,
                            const std::string& key) const {
  const auto cap = caps.find(key);
  if (cap == caps.end()) return true;
  const auto count = running.find(key);
  return (count == running.end() ? 0 : count->second) < cap->second;
}

std::optional<std::vector<int>> ResourcePool::PickGpusFrom(const std::vector<GpuState>& gpus,
                                                           const ResourceRequirement& requirement,
                                                           Quantity share) const {
  std::vector<int> picked;
  if (share < Quantity::Whole(1)) {
    // pack: the fullest device that still holds the share; spread: the emptiest.
    const bool pack = capacity_.gpu_strategy == Strategy::kPack;
    int best = -1;
    for (int id = 0; id < static_cast<int>(gpus.size()); ++id) {
      const GpuState& gpu = gpus[id];
      if (gpu.exclusive || Quantity::Whole(1) - gpu.used < share) continue;
      if (best < 0 || (pack ? gpu.used > gpus[best].used : gpu.used < gpus[best].used)) best = id;
    }
    if (best < 0) return std::nullopt;
    picked.push_back(best);
    return picked;
  }
  const int64_t needed = requirement.gpu_count.CeilWholes();
  for (int id = 0; id < static_cast<int>(gpus.size()) && static_cast<int64_t>(picked.size()) < needed;
       ++id) {
    if (gpus[id].used == Quantity()) picked.push_back(id);
  }
  if (static_cast<int64_t>(picked.size()) < needed) return std::nullopt;
  return picked;
}

std::optional<std::vector<int>> ResourcePool::PickCpus(int threads) const {
  std::vector<int> picked;
  if (cpu_busy_.empty() || threads <= 0) return picked;
  std::vector<std::pair<size_t, size_t>> cores;  // (free siblings, core)
  for (size_t core = 0; core < cpu_busy_.size(); ++core) {
    const auto free = static_cast<size_t>(std::count(cpu_busy_[core].begin(), cpu_busy_[core].end(), false));
    if (free > 0) cores.emplace_back(free, core);
  }
  const auto wanted = static_cast<size_t>(threads);
  if (capacity_.cpu_strategy == Strategy::kPack) {
    // Fullest cores first, all free siblings of a core before the next.
    std::stable_sort(cores.begin(), cores.end(), [](auto a, auto b) { return a.first < b.first; });
    for (const auto& [free, core] : cores) {
      for (size_t s = 0; s < cpu_busy_[core].size() && picked.size() < wanted; ++s) {
        if (!cpu_busy_[core][s]) picked.push_back(capacity_.pinned_cores[core][s]);
      }
    }
  } else {
    // Idle cores first, one logical CPU per core per round.
    std::stable_sort(cores.begin(), cores.end(), [](auto a, auto b) { return a.first > b.first; });
    for (size_t round = 0; picked.size() < wanted; ++round) {
      bool took = false;
      for (const auto& [free, core] : cores) {
        if (picked.size() == wanted) break;
        size_t seen = 0;
        for (size_t s = 0; s < cpu_busy_[core].size(); ++s) {
          if (cpu_busy_[core][s]) continue;
          if (seen++ == round) {
            picked.push_back(capacity_.pinned_cores[core][s]);
            took = true;
            break;
          }
        }
      }
      if (!took) break;
    }
  }
  if (picked.size() < wanted) return std::nullopt;
  return picked;
}

int ResourcePool::FreeSlots(const std::map<std::string, int>& caps,
                            const std::unordered_map<std::string, int>& running, const std::string& key) const {
  const auto cap = caps.find(key);
  if (cap == caps.end()) return INT32_MAX;
  const auto count = running.find(key);
  return cap->second - (count == running.end() ? 0 : count->second);
}

bool ResourcePool::CanAllocateBeside(const Demand& demand, const Demand& reserved) const {
  if (!CanAllocate(demand)) return false;
  const ResourceRequirement& d = demand.requirement;
  const ResourceRequirement& r = reserved.requirement;
  // What is free beyond the reserved task's need (never below zero).
  const Quantity spare_cores = std::max(Quantity(), capacity_.cpu_cores - cores_used_ - r.cpu_cores);
  if (d.cpu_cores > spare_cores) return false;
  if (d.cpu_threads > std::max(0, capacity_.cpu_threads - threads_used_ - r.cpu_threads)) return false;
  if (d.memory_mb > std::max<int64_t>(0, capacity_.memory_mb - memory_used_ - r.memory_mb)) return false;
  if (!d.uses_gpu() && !r.uses_gpu() && capacity_.max_concurrent_tasks - cpu_tasks_running_ < 2) return false;
  if (!demand.task_group.empty() && demand.task_group == reserved.task_group &&
      FreeSlots(capacity_.group_caps, group_running_, demand.task_group) < 2) {
    return false;
  }
  if (demand.plugin == reserved.plugin && FreeSlots(capacity_.plugin_caps, plugin_running_, demand.plugin) < 2) {
    return false;
  }
  if (d.uses_gpu() && r.uses_gpu()) {
    // Take the devices, then see whether the reserved task could still get its own.
    std::vector<GpuState> after = gpus_;
    const Quantity share = GpuShare(d);
    const std::vector<int> taken = *PickGpus(d, share);  // CanAllocate saw it succeed
    for (int id : taken) {
      after[id].used += share;
      after[id].exclusive = d.exclusive_gpu;
    }
    if (!PickGpusFrom(after, r, GpuShare(r))) return false;
  }
  return true;
}

bool ResourcePool::GpuTaskMayGoFirst(const Demand& gpu_task, const Demand& reserved) const {
  const ResourceRequirement& g = gpu_task.requirement;
  const ResourceRequirement& r = reserved.requirement;
  if (!g.uses_gpu() || r.uses_gpu()) return false;
  Quantity cores = g.cpu_cores + r.cpu_cores;
  int64_t threads = g.cpu_threads + r.cpu_threads;
  int64_t memory_mb = g.memory_mb + r.memory_mb;
  for (const auto& [key, allocation] : allocations_) {
    if (allocation.gpu_ids.empty()) continue;
    cores += allocation.cpu_cores;
    threads += allocation.cpu_threads;
    memory_mb += allocation.memory_mb;
  }
  return cores <= capacity_.cpu_cores && threads <= capacity_.cpu_threads && memory_mb <= capacity_.memory_mb;
}

bool ResourcePool::AtItsCap(const Demand& demand) const {
  return (!demand.task_group.empty() && !UnderCap(capacity_.group_caps, group_running_, demand.task_group)) ||
         !UnderCap(capacity_.plugin_caps, plugin_running_, demand.plugin);
}

bool ResourcePool::CanAllocate(const Demand& demand) const {
  const ResourceRequirement& r = demand.requirement;
  if (cores_used_ + r.cpu_cores > capacity_.cpu_cores) return false;
  if (threads_used_ + r.cpu_threads > capacity_.cpu_threads) return false;
  if (memory_used_ + r.memory_mb > capacity_.memory_mb) return false;
  if (!r.uses_gpu() && cpu_tasks_running_ >= capacity_.max_concurrent_tasks) return false;
  if (!demand.task_group.empty() &&
      !UnderCap(capacity_.group_caps, group_running_, demand.task_group)) {
    return false;
  }
  if (!UnderCap(capacity_.plugin_caps, plugin_running_, demand.plugin)) return false;
  return !r.uses_gpu() || PickGpus(r, GpuShare(r)).has_value();
}

std::optional<Allocation> ResourcePool::TryAllocate(uint64_t task_key, const Demand& demand) {
  if (allocations_.count(task_key) || !CanAllocate(demand)) return std::nullopt;
  const ResourceRequirement& r = demand.requirement;
  std::optional<std::vector<int>> cpus = PickCpus(r.cpu_threads);
  if (!cpus) return std::nullopt;
  Allocation allocation;
  allocation.task_key = task_key;
  allocation.cpu_cores = r.cpu_cores;
  allocation.cpu_threads = r.cpu_threads;
  allocation.memory_mb = r.memory_mb;
  allocation.task_group = demand.task_group;
  allocation.plugin = demand.plugin;
  if (r.uses_gpu()) {
    allocation.gpu_share = GpuShare(r);
    const std::vector<int> picked = *PickGpus(r, allocation.gpu_share);  // CanAllocate saw it succeed
    for (int index : picked) {
      gpus_[index].used += allocation.gpu_share;
      gpus_[index].exclusive = r.exclusive_gpu;
      allocation.gpu_ids.push_back(capacity_.gpus[index].id);  // the device id the config names
    }
  } else {
    ++cpu_tasks_running_;
  }
  allocation.cpu_ids = std::move(*cpus);
  for (int cpu : allocation.cpu_ids) {
    const auto [core, sibling] = cpu_slot_.at(cpu);
    cpu_busy_[core][sibling] = true;
  }
  cores_used_ += r.cpu_cores;
  threads_used_ += r.cpu_threads;
  memory_used_ += r.memory_mb;
  if (!demand.task_group.empty()) ++group_running_[demand.task_group];
  ++plugin_running_[demand.plugin];
  return allocations_.emplace(task_key, std::move(allocation)).first->second;
}

bool ResourcePool::Release(uint64_t task_key) {
  const auto found = allocations_.find(task_key);
  if (found == allocations_.end()) return false;
  const Allocation& a = found->second;
  cores_used_ -= a.cpu_cores;
  threads_used_ -= a.cpu_threads;
  memory_used_ -= a.memory_mb;
  if (a.gpu_ids.empty()) --cpu_tasks_running_;
  for (int cpu : a.cpu_ids) {
    // A reload may have taken this CPU out of the pinned set.
    if (const auto slot = cpu_slot_.find(cpu); slot != cpu_slot_.end()) {
      cpu_busy_[slot->second.first][slot->second.second] = false;
    }
  }
  for (int id : a.gpu_ids) {
    GpuState& gpu = gpus_[gpu_index_.at(id)];
    gpu.used -= a.gpu_share;
    if (gpu.used == Quantity()) gpu.exclusive = false;
  }
  if (!a.task_group.empty()) --group_running_[a.task_group];
  --plugin_running_[a.plugin];
  allocations_.erase(found);
  return true;
}

PoolUsage ResourcePool::Usage() const {
  PoolUsage usage;
  FillUsage(usage);
  return usage;
}

void ResourcePool::FillUsage(PoolUsage& usage) const {
  usage.cpu_cores_used = cores_used_;
  usage.cpu_cores_total = capacity_.cpu_cores;
  usage.cpu_threads_used = threads_used_;
  usage.cpu_threads_total = capacity_.cpu_threads;
  usage.memory_mb_used = memory_used_;
  usage.memory_mb_total = capacity_.memory_mb;
  usage.cpu_tasks_running = cpu_tasks_running_;
  usage.max_concurrent_tasks = capacity_.max_concurrent_tasks;
  usage.gpu_used.clear();
  usage.gpu_ids.clear();
  for (const GpuState& gpu : gpus_) usage.gpu_used.push_back(gpu.used);
  for (const GpuDevice& gpu : capacity_.gpus) usage.gpu_ids.push_back(gpu.id);
}

}  // namespace umi
