#include "cli/config_report.h"

#include <sstream>

#include "runtime/sandbox.h"

namespace umi {
namespace {

std::string Number(double value) { return Quantity::FromDouble(value).ToString(); }

std::string Override(const RequirementOverride& r, const std::optional<int>& max_instances) {
  std::string text;
  auto add = [&text](const std::string& item) { text += (text.empty() ? "" : " ") + item; };
  if (r.cpu_cores) add("cpu_cores=" + Number(*r.cpu_cores));
  if (r.cpu_threads) add("threads=" + std::to_string(*r.cpu_threads));
  if (r.memory_mb) add("memory_mb=" + std::to_string(*r.memory_mb));
  if (r.gpu_count) add("gpu_count=" + Number(*r.gpu_count));
  if (r.exclusive_gpu) add(std::string("exclusive_gpu=") + (*r.exclusive_gpu ? "true" : "false"));
  if (max_instances) add("max_instances=" + std::to_string(*max_instances));
  return text.empty() ? "(no fields)" : text;
}

void ReportPool(const HardwareConfig& c, std::ostream& out) {
  out << "pool:\n";
  out << "  cpu_cores             " << Number(c.hardware.cpu.cores) << "\n";
  out << "  cpu_threads           " << c.hardware.cpu.threads;
  if (c.hardware.cpu.threads_per_core) out << " (threads_per_core " << *c.hardware.cpu.threads_per_core << ")";
  out << "\n";
  out << "  max_concurrent_tasks  " << c.hardware.cpu.max_concurrent_tasks << " (CPU-only tasks; GPU tasks are bounded by devices)\n";
  out << "  memory                " << Number(c.hardware.memory.total_gb) << " GB x overcommit "
      << Number(c.hardware.memory.overcommit_ratio) << " = " << c.memory_capacity_mb() << " MiB\n";
  out << "  gpus                  " << c.hardware.gpus.size() << "\n";
  for (const GpuDevice& gpu : c.hardware.gpus) {
    out << "    [" << gpu.id << "] " << (gpu.model.empty() ? "(model unknown)" : gpu.model) << ", "
        << Number(gpu.memory_gb) << " GB\n";
  }
  out << "  pinning               " << (c.hardware.cpu.pinning ? "on" : "off") << " (allocation.cpu " << ToString(c.allocation.cpu)
      << ", allocation.gpu " << ToString(c.allocation.gpu) << ")\n";
  out << "  task overrides        " << (c.allow_task_overrides ? "allowed" : "refused") << "\n";
}

void ReportOperations(const HardwareConfig& c, std::ostream& out) {
  out << "operations:\n";
  out << "  http                  " << (c.http.enabled ? c.http.listen : "off") << "\n";
  out << "  curve                 "
      << (c.security.curve.secret_key_file.empty() ? "off (plain TCP)"
                                          : "on, key " + c.security.curve.secret_key_file.string() + ", clients " +
                                                c.security.curve.authorized_keys_file.string())
      << "\n";
  out << "task groups:" << (c.task_groups.empty() ? " none\n" : "\n");
  for (const auto& [name, group] : c.task_groups) {
    out << "  " << name << ": " << Override(group.resources, group.max_instances) << "\n";
  }
}

// Its cap on tasks running at once: its own, else its task group's.
void ReportCap(const HardwareConfig& c, const LoadedPlugin& p, std::ostream& out) {
  std::string cap = "unlimited", cap_source = "none set";
  if (const auto config = c.plugins.find(p.name); config != c.plugins.end() && config->second.max_instances) {
    cap = std::to_string(*config->second.max_instances);
    cap_source = "plugins." + p.name;
  } else if (const auto group = c.task_groups.find(p.task_group);
             group != c.task_groups.end() && group->second.max_instances) {
    cap = std::to_string(*group->second.max_instances);
    cap_source = "task_groups." + p.task_group;
  }
  out << "    max_instances = " << cap << "  <- " << cap_source << "\n";
}

void ReportIsolation(const PluginConfig& plugin_config, const LoadedPlugin& p, std::ostream& out) {
  if (!plugin_config.isolate_process && !p.python && !p.sandbox_needs.required) return;
  out << "    isolation = process (" << plugin_config.processes << " worker(s) started ahead)\n";
  const std::optional<SandboxPolicy> sandbox = MakeSandboxPolicy(plugin_config.sandbox, plugin_config.settings_msgpack, p);
  if (!sandbox) {
    out << "    sandbox = off\n";
    return;
  }
  std::string lacking;
  for (const std::string& mechanism : MissingMechanisms(*sandbox, SandboxSupport::Get())) lacking += " " + mechanism;
  out << "    sandbox = on (exec " << (sandbox->exec ? "yes" : "no") << ", network " << (sandbox->network ? "yes" : "no")
      << ", max_file_mb " << (sandbox->max_file_bytes >> 20) << "; this kernel lacks:" << (lacking.empty() ? " nothing" : lacking)
      << ")\n";
}

void ReportPlugins(const HardwareConfig& c, const PluginRegistry& registry, std::ostream& out) {
  out << "plugins:" << (registry.plugins().empty() ? " none loaded\n" : "\n");
  for (const auto& [name, p] : registry.plugins()) {
    const ResourceRequirement& r = p->requirement;
    out << "  " << name << " " << p->version << " (" << (p->kind == UMI_PLUGIN_KIND_GPU ? "gpu" : "cpu")
        << ", group " << (p->task_group.empty() ? "-" : p->task_group) << ")\n";
    const auto& sources = p->requirement_sources;
    auto field = [&out, &sources](const char* key, const std::string& value) {
      out << "    " << key << " = " << value << "  <- " << sources.at(key) << "\n";
    };
    field("cpu_cores", r.cpu_cores.ToString());
    field("cpu_threads", std::to_string(r.cpu_threads));
    field("memory_mb", std::to_string(r.memory_mb));
    field("gpu_count", r.gpu_count.ToString());
    field("exclusive_gpu", r.exclusive_gpu ? "true" : "false");
    ReportCap(c, *p, out);
    const auto config = c.plugins.find(name);
    ReportIsolation(config == c.plugins.end() ? PluginConfig{} : config->second, *p, out);
  }
  // A library that cannot run here (a GPU plugin on a pool without one, a
  // newer API) is listed, and warned of below: the config is still valid.
  for (const RefusedLibrary& refused : registry.refused()) {
    out << "  REFUSED " << refused.path.string() << ": " << refused.reason << "\n";
  }
}

}  // namespace

std::string ConfigReport(const LoadedConfig& loaded, const Machine& machine, const PluginRegistry& registry) {
  const HardwareConfig& c = loaded.config;
  std::ostringstream out;
  out << "config: " << (c.origin == "file" ? c.source.string() : c.origin) << " (" << c.origin
      << (c.hardware_detected ? ", hardware: detect" : "") << (c.oversubscribe ? ", oversubscribe" : "") << ")\n";
  ReportPool(c, out);
  ReportOperations(c, out);
  ReportPlugins(c, registry, out);
  out << "machine: " << machine.cores.size() << " physical cores, " << machine.logical_cpus()
      << " logical CPUs (" << machine.threads_per_core() << " per core), " << machine.memory_mb << " MiB, "
      << machine.gpus.size() << " GPU(s)" << (machine.gpu_note.empty() ? "" : " (" + machine.gpu_note + ")")
      << "\n";
  for (const std::string& error : loaded.errors) out << "ERROR: " << error << "\n";
  for (const std::string& warning : loaded.warnings) out << "warning: " << warning << "\n";
  for (const std::string& unmatched : registry.ConfigWarnings()) out << "warning: " << unmatched << "\n";
  for (const RefusedLibrary& refused : registry.refused()) {
    out << "warning: " << refused.path.filename().string() << " will not load here: " << refused.reason << "\n";
  }
  return out.str();
}

}  // namespace umi
