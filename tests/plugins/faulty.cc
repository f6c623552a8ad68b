// faulty: misbehaves on request, for the fault-injection tests.
//   input.mode: "ok" (default), "throw", "segv", "abort", "exit",
//               "hang" (ignores cancellation), "leak" (allocates and touches
//               input.mb MiB, never frees), "pid" (reports its process id),
//               "wait" (returns when cancelled), "bad_utf8" (outputs
//               {"text": "ok \xff\xfe"}, not valid UTF-8), "flaky" (each run
//               appends a byte to the file input.runs_file; the first
//               input.fail_times runs fail: input.how "error" (code
//               input.code, default "busy") or "segv"; then it outputs
//               {runs: N}), "echo" (outputs {input: its input}, after
//               input.sleep_ms if given; with input.fail "yes", then fails
//               with code asked_to_fail)
//               "sigurgs" (outputs {sigurgs: N}, the SIGURGs its own
//               handler saw)
//   settings.hold_setup_while: a path; setup (in a worker process) waits
//               while that file exists, as a slow model load would
//   settings.count_sigurg: "yes": setup installs a SIGURG handler that
//               counts, as a Go runtime installs one for its own use
#include <umi/plugin.hpp>

#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <thread>
#include <vector>

class Faulty : public umi::Plugin {
 public:
  static umi::PluginInfo Info() {
    umi::PluginInfo info;
    info.name = "faulty";
    info.version = "1.0.0";
    info.description = "Throws, crashes, hangs or leaks on request";
    info.requirement = {.cpu_cores = 0.5, .cpu_threads = 1, .memory_mb = 64};
    info.settings = {{"hold_setup_while", "string", "setup waits while this file exists"},
                     {"count_sigurg", "string", "yes: setup installs a SIGURG handler that counts"}};
    return info;
  }

  static inline volatile std::sig_atomic_t sigurgs = 0;

  explicit Faulty(const umi::Settings& settings) {
    if (settings.Get<std::string>("count_sigurg", "") == "yes") {
      struct sigaction count {};
      count.sa_handler = [](int) { sigurgs = sigurgs + 1; };
      sigemptyset(&count.sa_mask);
      sigaction(SIGURG, &count, nullptr);
    }
    const std::string hold = settings.Get<std::string>("hold_setup_while", "");
    while (!hold.empty() && std::filesystem::exists(hold)) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }

  void Process(umi::TaskContext& task) override {
    const std::string mode = task.input().Get<std::string>("mode", "ok");
    task.output().Set("pid", static_cast<int64_t>(getpid()));
    if (mode == "throw") throw std::runtime_error("faulty threw as asked");
    if (mode == "segv") std::raise(SIGSEGV);
    if (mode == "abort") std::abort();
    if (mode == "exit") std::_Exit(3);
    if (mode == "hang") {
      while (true) std::this_thread::sleep_for(std::chrono::seconds(1));
    }
    if (mode == "echo") {  // its whole input back: a flow step's upstream shows
      std::this_thread::sleep_for(std::chrono::milliseconds(task.input().Get<int64_t>("sleep_ms", 0)));
      task.output().Set("input", task.input().raw());
      if (task.input().Get<std::string>("fail", "") == "yes") throw umi::Error("asked_to_fail", "failed as asked");
      return;
    }
    if (mode == "flaky") {
      const std::string runs_file = task.input().Get<std::string>("runs_file", "");
      if (FILE* file = std::fopen(runs_file.c_str(), "a")) {
        std::fputc('x', file);
        std::fclose(file);
      }
      const auto runs = static_cast<int64_t>(std::filesystem::file_size(runs_file));
      task.output().Set("runs", runs);
      if (runs > task.input().Get<int64_t>("fail_times", 0)) return;
      if (task.input().Get<std::string>("how", "error") == "segv") std::raise(SIGSEGV);
      throw umi::Error(task.input().Get<std::string>("code", "busy"), "flaky run " + std::to_string(runs));
    }
    if (mode == "bad_utf8") {
      task.output().Set("text", std::string("ok \xff\xfe"));
      return;
    }
    if (mode == "sigurgs") {
      task.output().Set("sigurgs", static_cast<int64_t>(sigurgs));
      return;
    }
    if (mode == "wait") {
      task.output().Set("cancelled", task.WaitCancelled(60000));
      return;
    }
    if (mode == "leak") {
      const int64_t mb = task.input().Get<int64_t>("mb", 1024);
      for (int64_t i = 0; i < mb; ++i) {
        char* block = static_cast<char*>(std::malloc(1 << 20));
        if (!block) throw umi::Error("out_of_memory", "malloc failed after " + std::to_string(i) + " MiB");
        std::memset(block, 1, 1 << 20);
      }
    }
  }
};

UMI_DECLARE_PLUGIN(Faulty)
