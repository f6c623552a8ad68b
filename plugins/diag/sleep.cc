// sleep: waits {"ms": N} milliseconds, waking early when cancelled.
#include <umi/plugin.hpp>

#include <chrono>

class Sleep : public umi::Plugin {
 public:
  static umi::PluginInfo Info() {
    umi::PluginInfo info;
    info.name = "sleep";
    info.version = "1.0.0";
    info.description = "Sleeps for input.ms milliseconds (cancellable)";
    info.license = "MIT";
    info.requirement = {.cpu_cores = 1.0, .cpu_threads = 1, .memory_mb = 64};
    return info;
  }

  void Process(umi::TaskContext& task) override {
    const int64_t ms = task.input().Require<int64_t>("ms");
    if (ms < 0) throw umi::Error("bad_input", "'ms' must be >= 0");
    const auto start = std::chrono::steady_clock::now();
    const bool cancelled = task.WaitCancelled(ms);
    const double slept =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    task.output().Set("slept_ms", slept).Set("cancelled", cancelled).Set("threads", task.threads());
  }
};

UMI_DECLARE_PLUGIN(Sleep)
