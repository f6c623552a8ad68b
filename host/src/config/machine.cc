#include "config/machine.h"

#include <hwloc.h>
#include <unistd.h>

#include <algorithm>

namespace umi {

int Machine::logical_cpus() const {
  int count = 0;
  for (const auto& core : cores) count += static_cast<int>(core.size());
  return count;
}

int Machine::threads_per_core() const {
  size_t most = 1;
  for (const auto& core : cores) most = std::max(most, core.size());
  return static_cast<int>(most);
}

Machine DetectMachine() {
  Machine machine;
  hwloc_topology_t topology;
  if (hwloc_topology_init(&topology) == 0 && hwloc_topology_load(topology) == 0) {
    const int cores = hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_CORE);
    for (int i = 0; i < cores; ++i) {
      const hwloc_obj_t core = hwloc_get_obj_by_type(topology, HWLOC_OBJ_CORE, static_cast<unsigned>(i));
      std::vector<int> pus;
      for (hwloc_obj_t pu = nullptr;
           (pu = hwloc_get_next_obj_inside_cpuset_by_type(topology, core->cpuset, HWLOC_OBJ_PU, pu));) {
        pus.push_back(static_cast<int>(pu->os_index));
      }
      if (!pus.empty()) machine.cores.push_back(std::move(pus));
    }
    if (machine.cores.empty()) {  // no core level (some VMs): each PU is a core
      const int pus = hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_PU);
      for (int i = 0; i < pus; ++i) {
        machine.cores.push_back(
            {static_cast<int>(hwloc_get_obj_by_type(topology, HWLOC_OBJ_PU, static_cast<unsigned>(i))->os_index)});
      }
    }
    machine.memory_mb = static_cast<int64_t>(hwloc_get_root_obj(topology)->total_memory >> 20);
    hwloc_topology_destroy(topology);
  }
  if (machine.cores.empty()) {
    const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    for (int i = 0; i < std::max(1L, cpus); ++i) machine.cores.push_back({i});
  }
  if (machine.memory_mb == 0) {
    machine.memory_mb = static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGESIZE) >> 20;
  }
  machine.gpus = DetectGpus(&machine.gpu_note);
  return machine;
}

}  // namespace umi
