// ResourceRequirement: what one task needs from the pool, in exact units.
//
// cpu_cores is the physical-core share the task is charged (fractional);
// cpu_threads is the parallelism it may use (whole threads). They are
// separate budgets: a 4-thread task charged 2 cores uses two hyperthreaded
// cores' worth of logical CPUs. gpu_count is 0, a fraction below 1 (shares
// one device), or a whole number of devices. exclusive_gpu takes whole
// devices that nobody else may share.
//
// RequirementOverride is a partial requirement: the fields a task group,
// a YAML plugin entry or a task's own `resources` replace.
//
// Thread safety: value types.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/quantity.h"
#include "common/status.h"

namespace umi {

struct ResourceRequirement {
  Quantity cpu_cores = Quantity::Whole(1);
  int cpu_threads = 1;
  Quantity gpu_count;
  int64_t memory_mb = 512;
  bool exclusive_gpu = true;

  bool uses_gpu() const { return gpu_count > Quantity(); }
  // Empty when the requirement is well-formed, else why not.
  Status Validate() const;  // kBadRequest with why, for a negative or fractional-above-1 amount
  // "cores=2 threads=4 memory_mb=4096 gpus=1 (exclusive)"
  std::string ToString() const;
  friend bool operator==(const ResourceRequirement&, const ResourceRequirement&) = default;
};

struct RequirementOverride {
  std::optional<double> cpu_cores;
  std::optional<int> cpu_threads;
  std::optional<double> gpu_count;
  std::optional<int64_t> memory_mb;
  std::optional<bool> exclusive_gpu;

  void ApplyTo(ResourceRequirement& requirement) const;
  friend bool operator==(const RequirementOverride&, const RequirementOverride&) = default;
};

}  // namespace umi
