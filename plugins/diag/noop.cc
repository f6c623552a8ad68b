// noop: returns an empty output at once. Measures the host's own overhead.
#include <umi/plugin.hpp>

class Noop : public umi::Plugin {
 public:
  static umi::PluginInfo Info() {
    umi::PluginInfo info;
    info.name = "noop";
    info.version = "1.0.0";
    info.description = "Does nothing and succeeds";
    info.license = "MIT";
    info.requirement = {.cpu_cores = 0.1, .cpu_threads = 1, .memory_mb = 16};
    info.run_inline = true;  // returns at once: no worker thread needed
    return info;
  }
  void Process(umi::TaskContext&) override {}
};

UMI_DECLARE_PLUGIN(Noop)
