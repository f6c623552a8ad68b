// thread_probe: declares run_inline (plugin API 1.1) and reports the thread
// that ran it: {tid, pid, instance}. The host's event loop is its main
// thread, so tid == pid there; instance counts per-thread plugin instances.
#include <umi/plugin.hpp>

#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>

namespace {
std::atomic<int> instances{0};
struct PerThread {
  int id = ++instances;
};
}  // namespace

class ThreadProbe : public umi::Plugin {
 public:
  using Instance = PerThread;

  static umi::PluginInfo Info() {
    umi::PluginInfo info;
    info.name = "thread_probe";
    info.version = "1.0.0";
    info.requirement = {.cpu_cores = 0.1, .cpu_threads = 1, .memory_mb = 8};
    info.run_inline = true;
    return info;
  }

  void Process(umi::TaskContext& task) override {
    if (task.input().Get<int>("progress", 0) != 0) {
      task.Progress(0.5, "half");
      task.Progress(1.0, "done");
    }
    task.output()
        .Set("tid", static_cast<int64_t>(syscall(SYS_gettid)))
        .Set("pid", static_cast<int64_t>(getpid()))
        .Set("instance", task.instance<PerThread>().id);
  }
};

UMI_DECLARE_PLUGIN(ThreadProbe)
