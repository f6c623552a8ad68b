// ResolveRequirement: a plugin's requirement after the config's overrides,
// and where each field's value came from.
//
// Precedence, later wins: the plugin's declared default < its task group
// (`plugins.<name>.task_group`, else the group the plugin declares, when the
// config defines it) < the fields of `plugins.<name>`. A task's own
// `resources` go on top at run time, when allow_task_overrides is true.
//
// Thread safety: a pure function.
#pragma once

#include <map>
#include <string>

#include "config/hardware_config.h"
#include "common/requirement.h"

namespace umi {

struct EffectiveRequirement {
  ResourceRequirement requirement;
  std::string task_group;  // empty: none
  // Field name (cpu_cores, cpu_threads, gpu_count, memory_mb, exclusive_gpu)
  // -> "declared", "task_groups.<group>" or "plugins.<name>".
  std::map<std::string, std::string> sources;
  std::string warning;  // e.g. a declared group the config does not define
};

EffectiveRequirement ResolveRequirement(const HardwareConfig& config, const std::string& plugin,
                                        const ResourceRequirement& declared,
                                        const std::string& declared_group);

}  // namespace umi
