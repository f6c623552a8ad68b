// Machine: what the hardware actually offers, detected once at start.
//
// CPU topology comes from hwloc: physical cores, the logical CPUs (PUs) of
// each, restricted to what this process may use (cgroups, affinity). GPUs
// come from the CUDA runtime when umi was built with CUDA; no device, no
// driver or any CUDA error means zero GPUs and a reason, never a crash.
//
// Thread safety: DetectMachine is safe to call from any thread; it is slow
// (milliseconds), so call it once.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/hardware_config.h"

namespace umi {

struct Machine {
  // Logical CPU ids (OS numbering) per physical core, cores in topology order.
  std::vector<std::vector<int>> cores;
  int64_t memory_mb = 0;
  std::vector<GpuDevice> gpus;
  std::string gpu_note;  // why there are no GPUs, when there are none

  int logical_cpus() const;
  int threads_per_core() const;  // the largest sibling count seen
};

Machine DetectMachine();

// GPU detection alone (CUDA runtime when available).
std::vector<GpuDevice> DetectGpus(std::string* note);

// Makes `gpu_id` the calling thread's CUDA device; a no-op without CUDA.
void BindThreadToGpu(int gpu_id);

}  // namespace umi
