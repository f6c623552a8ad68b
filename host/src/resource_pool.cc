#include "resource_pool.h"

#include <algorithm>

namespace umi {

PoolCapacity PoolCapacity::FromConfig(const HardwareConfig& config) {
  PoolCapacity capacity;
  capacity.cpu_cores = Quantity::FromDouble(config.cpu_cores);
  capacity.cpu_threads = config.cpu_threads;
  capacity.memory_mb = config.memory_capacity_mb();
  capacity.max_concurrent_tasks = config.max_concurrent_tasks;
  capacity.gpus = config.gpus;
  for (const auto& [name, group] : config.task_groups) {
    if (group.max_instances) capacity.group_caps[name] = *group.max_instances;
  }
  for (const auto& [name, plugin] : config.plugins) {
    if (plugin.max_instances) capacity.plugin_caps[name] = *plugin.max_instances;
  }
  return capacity;
}

ResourcePool::ResourcePool(PoolCapacity capacity)
    : capacity_(std::move(capacity)), gpus_(capacity_.gpus.size()) {}

Quantity ResourcePool::GpuShare(const ResourceRequirement& requirement) {
  if (requirement.exclusive_gpu || requirement.gpu_count >= Quantity::Whole(1)) {
    return Quantity::Whole(1);
  }
  return requirement.gpu_count;
}

std::string ResourcePool::WhyInfeasible(const Demand& demand) const {
  const ResourceRequirement& r = demand.requirement;
  std::string why;
  auto add = [&why](const std::string& what, const std::string& need, const std::string& have) {
    why += (why.empty() ? "" : "; ") + what + ": needs " + need + ", pool has " + have;
  };
  if (r.cpu_cores > capacity_.cpu_cores) {
    add("cpu_cores", r.cpu_cores.ToString(), capacity_.cpu_cores.ToString());
  }
  if (r.cpu_threads > capacity_.cpu_threads) {
    add("cpu_threads", std::to_string(r.cpu_threads), std::to_string(capacity_.cpu_threads));
  }
  if (r.memory_mb > capacity_.memory_mb) {
    add("memory_mb", std::to_string(r.memory_mb), std::to_string(capacity_.memory_mb));
  }
  if (r.uses_gpu() && r.gpu_count.CeilWholes() > static_cast<int64_t>(gpus_.size())) {
    add("gpu_count", r.gpu_count.ToString(), std::to_string(gpus_.size()));
  }
  return why;
}

bool ResourcePool::UnderCap(const std::map<std::string, int>& caps,
                            const std::unordered_map<std::string, int>& running,
                            const std::string& key) const {
  const auto cap = caps.find(key);
  if (cap == caps.end()) return true;
  const auto count = running.find(key);
  return (count == running.end() ? 0 : count->second) < cap->second;
}

std::optional<std::vector<int>> ResourcePool::PickGpus(const ResourceRequirement& requirement,
                                                       Quantity share) const {
  std::vector<int> picked;
  if (share < Quantity::Whole(1)) {
    // Best fit: the device with the least room that still holds the share.
    int best = -1;
    for (int id = 0; id < static_cast<int>(gpus_.size()); ++id) {
      const GpuState& gpu = gpus_[id];
      if (gpu.exclusive || Quantity::Whole(1) - gpu.used < share) continue;
      if (best < 0 || gpu.used > gpus_[best].used) best = id;
    }
    if (best < 0) return std::nullopt;
    picked.push_back(best);
    return picked;
  }
  const int64_t needed = requirement.gpu_count.CeilWholes();
  for (int id = 0; id < static_cast<int>(gpus_.size()) && static_cast<int64_t>(picked.size()) < needed;
       ++id) {
    if (gpus_[id].used == Quantity()) picked.push_back(id);
  }
  if (static_cast<int64_t>(picked.size()) < needed) return std::nullopt;
  return picked;
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
  Allocation allocation;
  allocation.task_key = task_key;
  allocation.cpu_cores = r.cpu_cores;
  allocation.cpu_threads = r.cpu_threads;
  allocation.memory_mb = r.memory_mb;
  allocation.task_group = demand.task_group;
  allocation.plugin = demand.plugin;
  if (r.uses_gpu()) {
    allocation.gpu_share = GpuShare(r);
    allocation.gpu_ids = *PickGpus(r, allocation.gpu_share);
    for (int id : allocation.gpu_ids) {
      gpus_[id].used += allocation.gpu_share;
      gpus_[id].exclusive = r.exclusive_gpu;
    }
  } else {
    ++cpu_tasks_running_;
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
  for (int id : a.gpu_ids) {
    gpus_[id].used -= a.gpu_share;
    if (gpus_[id].used == Quantity()) gpus_[id].exclusive = false;
  }
  if (!a.task_group.empty()) --group_running_[a.task_group];
  --plugin_running_[a.plugin];
  allocations_.erase(found);
  return true;
}

PoolUsage ResourcePool::Usage() const {
  PoolUsage usage;
  usage.cpu_cores_used = cores_used_;
  usage.cpu_cores_total = capacity_.cpu_cores;
  usage.cpu_threads_used = threads_used_;
  usage.cpu_threads_total = capacity_.cpu_threads;
  usage.memory_mb_used = memory_used_;
  usage.memory_mb_total = capacity_.memory_mb;
  usage.cpu_tasks_running = cpu_tasks_running_;
  usage.max_concurrent_tasks = capacity_.max_concurrent_tasks;
  for (const GpuState& gpu : gpus_) usage.gpu_used.push_back(gpu.used);
  return usage;
}

}  // namespace umi
