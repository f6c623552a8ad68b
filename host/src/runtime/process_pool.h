// ProcessPool: runs the tasks of plugins configured with
// `plugins.<name>.isolation: process` in worker processes, so a plugin that
// segfaults, aborts or is killed costs one task (`crashed`), never the host.
//
// A worker is umi-host itself re-executed as `umi-host __worker`
// (plugin_worker.h), holding one end of a socketpair: it loads the plugin's
// library, runs UMI_PluginInitialize with the plugin's settings, then runs
// one task at a time. worker_frames.h is what they say to each other;
// worker_exchange.h is the host's side of one task.
// `processes` workers per plugin start with the host; more start when
// tasks of that plugin run side by side; a worker that died while busy ends
// its task `crashed`; one that died while idle is reaped (ReapDeadIdle, on
// SIGCHLD) and never handed a task. Either is replaced by a fresh one. Workers are in their own process
// group (a terminal's Ctrl-C reaches only the host, which drains) and die
// with the host (PR_SET_PDEATHSIG).
//
// A worker is sandboxed unless its plugin is configured `sandbox: false`
// (sandbox.h): it enters the sandbox before it loads the plugin, with a
// private temp dir ($TMPDIR) the pool removes with it.
//
// The grant is enforced by the OS inside the worker, for each task:
//   - CPU affinity: the granted logical CPUs (with hardware.cpu.pinning);
//   - memory: RLIMIT_AS = the worker's address space before the task plus
//     the granted memory_mb. Past it, allocations fail (malloc returns NULL,
//     new throws std::bad_alloc): the plugin returns an error or dies, and
//     the task ends `error` or `crashed`. Not applied to tasks granted a GPU
//     (the CUDA runtime reserves far more address space than it uses);
//   - time: once the host cancels a task (timeout_ms, cancel, drain) the
//     worker is asked to stop; `kill_grace` later it is SIGKILLed, the task
//     ends, and its resources are freed.
//
// A plugin's setup may take long (a model to load: up to 30 s), so the
// event loop never waits for one: PrestartInBackground hands the starts to
// the pool's own starter thread.
//
// Thread safety: Run, Prestart and PrestartInBackground may be called from
// any thread; a worker serves one Run at a time.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "runtime/plugin_registry.h"
#include "runtime/sandbox.h"
#include "runtime/task_context.h"
#include "runtime/worker_exchange.h"

namespace umi {

struct IsolatedOutcome {
  OwnedError error;      // null on success
  bool crashed = false;  // the worker died (error says how)
  bool killed = false;   // SIGKILLed after the grace period
};

// How a plugin's workers start: the same for all of them until a restart.
struct WorkerSpec {
  std::string settings;                  // the plugin's settings, a msgpack map
  std::optional<SandboxPolicy> sandbox;  // none: `sandbox: false`
  std::string refusal;                   // non-empty: why no worker may start (a required sandbox turned off)
};

class ProcessPool {
 public:
  // `binary`: the umi-host executable to re-execute as a worker.
  ProcessPool(std::filesystem::path binary, std::chrono::milliseconds kill_grace);
  ~ProcessPool();  // SIGKILLs and reaps every worker
  ProcessPool(const ProcessPool&) = delete;
  ProcessPool& operator=(const ProcessPool&) = delete;

  // Starts `count` idle workers for `plugin`; kUnavailable with why when one
  // cannot be started.
  Status Prestart(const LoadedPlugin& plugin, const WorkerSpec& spec, int count);
  // The same on the starter thread, returning at once; a worker that cannot
  // start is logged (the plugin's tasks try to start one again).
  void PrestartInBackground(const LoadedPlugin& plugin, const WorkerSpec& spec, int count);
  // Runs the task in one of the plugin's workers and blocks until it ends.
  IsolatedOutcome Run(const LoadedPlugin& plugin, const WorkerSpec& spec, UMI_Context& context,
                      const Allocation& allocation);

  // Idle workers of `plugin`, and those PrestartInBackground is starting.
  size_t idle_or_starting_workers(const std::string& plugin) const;
  // Per plugin: worker processes alive now, and ever ended unasked (died,
  // killed after a cancel, or dropped for breaking the protocol); a rising
  // count of ended ones is a crash loop.
  struct WorkerCounts {
    int64_t live = 0;
    uint64_t ended = 0;
    uint64_t late_frames = 0;  // results and progress of an earlier task, dropped
    uint64_t sandbox_kills = 0;  // workers the sandbox stopped (a denied call, a file too big)
  };
  std::map<std::string, WorkerCounts> worker_counts() const;
  // Grows whenever worker_counts() changes: a cheap check for the loop.
  uint64_t counts_generation() const { return counts_generation_.load(std::memory_order_relaxed); }
  // Reaps idle workers that died (the OOM killer, an operator's kill) and
  // returns how many; the host calls it on SIGCHLD, then starts new ones.
  size_t ReapDeadIdle();

  // For a caller that runs the exchange itself (Executor, on the event
  // loop): an idle worker of `plugin` that is still alive, or none (pid < 0),
  // and, once the exchange ends, what becomes of the worker (idle again,
  // or reaped and counted) and of the task.
  struct Worker {
    pid_t pid = -1;
    int fd = -1;
    std::string temp_dir;  // its private $TMPDIR, removed with it
  };
  Worker TakeIdle(const std::string& plugin);
  IsolatedOutcome Settle(const LoadedPlugin& plugin, const WorkerSpec& spec, Worker worker, ExchangeEnd end);
  // Kills and reaps a worker taken with TakeIdle (the host is stopping).
  void Discard(const std::string& plugin, Worker worker);
  void CountLateFrame(const std::string& plugin);
  std::chrono::milliseconds kill_grace() const { return kill_grace_; }

 private:
  struct PendingStart {
    LoadedPlugin plugin;  // a copy: a reload may drop the registry's
    WorkerSpec spec;
  };
  // Starts a worker and waits for its setup (at most kStartTimeout, or
  // until `stop` is requested).
  Worker Spawn(const LoadedPlugin& plugin, const WorkerSpec& spec, std::string* why,
               std::stop_token stop = {});
  // Spawn's steps: start the process (temp dir, socketpair, argv, the
  // sandbox's ruleset and filter), then send its settings and wait for
  // kReady (the plugin's setup log lines passed on); an error says why, with
  // the worker reaped.
  StatusOr<Worker> Launch(const LoadedPlugin& plugin, const WorkerSpec& spec);
  Status AwaitReady(Worker& worker, const LoadedPlugin& plugin, const WorkerSpec& spec, std::stop_token stop);
  void StartPending(std::stop_token stop);  // the starter thread
  // One try on one worker; `started` says whether the worker began the task.
  IsolatedOutcome RunOnce(const LoadedPlugin& plugin, const WorkerSpec& spec, UMI_Context& context,
                          const std::string& task, bool& started);
  // Returns the worker's wait status (0 if it had none).
  static int Reap(Worker& worker, bool kill_first);
  // True (and the worker reaped and cleared) when an idle worker is gone.
  static bool ReapIfDead(Worker& worker);
  void CountStarted(const std::string& plugin);
  void CountEnded(const std::string& plugin, bool by_sandbox = false);

  const std::filesystem::path binary_;
  const std::chrono::milliseconds kill_grace_;
  mutable std::mutex mutex_;
  std::map<std::string, std::vector<Worker>> idle_;  // plugin -> idle workers
  std::map<std::string, WorkerCounts> counts_;
  std::atomic<uint64_t> counts_generation_{0};
  std::deque<PendingStart> pending_starts_;  // guarded by mutex_
  std::map<std::string, size_t> starting_;     // plugin -> pending or in Spawn; guarded by mutex_
  std::condition_variable_any start_wanted_;
  std::jthread starter_;  // started by the first PrestartInBackground
};

}  // namespace umi
