// The host's side of one task on one worker process (process_pool.h): the
// conversation in worker_frames.h from the task frame to the worker's
// answer, and what a worker's end means for the person reading a result.
//
// ExchangeTask sends the task, relays the worker's log lines and progress,
// asks the worker to stop once the task is cancelled and gives up on it
// `kill_grace` later, drops frames of earlier tasks (something the plugin
// left running), and reads the answer. It never kills, waits for or reuses
// the worker: the pool does, from how the exchange ended.
//
// Thread safety: ExchangeTask blocks its caller for the task's run; one
// exchange at a time per worker. The other functions are pure.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>

#include "runtime/sandbox.h"
#include "runtime/worker_frames.h"
#include "scheduling/resource_pool.h"
#include "runtime/task_context.h"

namespace umi {

struct ExchangeEnd {
  enum class How {
    kAnswered,    // the worker answered; it may take the next task
    kWorkerGone,  // its socket closed: the worker died (the pool reaps it and says how)
    kCancelIgnored,  // cancelled, and still running after the grace: to be killed
    kBadFrame,    // it broke the frame protocol: to be killed, never trusted again
  };
  How how = How::kAnswered;
  bool started = false;  // the worker began the task (or was told to stop it): no second try elsewhere
  OwnedError error;      // the plugin's error (kAnswered), or what broke (kBadFrame); null: success
  std::string denied;    // the system call the sandbox stopped, when the worker said so before it died
};

struct ExchangeSettings {
  int fd = -1;          // the host's end of the worker's socketpair
  pid_t pid = -1;       // the worker's, for kCancelSignal
  std::string plugin;   // for log lines
  std::chrono::milliseconds kill_grace{0};
  std::function<void()> late_frame;  // called for each dropped frame of an earlier task
};

// Asks the worker to stop the task: a kCancel frame, then kCancelSignal.
void SendCancel(const ExchangeSettings& settings, const std::string& task_id);

// The kTask payload of `context`'s task on `allocation`.
std::string TaskFrame(const UMI_Context& context, const Allocation& allocation);

// Runs `task_frame` (a kTask payload) for `context` on the worker; the
// output of a successful run lands in context.output_msgpack. Blocks.
ExchangeEnd ExchangeTask(const ExchangeSettings& settings, UMI_Context& context, const std::string& task_frame);

// One frame the worker sent during the exchange, taken into `end`; true
// when the exchange has ended (end.how says how). The same steps as
// ExchangeTask, for a caller that polls the worker's socket itself
// (Executor's exchanges on the event loop).
bool TakeFrame(const ExchangeSettings& settings, UMI_Context& context, FrameType type, const std::string& payload,
               ExchangeEnd& end);

// A worker's log frame, logged as its plugin's line for `task` (or for the
// task the line itself names).
void LogWorkerLine(const std::string& plugin, const std::string& task, const std::string& payload);

// How a worker ended, for a result: its wait status, and `denied` (the
// system call its sandbox stopped, if it said). `sandbox`: its policy, if
// it ran in one (a SIGSYS or SIGXFSZ is then the sandbox's doing).
std::string DescribeExit(int status, const std::string& denied = {}, const SandboxPolicy* sandbox = nullptr);

// Whether the sandbox ended a worker that ran under `sandbox` (null: none).
bool StoppedBySandbox(int status, const std::string& denied, const SandboxPolicy* sandbox);

}  // namespace umi
