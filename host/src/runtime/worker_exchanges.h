// WorkerExchanges: isolated tasks the event loop runs on worker processes
// itself, without a thread in between. Start writes the task frame to an
// idle worker's socket; the loop polls fd() (an epoll set of the sockets
// of the exchanges under way) and calls Pump, which reads what the workers
// wrote (worker_exchange.h's TakeFrame: the same steps as the blocking
// ExchangeTask), sends a cancelled task's cancel frame and gives up on it
// `kill_grace` later. due_in says when Pump must run without a frame.
//
// Only the common case runs here: a worker of the plugin is idle and the
// task frame is small (at most kMaxLoopFrameBytes, so writing it never
// blocks the loop). Otherwise Start returns false and the Executor runs the
// task on a thread (ProcessPool::Run), which may have to start a worker.
//
// Why: a task on a thread crossed four thread wake-ups in the host (the
// thread, its frames, the mailbox); here the loop writes and reads, and one
// wake-up serves every worker that answered meanwhile.
//
// Thread safety: none; the event loop's thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "runtime/plugin_registry.h"
#include "runtime/process_pool.h"
#include "runtime/task_context.h"
#include "runtime/worker_exchange.h"
#include "scheduling/resource_pool.h"

namespace umi {

class WorkerExchanges {
 public:
  // A task frame past this goes the thread way: a socketpair's buffer
  // (about 200 KiB) takes it at once, so the loop never waits to write it.
  static constexpr size_t kMaxLoopFrameBytes = 64 * 1024;

  struct Ended {
    uint64_t key = 0;
    std::shared_ptr<UMI_Context> context;
    const LoadedPlugin* plugin = nullptr;
    std::shared_ptr<const WorkerSpec> spec;
    Allocation allocation;
    IsolatedOutcome outcome;
    bool started = false;  // the worker began the task (false: it may run elsewhere)
    double started_at = 0, finished_at = 0, run_ms = 0;
  };

  explicit WorkerExchanges(ProcessPool& processes);
  ~WorkerExchanges();  // kills the workers of exchanges still under way
  WorkerExchanges(const WorkerExchanges&) = delete;
  WorkerExchanges& operator=(const WorkerExchanges&) = delete;

  int fd() const { return epoll_fd_; }
  // Hands the task to an idle worker of its plugin; false when there is
  // none, the frame is too big, or the worker had died (nothing started).
  bool Start(uint64_t key, const std::shared_ptr<UMI_Context>& context, const LoadedPlugin& plugin,
             const Allocation& allocation, const std::shared_ptr<const WorkerSpec>& spec);
  // Reads every whole frame the workers wrote, sends cancels, ends what
  // ignored one past its grace; returns the exchanges that ended.
  std::vector<Ended> Pump();
  // When Pump must run even if no worker writes: at once for a cancel not
  // yet sent, at the end of a grace; none: only when fd() is readable.
  std::optional<std::chrono::milliseconds> due_in() const;
  size_t size() const { return exchanges_.size(); }

 private:
  using Clock = std::chrono::steady_clock;
  struct Exchange {
    Ended task;
    ProcessPool::Worker worker;
    ExchangeSettings settings;
    ExchangeEnd end;
    std::optional<Clock::time_point> kill_at;
    Clock::time_point start;
  };
  Ended End(std::map<int, Exchange>::iterator exchange);

  ProcessPool& processes_;
  int epoll_fd_;
  std::map<int, Exchange> exchanges_;  // by the worker's socket
};

}  // namespace umi
