#include "cli/plugin_report.h"

#include <algorithm>
#include <sstream>

#include "runtime/sandbox.h"

namespace umi {

nlohmann::json RequirementJson(const ResourceRequirement& r) {
  return {{"cpu_cores", r.cpu_cores.ToDouble()}, {"cpu_threads", r.cpu_threads},
          {"gpu_count", r.gpu_count.ToDouble()}, {"memory_mb", r.memory_mb},
          {"exclusive_gpu", r.exclusive_gpu}};
}

namespace {

nlohmann::json SandboxJson(const LoadedPlugin& plugin, const HardwareConfig& config) {
  const auto entry = config.plugins.find(plugin.name);
  const PluginConfig plugin_config = entry == config.plugins.end() ? PluginConfig{} : entry->second;
  if (!plugin_config.isolate_process && !plugin.python && !plugin.sandbox_needs.required) {
    return {{"isolation", "thread"}, {"sandbox", nullptr}};
  }
  const std::optional<SandboxPolicy> policy =
      MakeSandboxPolicy(plugin_config.sandbox, plugin_config.settings_msgpack, plugin);
  if (!policy) return {{"isolation", "process"}, {"sandbox", {{"enabled", false}}}};
  auto strings = [](const std::vector<std::filesystem::path>& paths) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& path : paths) list.push_back(path.string());
    return list;
  };
  return {{"isolation", "process"},
          {"sandbox",
           {{"enabled", true},
            {"required", policy->required},
            {"read", strings(policy->read)},
            {"write", strings(policy->write)},
            {"devices", strings(policy->devices)},
            {"exec", policy->exec},
            {"network", policy->network},
            {"max_file_mb", policy->max_file_bytes >> 20},
            {"lacking", MissingMechanisms(*policy, SandboxSupport::Get())}}}};
}

}  // namespace

nlohmann::json PluginsJson(const PluginRegistry& registry, const HardwareConfig& config) {
  nlohmann::json plugins = nlohmann::json::array();
  for (const auto& [name, p] : registry.plugins()) {
    nlohmann::json settings = nlohmann::json::array();
    for (const LoadedPlugin::Setting& setting : p->settings) {
      settings.push_back({{"name", setting.name}, {"type", setting.type}, {"description", setting.description}});
    }
    nlohmann::json plugin = {{"name", p->name},
                       {"version", p->version},
                       {"description", p->description},
                       {"license", p->license},
                       {"kind", p->kind == UMI_PLUGIN_KIND_GPU ? "gpu" : "cpu"},
                       {"task_group", p->task_group},
                       {"allow_concurrent", p->allow_concurrent},
                       {"run_inline", p->run_inline},
                       {"language", p->python ? "python" : "c"},
                       {"settings", settings},
                       {"declared", RequirementJson(p->declared)},
                       {"requirement", RequirementJson(p->requirement)},
                       {"path", p->path.string()}};
    // A symlink loads what it points to, wherever that is: said, not hidden.
    std::error_code error;
    if (std::filesystem::is_symlink(p->path, error)) {
      plugin["resolved_path"] = std::filesystem::canonical(p->path, error).string();
    }
    nlohmann::json needs_read = nlohmann::json::array();
    for (const auto& path : p->sandbox_needs.read) needs_read.push_back(path.string());
    plugin["sandbox_needs"] = {{"exec", p->sandbox_needs.exec},
                               {"network", p->sandbox_needs.network},
                               {"read", needs_read},
                               {"required", p->sandbox_needs.required}};
    plugin.update(SandboxJson(*p, config));
    plugins.push_back(std::move(plugin));
  }
  nlohmann::json refused = nlohmann::json::array();
  for (const RefusedLibrary& r : registry.refused()) {
    refused.push_back({{"path", r.path.string()}, {"reason", r.reason}});
  }
  nlohmann::json mechanisms = nlohmann::json::object();
  for (const auto& [mechanism, offered] : SandboxSupport::Get().Mechanisms()) mechanisms[mechanism] = offered;
  return {{"plugins", plugins}, {"refused", refused}, {"sandbox_mechanisms", mechanisms}};
}

std::string PluginsTable(const PluginRegistry& registry) {
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "VERSION", "KIND", "GROUP", "REQUIREMENT", "PATH"}};
  for (const auto& [name, p] : registry.plugins()) {
    rows.push_back({p->name, p->version, p->kind == UMI_PLUGIN_KIND_GPU ? "gpu" : "cpu",
                    p->task_group.empty() ? "-" : p->task_group, p->requirement.ToString(),
                    p->path.string()});
  }
  std::vector<size_t> widths(rows[0].size(), 0);
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::ostringstream out;
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) {
      out << row[i];
      if (i + 1 < row.size()) out << std::string(widths[i] - row[i].size() + 2, ' ');
    }
    out << '\n';
  }
  if (!registry.refused().empty()) {
    out << "\nrefused:\n";
    for (const RefusedLibrary& r : registry.refused()) out << "  " << r.path.string() << ": " << r.reason << '\n';
  }
  return out.str();
}

}  // namespace umi
