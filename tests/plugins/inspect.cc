// inspect: reports what the host handed it, for tests of the SDK contract.
//   input.mode: "report" (default), "throw_std", "throw_umi", "progress"
//   output: greeting (from settings), threads, cpu_cores, memory_mb,
//           gpu_ids, instance (per-worker id), uses (tasks on that instance),
//           cpus (the thread's CPU affinity)
#include <umi/plugin.hpp>

#include <sched.h>

#include <atomic>
#include <stdexcept>
#include <vector>

namespace {
std::atomic<int> next_instance{0};
struct PerWorker {
  int id = ++next_instance;
  int uses = 0;
};
}  // namespace

class Inspect : public umi::Plugin {
 public:
  using Instance = PerWorker;

  static umi::PluginInfo Info() {
    umi::PluginInfo info;
    info.name = "inspect";
    info.version = "2.1.0";
    info.requirement = {.cpu_cores = 0.5, .cpu_threads = 2, .memory_mb = 32};
    return info;
  }

  explicit Inspect(const umi::Settings& settings)
      : greeting_(settings.Get<std::string>("greeting", "none")) {}

  void Process(umi::TaskContext& task) override {
    const std::string mode = task.input().Get<std::string>("mode", "report");
    if (mode == "throw_std") throw std::runtime_error("std exception from inspect");
    if (mode == "throw_umi") throw umi::Error("custom_code", "umi error from inspect");
    if (mode == "progress") {
      task.Progress(0.25);
      task.Progress(0.5, "half way");
      task.Progress(1.0);
    }
    PerWorker& worker = task.instance<PerWorker>();
    ++worker.uses;
    const auto ids = task.gpu_ids();
    cpu_set_t affinity;
    CPU_ZERO(&affinity);
    sched_getaffinity(0, sizeof(affinity), &affinity);
    std::vector<int> cpus;
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
      if (CPU_ISSET(cpu, &affinity)) cpus.push_back(cpu);
    }
    task.output()
        .Set("greeting", greeting_)
        .Set("threads", task.threads())
        .Set("cpu_cores", task.cpu_cores())
        .Set("memory_mb", task.memory_mb())
        .Set("gpu_ids", std::vector<int32_t>(ids.begin(), ids.end()))
        .Set("instance", worker.id)
        .Set("uses", worker.uses)
        .Set("cpus", cpus);
  }

 private:
  std::string greeting_;
};

UMI_DECLARE_PLUGIN(Inspect)
