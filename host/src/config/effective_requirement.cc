#include "config/effective_requirement.h"

namespace umi {
namespace {

void Apply(const RequirementOverride& o, const std::string& source, EffectiveRequirement& out) {
  o.ApplyTo(out.requirement);
  if (o.cpu_cores) out.sources["cpu_cores"] = source;
  if (o.cpu_threads) out.sources["cpu_threads"] = source;
  if (o.gpu_count) out.sources["gpu_count"] = source;
  if (o.memory_mb) out.sources["memory_mb"] = source;
  if (o.exclusive_gpu) out.sources["exclusive_gpu"] = source;
}

}  // namespace

EffectiveRequirement ResolveRequirement(const HardwareConfig& config, const std::string& plugin,
                                        const ResourceRequirement& declared,
                                        const std::string& declared_group) {
  EffectiveRequirement out;
  out.requirement = declared;
  for (const char* field : {"cpu_cores", "cpu_threads", "gpu_count", "memory_mb", "exclusive_gpu"}) {
    out.sources[field] = "declared";
  }
  out.task_group = declared_group;
  const auto yaml = config.plugins.find(plugin);
  if (yaml != config.plugins.end() && yaml->second.task_group) out.task_group = *yaml->second.task_group;

  if (const auto group = config.task_groups.find(out.task_group); group != config.task_groups.end()) {
    Apply(group->second.resources, "task_groups." + out.task_group, out);
  } else if (!out.task_group.empty()) {
    out.warning = "plugin " + plugin + " declares task group '" + out.task_group +
                  "', which the config does not define; using no group";
    out.task_group.clear();
  }
  if (yaml != config.plugins.end()) Apply(yaml->second.resources, "plugins." + plugin, out);
  return out;
}

}  // namespace umi
