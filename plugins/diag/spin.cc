// spin: burns CPU for {"ms": N} milliseconds on every thread it was granted
// and reports how many threads spun. Stops early when cancelled.
#include <umi/plugin.hpp>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

class Spin : public umi::Plugin {
 public:
  static umi::PluginInfo Info() {
    umi::PluginInfo info;
    info.name = "spin";
    info.version = "1.0.0";
    info.description = "Busy-loops on each granted thread for input.ms milliseconds";
    info.license = "MIT";
    info.requirement = {.cpu_cores = 1.0, .cpu_threads = 1, .memory_mb = 16};
    return info;
  }

  void Process(umi::TaskContext& task) override {
    const int64_t ms = task.input().Require<int64_t>("ms");
    if (ms < 0) throw umi::Error("bad_input", "'ms' must be >= 0");
    const int threads = std::max(task.threads(), 1);
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    std::atomic<uint64_t> iterations{0};
    auto burn = [&] {
      uint64_t local = 0;
      while (std::chrono::steady_clock::now() < until && !task.cancelled()) ++local;
      iterations += local;
    };
    std::vector<std::jthread> helpers;
    for (int i = 1; i < threads; ++i) helpers.emplace_back(burn);
    burn();
    helpers.clear();
    task.output().Set("threads", threads).Set("iterations", iterations.load());
  }
};

UMI_DECLARE_PLUGIN(Spin)
