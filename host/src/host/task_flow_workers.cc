// TaskFlow's worker processes (task_flow.h): which plugins run in them,
// how their workers start, and keeping their number up.
#include <spdlog/spdlog.h>

#include "host/task_flow.h"

namespace umi {

const PluginConfig* TaskFlow::IsolatedConfig(const LoadedPlugin& plugin) const {
  static const PluginConfig kWorkerDefaults = [] {
    PluginConfig defaults;
    defaults.settings_msgpack = std::string("\x80", 1);  // an empty map
    defaults.isolate_process = true;
    return defaults;
  }();
  // Python plugins, and plugins that require their sandbox, always run in worker processes.
  const bool always = plugin.python || plugin.sandbox_needs.required;
  const auto found = config().plugins.find(plugin.name);
  if (found != config().plugins.end() && (found->second.isolate_process || always)) return &found->second;
  return always ? &kWorkerDefaults : nullptr;
}

std::shared_ptr<const WorkerSpec> TaskFlow::IsolatedSpec(const LoadedPlugin& plugin) {
  const PluginConfig* isolated = IsolatedConfig(plugin);
  if (!isolated) return nullptr;
  std::shared_ptr<const WorkerSpec>& spec = worker_specs_[plugin.path.string()];
  if (!spec) {
    WorkerSpec made{isolated->settings_msgpack, MakeSandboxPolicy(isolated->sandbox, isolated->settings_msgpack, plugin), ""};
    if (!made.sandbox && plugin.sandbox_needs.required) {
      made.refusal = plugin.name + " runs only in its sandbox (it declares so), and plugins." + plugin.name +
                     ".sandbox is false";
    }
    spec = std::make_shared<const WorkerSpec>(std::move(made));
  }
  return spec;
}

void TaskFlow::PrestartWorkers(WorkerStart start) {
  ProcessPool& processes = executor_.processes();
  for (const auto& [name, plugin] : plugins_.plugins()) {
    const std::shared_ptr<const WorkerSpec> spec = IsolatedSpec(*plugin);
    if (!spec) continue;
    const int missing = IsolatedConfig(*plugin)->processes - static_cast<int>(processes.idle_or_starting_workers(name));
    if (missing <= 0) continue;
    if (start == WorkerStart::kInBackground) {
      processes.PrestartInBackground(*plugin, *spec, missing);
    } else if (Status started = processes.Prestart(*plugin, *spec, missing); !started.ok()) {
      spdlog::error("plugin {}: {}; its tasks will try to start a worker again", name, started.message());
    }
  }
}

size_t TaskFlow::ReplaceDeadWorkers(bool restart) {
  const size_t dead = executor_.processes().ReapDeadIdle();
  if (dead > 0) {
    spdlog::warn("{} idle worker process(es) died{}", dead, restart ? "; starting replacements" : "");
    if (restart) PrestartWorkers(WorkerStart::kInBackground);
  }
  return dead;
}

}  // namespace umi
