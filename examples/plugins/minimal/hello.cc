// hello: {"name": "..."} -> {"greeting": "hello, ..."}
#include <umi/plugin.hpp>

class Hello : public umi::Plugin {
 public:
  static umi::PluginInfo Info() {
    umi::PluginInfo info;
    info.name = "hello";
    info.version = "1.0.0";
    info.description = "Greets input.name";
    info.requirement = {.cpu_cores = 0.1, .cpu_threads = 1, .memory_mb = 16};
    return info;
  }

  void Process(umi::TaskContext& task) override {
    task.output().Set("greeting", "hello, " + task.input().Get<std::string>("name", "world"));
  }
};

UMI_DECLARE_PLUGIN(Hello)
