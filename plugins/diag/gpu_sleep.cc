// gpu_sleep: stands in for GPU work. Declares one exclusive GPU, touches
// none, and waits {"ms": N} milliseconds (cancellable).
#include <umi/plugin.hpp>

#include <vector>

class GpuSleep : public umi::Plugin {
 public:
  static umi::PluginInfo Info() {
    umi::PluginInfo info;
    info.name = "gpu_sleep";
    info.version = "1.0.0";
    info.description = "Simulates GPU work: holds a GPU for input.ms milliseconds";
    info.license = "MIT";
    info.kind = umi::Kind::kGpu;
    info.requirement = {.cpu_cores = 1.0, .cpu_threads = 2, .gpu_count = 1, .memory_mb = 2048,
                        .exclusive_gpu = true};
    return info;
  }

  void Process(umi::TaskContext& task) override {
    const int64_t ms = task.input().Require<int64_t>("ms");
    if (ms < 0) throw umi::Error("bad_input", "'ms' must be >= 0");
    const bool cancelled = task.WaitCancelled(ms);
    const auto ids = task.gpu_ids();
    task.output()
        .Set("gpu_ids", std::vector<int32_t>(ids.begin(), ids.end()))
        .Set("cancelled", cancelled);
  }
};

UMI_DECLARE_PLUGIN(GpuSleep)
