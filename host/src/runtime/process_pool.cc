#include "runtime/process_pool.h"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <msgpack.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <stdexcept>
#include <thread>

#include "common/log_format.h"
#include "runtime/python_plugin.h"
#include "scheduling/task.h"
#include "runtime/worker_exchange.h"
#include "runtime/worker_frames.h"
#include "runtime/worker_launch.h"

extern char** environ;

namespace umi {
namespace {

using Clock = std::chrono::steady_clock;

constexpr auto kStartTimeout = std::chrono::seconds(30);
// Workers tried for a task whose worker died before it started.
constexpr int kStartAttempts = 3;

const SandboxPolicy* SandboxOf(const WorkerSpec& spec) { return spec.sandbox ? &*spec.sandbox : nullptr; }

void RemoveTempDir(const std::string& dir) {
  if (dir.empty()) return;
  std::error_code error;
  std::filesystem::remove_all(dir, error);
}

}  // namespace

ProcessPool::ProcessPool(std::filesystem::path binary, std::chrono::milliseconds kill_grace)
    : binary_(std::move(binary)), kill_grace_(kill_grace) {}

ProcessPool::~ProcessPool() {
  if (starter_.joinable()) {  // a setup under way is abandoned, its worker killed below
    starter_.request_stop();
    starter_.join();
  }
  std::lock_guard lock(mutex_);
  for (auto& [plugin, workers] : idle_) {
    for (Worker& worker : workers) Reap(worker, /*kill_first=*/true);
  }
}

int ProcessPool::Reap(Worker& worker, bool kill_first) {
  int status = 0;
  if (worker.pid > 0) {
    if (kill_first) kill(-worker.pid, SIGKILL);  // the worker's process group: what its plugin started too
    while (waitpid(worker.pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (worker.fd >= 0) close(worker.fd);
  RemoveTempDir(worker.temp_dir);
  worker = Worker{};
  return status;
}

ProcessPool::Worker ProcessPool::Spawn(const LoadedPlugin& plugin, const WorkerSpec& spec, std::string* why,
                                       std::stop_token stop) {
  if (!spec.refusal.empty()) {
    *why = spec.refusal;
    return {};
  }
  if (spec.sandbox && spec.sandbox->required) {
    if (const auto missing = MissingMechanisms(*spec.sandbox, SandboxSupport::Get()); !missing.empty()) {
      std::string names;
      for (const std::string& name : missing) names += (names.empty() ? "" : ", ") + name;
      *why = "its sandbox is required (sandbox.required) and this kernel lacks " + names;
      return {};
    }
  }
  StatusOr<Worker> launched = Launch(plugin, spec);
  if (!launched.ok()) {
    *why = launched.error();
    return {};
  }
  Worker worker = std::move(launched).value();
  if (Status ready = AwaitReady(worker, plugin, spec, stop); !ready.ok()) {
    *why = ready.message();
    return {};
  }
  CountStarted(plugin.name);
  return worker;
}

StatusOr<ProcessPool::Worker> ProcessPool::Launch(const LoadedPlugin& plugin, const WorkerSpec& spec) {
  std::optional<SandboxPolicy> sandbox = spec.sandbox;
  Worker worker;
  const auto refused = [](std::string reason) { return Status(ErrorCode::kUnavailable, std::move(reason)); };
  if (sandbox) {  // a private temp dir: the one place it may write besides its output root
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/umi-worker-XXXXXX";
    if (!mkdtemp(pattern.data())) {
      return refused("cannot make the worker's temp dir " + pattern + ": " + std::strerror(errno));
    }
    worker.temp_dir = pattern;
    sandbox->write.push_back(pattern);
  }
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    RemoveTempDir(worker.temp_dir);
    return refused(std::string("socketpair: ") + std::strerror(errno));
  }
  WorkerLaunch launch;
  launch.fds.emplace_back(fds[1], 3);
  launch.sandbox = sandbox ? &*sandbox : nullptr;
  int source_fd = -1, ruleset = -1;
  auto close_all = [&] {
    close(fds[1]);
    if (source_fd >= 0) close(source_fd);
    if (ruleset >= 0) close(ruleset);
  };
  auto fail = [&](std::string reason) -> Status {
    close_all();
    close(fds[0]);
    RemoveTempDir(worker.temp_dir);
    return refused(std::move(reason));
  };
  if (plugin.python) {
    launch.argv = PythonWorkerArgv(plugin);
    launch.environment = PythonWorkerEnvironment(plugin);
    source_fd = PythonSourceFd(plugin.python_source);
    if (source_fd < 0) return fail(std::string("memfd_create: ") + std::strerror(errno));
    launch.fds.emplace_back(source_fd, kPythonSourceFd);
  } else {
    launch.argv = {binary_.string(), "__worker", "--fd", "3", "--library", plugin.path.string()};
    for (char** entry = environ; *entry; ++entry) launch.environment.emplace_back(*entry);
  }
  if (sandbox) {
    launch.argv.push_back("--sandbox");
    std::erase_if(launch.environment, [](const std::string& variable) { return variable.rfind("TMPDIR=", 0) == 0; });
    launch.environment.push_back("TMPDIR=" + worker.temp_dir);
    StatusOr<int> made = MakeLandlockRuleset(*sandbox);
    if (!made.ok()) return fail(made.status().message());
    ruleset = made.value();
    if (ruleset >= 0) launch.fds.emplace_back(ruleset, kSandboxRulesetFd);
  }
  StatusOr<LaunchedWorker> launched = LaunchWorker(launch);
  if (!launched.ok()) return fail(launched.status().message());
  close_all();
  worker.pid = launched->pid;
  worker.fd = fds[0];
  if (sandbox) {
    // The filter, sent before anything else: the worker applies it before it
    // loads the plugin. A failed write shows as a worker that never says ready.
    StatusOr<std::string> frame =
        MakeSandboxFrame(*sandbox, ruleset >= 0, launched->own_pid_namespace ? 1 : launched->pid);
    if (!frame.ok()) {
      Reap(worker, /*kill_first=*/true);
      return refused("worker for " + plugin.name + ": " + frame.status().message());
    }
    (void)WriteFrame(worker.fd, kSandbox, frame.value());
  }
  return worker;
}

Status ProcessPool::AwaitReady(Worker& worker, const LoadedPlugin& plugin, const WorkerSpec& spec,
                               std::stop_token stop) {
  FrameType type{};
  std::string payload, denied;
  const auto deadline = Clock::now() + kStartTimeout;
  bool started = WriteFrame(worker.fd, kInit, spec.settings);
  while (started) {  // log lines from the plugin's setup, then kReady
    pollfd ready{worker.fd, POLLIN, 0};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    // In slices, so that a host shutting down need not wait for a long setup.
    const int polled = left > 0 ? poll(&ready, 1, static_cast<int>(std::min<long long>(left, 100))) : -1;
    if (polled == 0 && !stop.stop_requested()) continue;
    started = polled > 0 && ReadFrame(worker.fd, type, payload);
    if (started && type == kDenied) {
      denied = SystemCallName(std::atoi(payload.c_str()));
      continue;
    }
    if (!started || type != kLog) break;
    LogWorkerLine(plugin.name, "setup", payload);
  }
  if (started && type == kReady) return {};
  if (type == kInitFailed) {
    Reap(worker, /*kill_first=*/true);
    return Status(ErrorCode::kUnavailable, "worker for " + plugin.name + ": " + payload);
  }
  // Why it ended, when it did (a crash, or the sandbox, in the plugin's
  // setup); a worker still setting up was given up on.
  int status = 0;
  pid_t ended = 0;
  const bool gave_up = Clock::now() >= deadline || stop.stop_requested();
  if (!gave_up) {
    kill(-worker.pid, SIGKILL);
    while ((ended = waitpid(worker.pid, &status, 0)) < 0 && errno == EINTR) {
    }
  }
  std::string why = "worker for " + plugin.name + " did not start" +
                    (ended == worker.pid ? ": " + DescribeExit(status, denied, SandboxOf(spec))
                     : Clock::now() >= deadline ? " within " + std::to_string(kStartTimeout.count()) + " s"
                                                : "");
  if (ended == worker.pid) worker.pid = -1;
  Reap(worker, /*kill_first=*/true);
  return Status(ErrorCode::kUnavailable, std::move(why));
}

void ProcessPool::CountStarted(const std::string& plugin) {
  std::lock_guard lock(mutex_);
  ++counts_[plugin].live;
  ++counts_generation_;
}

void ProcessPool::CountLateFrame(const std::string& plugin) {
  std::lock_guard lock(mutex_);
  ++counts_[plugin].late_frames;
  ++counts_generation_;
}

void ProcessPool::CountEnded(const std::string& plugin, bool by_sandbox) {
  std::lock_guard lock(mutex_);
  WorkerCounts& counts = counts_[plugin];
  --counts.live;
  ++counts.ended;
  if (by_sandbox) ++counts.sandbox_kills;
  ++counts_generation_;
}

std::map<std::string, ProcessPool::WorkerCounts> ProcessPool::worker_counts() const {
  std::lock_guard lock(mutex_);
  return counts_;
}

Status ProcessPool::Prestart(const LoadedPlugin& plugin, const WorkerSpec& spec, int count) {
  for (int i = 0; i < count; ++i) {
    std::string why;
    Worker worker = Spawn(plugin, spec, &why);
    if (worker.pid < 0) return Status(ErrorCode::kUnavailable, why);
    std::lock_guard lock(mutex_);
    idle_[plugin.name].push_back(worker);
  }
  return {};
}

void ProcessPool::PrestartInBackground(const LoadedPlugin& plugin, const WorkerSpec& spec, int count) {
  if (count <= 0) return;
  std::lock_guard lock(mutex_);
  for (int i = 0; i < count; ++i) pending_starts_.push_back({plugin, spec});
  starting_[plugin.name] += static_cast<size_t>(count);
  if (!starter_.joinable()) starter_ = std::jthread([this](std::stop_token stop) { StartPending(stop); });
  start_wanted_.notify_one();
}

void ProcessPool::StartPending(std::stop_token stop) {
  std::unique_lock lock(mutex_);
  while (start_wanted_.wait(lock, stop, [this] { return !pending_starts_.empty(); })) {
    PendingStart next = std::move(pending_starts_.front());
    pending_starts_.pop_front();
    lock.unlock();
    std::string why;
    Worker worker = Spawn(next.plugin, next.spec, &why, stop);
    if (worker.pid < 0 && !stop.stop_requested()) {
      spdlog::error("plugin {}: {}; its tasks will try to start a worker again", next.plugin.name, why);
    }
    lock.lock();
    --starting_[next.plugin.name];
    if (worker.pid > 0) idle_[next.plugin.name].push_back(worker);
  }
}

bool ProcessPool::ReapIfDead(Worker& worker) {
  int status = 0;
  pid_t ended = 0;
  while ((ended = waitpid(worker.pid, &status, WNOHANG)) < 0 && errno == EINTR) {
  }
  // An idle worker never writes: anything readable is EOF or garbage.
  pollfd socket{worker.fd, POLLIN, 0};
  if (ended == 0 && poll(&socket, 1, 0) == 0) return false;
  if (ended == worker.pid) worker.pid = -1;  // reaped here
  Reap(worker, /*kill_first=*/true);
  return true;
}

size_t ProcessPool::ReapDeadIdle() {
  std::lock_guard lock(mutex_);
  size_t reaped = 0;
  for (auto& [plugin, workers] : idle_) {
    const size_t dead = std::erase_if(workers, [](Worker& worker) { return ReapIfDead(worker); });
    WorkerCounts& counts = counts_[plugin];
    counts.live -= static_cast<int64_t>(dead);
    counts.ended += dead;
    counts_generation_ += dead;
    reaped += dead;
  }
  return reaped;
}

size_t ProcessPool::idle_or_starting_workers(const std::string& plugin) const {
  std::lock_guard lock(mutex_);
  const auto idle = idle_.find(plugin);
  const auto starting = starting_.find(plugin);
  return (idle == idle_.end() ? 0 : idle->second.size()) + (starting == starting_.end() ? 0 : starting->second);
}

IsolatedOutcome ProcessPool::Run(const LoadedPlugin& plugin, const WorkerSpec& spec, UMI_Context& context,
                                 const Allocation& allocation) {
  const std::string task = TaskFrame(context, allocation);
  // A worker can be dying when it is handed the task (killed a moment
  // before, still tearing down its threads): the task never started there,
  // so it goes to a fresh worker instead of ending `crashed`.
  for (int attempt = 1;; ++attempt) {
    bool started = false;
    IsolatedOutcome outcome = RunOnce(plugin, spec, context, task, started);
    if (started || !outcome.crashed || attempt == kStartAttempts) return outcome;
    spdlog::warn("task '{}': its worker process died before starting it ({}); trying a fresh worker",
                 context.task_id, outcome.error ? outcome.error->message : "");
  }
}

ProcessPool::Worker ProcessPool::TakeIdle(const std::string& plugin) {
  std::lock_guard lock(mutex_);
  auto& idle = idle_[plugin];
  while (!idle.empty()) {
    Worker worker = idle.back();
    idle.pop_back();
    if (!ReapIfDead(worker)) return worker;
    // Killed while idle (the OOM killer): never given a task.
    --counts_[plugin].live;
    ++counts_[plugin].ended;
    ++counts_generation_;
  }
  return {};
}

IsolatedOutcome ProcessPool::RunOnce(const LoadedPlugin& plugin, const WorkerSpec& spec, UMI_Context& context,
                                     const std::string& task, bool& started) {
  IsolatedOutcome outcome;
  Worker worker = TakeIdle(plugin.name);
  if (worker.pid < 0) {
    std::string why;
    worker = Spawn(plugin, spec, &why);
    if (worker.pid < 0) {
      outcome.error = MakeError("plugin_error", why);
      return outcome;
    }
  }
  ExchangeEnd end = ExchangeTask({.fd = worker.fd, .pid = worker.pid, .plugin = plugin.name, .kill_grace = kill_grace_,
                                  .late_frame = [this, &plugin] { CountLateFrame(plugin.name); }},
                                 context, task);
  started = end.started;
  return Settle(plugin, spec, std::move(worker), std::move(end));
}

IsolatedOutcome ProcessPool::Settle(const LoadedPlugin& plugin, const WorkerSpec& spec, Worker worker,
                                    ExchangeEnd end) {
  IsolatedOutcome outcome;
  outcome.error = std::move(end.error);
  switch (end.how) {
    case ExchangeEnd::How::kAnswered: {
      std::lock_guard lock(mutex_);
      idle_[plugin.name].push_back(std::move(worker));
      break;
    }
    case ExchangeEnd::How::kWorkerGone: {
      const int status = Reap(worker, /*kill_first=*/true);  // what the plugin started goes with it
      outcome.crashed = true;
      outcome.error = MakeError("crashed", DescribeExit(status, end.denied, SandboxOf(spec)));
      CountEnded(plugin.name, StoppedBySandbox(status, end.denied, SandboxOf(spec)));
      break;
    }
    case ExchangeEnd::How::kCancelIgnored:
      Reap(worker, /*kill_first=*/true);
      CountEnded(plugin.name);
      outcome.killed = true;
      outcome.error = MakeError("killed", "the worker process ignored cancellation and was killed after " +
                                              std::to_string(kill_grace_.count()) + " ms");
      break;
    case ExchangeEnd::How::kBadFrame:  // a worker that breaks the frame protocol gets no more tasks
      Reap(worker, /*kill_first=*/true);
      CountEnded(plugin.name);
      outcome.crashed = true;
      break;
  }
  return outcome;
}

void ProcessPool::Discard(const std::string& plugin, Worker worker) {
  Reap(worker, /*kill_first=*/true);
  CountEnded(plugin);
}

}  // namespace umi
