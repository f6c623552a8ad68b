// Executor: runs a granted task and tells the loop how it ended.
//
// A task runs on a worker thread (WorkerPool), pinned to its granted CPUs
// and bound to its first granted GPU, or, for plugins with `isolation:
// process`, in a worker process (ProcessPool) that pins and limits itself.
// Either way one Finished message per task, and any Progress, arrive in the
// mailbox (or, for an isolated task the loop exchanges with an idle worker
// itself, worker_exchanges.h, from TakeAll directly): a queue plus an eventfd (fd()) the loop polls beside its sockets.
// Finished is posted once the worker thread is idle again, so the next task
// can reuse it (and its per-thread plugin instance state). A plugin that
// declares run_inline (short, never blocking) runs on the loop's thread
// instead (RunInline), which gets its Finished back: no thread switch, no mail.
//
// Thread safety: Run, TakeAll and processes() from the loop's thread; the
// mailbox is posted to from worker threads and the plugin's own threads.
#pragma once

#include <sched.h>

#include <chrono>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <variant>

#include "runtime/plugin_registry.h"
#include "runtime/process_pool.h"
#include "scheduling/resource_pool.h"
#include "runtime/task_context.h"
#include "runtime/worker_exchanges.h"
#include "runtime/worker_pool.h"

namespace umi {

// A run that ended.
struct Finished {
  uint64_t key = 0;
  OwnedError error;  // null on success
  double started_at = 0, finished_at = 0, run_ms = 0;
  bool crashed = false;  // its worker process died
  bool killed = false;   // its worker process was SIGKILLed after the grace
};
struct Progress {
  uint64_t key = 0;
  double fraction = 0;
  std::string message;
};
using Mail = std::variant<Finished, Progress>;

class Mailbox {
 public:
  Mailbox();
  ~Mailbox();
  Mailbox(const Mailbox&) = delete;
  Mailbox& operator=(const Mailbox&) = delete;
  int fd() const { return fd_; }
  void Post(Mail mail);
  // Reads the eventfd before taking the mail: a Post that lands in between
  // finds the queue empty and writes again, so no wake-up is lost.
  std::deque<Mail> TakeAll();

 private:
  int fd_;
  std::mutex mutex_;
  std::deque<Mail> mail_;
};

class Executor {
 public:
  // `self_binary`: umi-host, re-executed for worker processes; `kill_grace`:
  // how long a cancelled worker process may run on before SIGKILL.
  Executor(std::filesystem::path self_binary, std::chrono::milliseconds kill_grace);

  // Readable when mail is waiting.
  int fd() const { return mailbox_.fd(); }
  // Readable when a worker process of an exchange on the loop wrote
  // (worker_exchanges.h); then TakeAll as for mail.
  int exchange_fd() const { return exchanges_.fd(); }
  // When TakeAll must run even if neither fd is readable (a cancel to send
  // to a worker, a grace that ends); none: no need.
  std::optional<std::chrono::milliseconds> due_in() const { return exchanges_.due_in(); }
  // The mail, and the tasks that ended on the loop's exchanges.
  std::deque<Mail> TakeAll();

  // Whether a task of `plugin` on `allocation` runs on the caller's thread:
  // the plugin declares run_inline, and the task needs no worker process
  // (`isolated`), no pinned CPUs and no GPU bound to its thread.
  static bool RunsInline(const LoadedPlugin& plugin, bool isolated, const Allocation& allocation) {
    return plugin.run_inline && !isolated && allocation.cpu_ids.empty() && allocation.gpu_ids.empty();
  }

  // Starts the task; its Finished comes from TakeAll. `isolated`: how the
  // plugin's worker processes start, when it runs in them (on an idle one
  // the loop exchanges with itself, else from a thread); null: on a thread.
  void Run(uint64_t key, std::shared_ptr<UMI_Context> context, const LoadedPlugin& plugin,
           const Allocation& allocation, std::shared_ptr<const WorkerSpec> isolated);
  // Runs a task that RunsInline to its end on the caller's thread: no mail,
  // no wake-up. Its progress reports go to the context's on_progress as made.
  Finished RunInline(uint64_t key, UMI_Context& context, const LoadedPlugin& plugin);
  // A context's progress callback for the task `key`.
  std::function<void(double, std::string_view)> ProgressReporter(uint64_t key);

  ProcessPool& processes() { return processes_; }
  const ProcessPool& processes() const { return processes_; }

  // An inline task that takes longer is logged, once per plugin.
  static constexpr double kInlineOverrunMs = 1.0;

 private:
  void RunOnThread(uint64_t key, std::shared_ptr<UMI_Context> context, const LoadedPlugin& plugin,
                   const Allocation& allocation, std::shared_ptr<const WorkerSpec> isolated);

  Mailbox mailbox_;
  cpu_set_t process_cpus_;  // restored on worker threads after a pinned task
  ProcessPool processes_;
  WorkerExchanges exchanges_;  // after processes_: its workers go back there
  std::set<std::string> warned_overrun_;  // plugins whose inline overrun was logged
  InstanceStates inline_instances_;       // the loop thread's, for inline tasks
  // Declared last: destroyed first, so its threads finish before the
  // mailbox and the process pool they use go away.
  WorkerPool workers_;
};

}  // namespace umi
