#include "runtime/process_pool.h"

#include <malloc.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/dll/shared_library.hpp>
#include <msgpack.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <fstream>
#include <stdexcept>
#include <thread>

#include "common/log_format.h"
#include "runtime/python_plugin.h"

extern char** environ;

namespace umi {
namespace {

using Clock = std::chrono::steady_clock;

// kStarted: the worker took the task and is about to run the plugin.
// kLog: a line for the host's log ({level: 0 debug..3 error, message}),
// from Python workers (python/umi/_worker.py speaks this protocol too).
// kSandbox: what the worker confines itself to (sandbox.h), before kInit.
// kDenied: the sandbox stopped a system call (its number); the worker exits.
enum FrameType : uint8_t {
  kInit = 1, kReady, kInitFailed, kTask, kCancel, kProgress, kDone, kStarted, kLog, kSandbox, kDenied
};

constexpr uint32_t kMaxFrameBytes = 1u << 30;
constexpr auto kStartTimeout = std::chrono::seconds(30);
// Workers tried for a task whose worker died before it started.
constexpr int kStartAttempts = 3;

bool WriteAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

bool ReadAll(int fd, char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = read(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

bool WriteFrame(int fd, FrameType type, const std::string& payload) {
  char header[5];
  header[0] = static_cast<char>(type);
  const uint32_t length = static_cast<uint32_t>(payload.size());
  std::memcpy(header + 1, &length, sizeof(length));
  return WriteAll(fd, header, sizeof(header)) && WriteAll(fd, payload.data(), payload.size());
}

// False on EOF, error or an oversized frame.
bool ReadFrame(int fd, FrameType& type, std::string& payload) {
  char header[5];
  if (!ReadAll(fd, header, sizeof(header))) return false;
  type = static_cast<FrameType>(header[0]);
  uint32_t length = 0;
  std::memcpy(&length, header + 1, sizeof(length));
  if (length > kMaxFrameBytes) return false;
  payload.resize(length);
  return ReadAll(fd, payload.data(), length);
}

template <typename Fill>
std::string Pack(Fill fill) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  fill(packer);
  return std::string(buffer.data(), buffer.size());
}

std::string ErrorPayload(const std::string& code, const std::string& message) {
  return Pack([&](auto& p) {
    p.pack_map(3);
    p.pack("ok").pack(false);
    p.pack("code").pack(code);
    p.pack("message").pack(message);
  });
}

void LogWorkerLine(const std::string& plugin, const std::string& task, const std::string& payload) {
  static constexpr spdlog::level::level_enum kLevels[] = {spdlog::level::debug, spdlog::level::info,
                                                          spdlog::level::warn, spdlog::level::err};
  try {
    const msgpack::object_handle handle = msgpack::unpack(payload.data(), payload.size());
    const auto fields = handle.get().as<std::map<std::string, msgpack::object>>();
    const int level = std::clamp(fields.at("level").as<int>(), 0, 3);
    // A line names its task: one from a thread that outlived its task is that task's, not the running one's.
    const auto named = fields.find("task");
    const std::string from = named != fields.end() && named->second.type == msgpack::type::STR &&
                                     named->second.via.str.size > 0
                                 ? named->second.as<std::string>()
                                 : task;
    LogTaskScope scope(plugin, from);
    spdlog::log(kLevels[level], "[{} {}] {}", plugin, from, fields.at("message").as<std::string>());
  } catch (const std::exception& e) {
    spdlog::warn("plugin {}: its worker sent an unreadable log line: {}", plugin, e.what());
  }
}

// How a worker ended; `denied`: the system call its sandbox stopped, if it said.
std::string DescribeExit(int status, const std::string& denied = {}, const WorkerSpec* spec = nullptr) {
  if (!denied.empty()) {
    std::string grant;
    if (denied == "socket" || denied == "socketpair") grant = " (sandbox: {network: true} grants it)";
    if (denied == "execve" || denied == "execveat" || denied == "clone" || denied == "fork" || denied == "vfork") {
      grant = " (sandbox: {exec: true} grants it)";
    }
    return "the sandbox stopped the plugin's worker process: it called " + denied + ", which the sandbox denies" + grant;
  }
  if (spec && spec->sandbox && WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS) {
    return "the sandbox stopped the plugin's worker process: it made a system call the sandbox denies (signal 31, SIGSYS)";
  }
  if (spec && spec->sandbox && WIFSIGNALED(status) && WTERMSIG(status) == SIGXFSZ) {
    return "the sandbox stopped the plugin's worker process: it wrote a file past the sandbox's max_file_mb=" +
           std::to_string(spec->sandbox->max_file_bytes >> 20);
  }
  if (WIFSIGNALED(status)) {
    const int signal = WTERMSIG(status);
    return "the plugin's worker process died of signal " + std::to_string(signal) + " (" + strsignal(signal) + ")";
  }
  if (WIFEXITED(status)) {
    return "the plugin's worker process exited with code " + std::to_string(WEXITSTATUS(status));
  }
  return "the plugin's worker process ended";
}

bool StoppedBySandbox(int status, const std::string& denied, const WorkerSpec& spec) {
  if (!spec.sandbox) return false;
  return !denied.empty() || (WIFSIGNALED(status) && (WTERMSIG(status) == SIGSYS || WTERMSIG(status) == SIGXFSZ));
}

void RemoveTempDir(const std::string& dir) {
  if (dir.empty()) return;
  std::error_code error;
  std::filesystem::remove_all(dir, error);
}

int64_t AddressSpaceBytes() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmSize:", 0) == 0) return std::stoll(line.substr(7)) * 1024;
  }
  return 0;
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

void ProcessPool::Reap(Worker& worker, bool kill_first) {
  if (worker.pid > 0) {
    if (kill_first) kill(-worker.pid, SIGKILL);  // the worker's process group: what its plugin started too
    int status = 0;
    while (waitpid(worker.pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (worker.fd >= 0) close(worker.fd);
  RemoveTempDir(worker.temp_dir);
  worker = Worker{};
}

ProcessPool::Worker ProcessPool::Spawn(const LoadedPlugin& plugin, const WorkerSpec& spec, std::string* why,
                                       std::stop_token stop) {
  if (!spec.refusal.empty()) {
    *why = spec.refusal;
    return {};
  }
  std::optional<SandboxPolicy> sandbox = spec.sandbox;
  if (sandbox && sandbox->required) {
    if (const auto missing = MissingMechanisms(*sandbox, SandboxSupport::Get()); !missing.empty()) {
      std::string names;
      for (const std::string& name : missing) names += (names.empty() ? "" : ", ") + name;
      *why = "its sandbox is required (sandbox.required) and this kernel lacks " + names;
      return {};
    }
  }
  Worker worker;
  if (sandbox) {  // a private temp dir: the one place it may write besides its output root
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/umi-worker-XXXXXX";
    if (!mkdtemp(pattern.data())) {
      *why = "cannot make the worker's temp dir " + pattern + ": " + std::strerror(errno);
      return {};
    }
    worker.temp_dir = pattern;
    sandbox->write.push_back(pattern);
  }
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    *why = std::string("socketpair: ") + std::strerror(errno);
    RemoveTempDir(worker.temp_dir);
    return {};
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
  auto fail = [&](std::string reason) {
    close_all();
    close(fds[0]);
    RemoveTempDir(worker.temp_dir);
    *why = std::move(reason);
    return Worker{};
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

  bool started = true;
  if (sandbox) {
    StatusOr<std::string> frame =
        MakeSandboxFrame(*sandbox, ruleset >= 0, launched->own_pid_namespace ? 1 : launched->pid);
    if (!frame.ok()) {
      *why = "worker for " + plugin.name + ": " + frame.status().message();
      Reap(worker, /*kill_first=*/true);
      return {};
    }
    started = WriteFrame(worker.fd, kSandbox, frame.value());
  }
  FrameType type{};
  std::string payload, denied;
  const auto deadline = Clock::now() + kStartTimeout;
  started = started && WriteFrame(worker.fd, kInit, spec.settings);
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
  if (!started || type != kReady) {
    if (type == kInitFailed) {
      *why = "worker for " + plugin.name + ": " + payload;
      Reap(worker, /*kill_first=*/true);
      return {};
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
    *why = "worker for " + plugin.name + " did not start" +
           (ended == worker.pid ? ": " + DescribeExit(status, denied, &spec)
                                : Clock::now() >= deadline ? " within " + std::to_string(kStartTimeout.count()) + " s" : "");
    if (ended == worker.pid) worker.pid = -1;
    Reap(worker, /*kill_first=*/true);
    return {};
  }
  CountStarted(plugin.name);
  return worker;
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
  const std::string task = Pack([&](auto& p) {
    p.pack_map(7);
    p.pack("id").pack(context.task_id);
    p.pack("input").pack_bin(static_cast<uint32_t>(context.input_msgpack.size()));
    p.pack_bin_body(context.input_msgpack.data(), static_cast<uint32_t>(context.input_msgpack.size()));
    p.pack("cpu_cores").pack(allocation.cpu_cores.ToDouble());
    p.pack("cpu_threads").pack(allocation.cpu_threads);
    p.pack("memory_mb").pack(allocation.memory_mb);
    p.pack("cpu_ids").pack(allocation.cpu_ids);
    p.pack("gpu_ids").pack(allocation.gpu_ids);
  });
  // A worker can be dying when it is handed the task (killed a moment
  // before, still tearing down its threads): the task never started there,
  // so it goes to a fresh worker instead of ending `crashed`.
  for (int attempt = 1;; ++attempt) {
    bool started = false;
    IsolatedOutcome outcome = RunOnce(plugin, spec, context, task, started);
    if (started || !outcome.crashed || attempt == kStartAttempts) return outcome;
    spdlog::warn("task '{}': its worker process died before starting it ({}); trying a fresh worker",
                 context.task_id, outcome.error ? outcome.error->message : "");
    delete outcome.error;
  }
}

IsolatedOutcome ProcessPool::RunOnce(const LoadedPlugin& plugin, const WorkerSpec& spec, UMI_Context& context,
                                     const std::string& task, bool& started) {
  IsolatedOutcome outcome;
  Worker worker;
  {
    std::lock_guard lock(mutex_);
    auto& idle = idle_[plugin.name];
    while (!idle.empty() && worker.pid < 0) {
      worker = idle.back();
      idle.pop_back();
      if (ReapIfDead(worker)) {  // killed while idle (OOM killer): never given a task
        worker = Worker{};
        --counts_[plugin.name].live;
        ++counts_[plugin.name].ended;
        ++counts_generation_;
      }
    }
  }
  if (worker.pid < 0) {
    std::string why;
    worker = Spawn(plugin, spec, &why);
    if (worker.pid < 0) {
      outcome.error = new UMI_Error{"plugin_error", why};
      return outcome;
    }
  }

  std::string denied;  // the system call the sandbox stopped, as the worker reported it
  auto died = [&] {
    int status = 0;
    close(worker.fd);
    kill(-worker.pid, SIGKILL);  // what the plugin started (its process group) goes with it
    while (waitpid(worker.pid, &status, 0) < 0 && errno == EINTR) {
    }
    RemoveTempDir(worker.temp_dir);
    outcome.crashed = true;
    outcome.error = new UMI_Error{"crashed", DescribeExit(status, denied, &spec)};
    CountEnded(plugin.name, StoppedBySandbox(status, denied, spec));
    return outcome;
  };
  if (!WriteFrame(worker.fd, kTask, task)) return died();

  std::optional<Clock::time_point> kill_at;
  while (true) {
    if (!kill_at && context.cancelled()) {
      kill_at = Clock::now() + kill_grace_;
      WriteFrame(worker.fd, kCancel, context.task_id);
    }
    if (kill_at && Clock::now() >= *kill_at) {
      Reap(worker, /*kill_first=*/true);
      CountEnded(plugin.name);
      started = true;  // whatever it did, it was told to stop: no second try
      outcome.killed = true;
      outcome.error = new UMI_Error{"killed", "the worker process ignored cancellation and was killed after " +
                                                  std::to_string(kill_grace_.count()) + " ms"};
      return outcome;
    }
    // The tick bounds how late a cancellation reaches the worker.
    pollfd readable{worker.fd, POLLIN, 0};
    if (poll(&readable, 1, 10) <= 0) continue;
    FrameType type{};
    std::string payload;
    if (!ReadFrame(worker.fd, type, payload)) return died();
    if (type == kStarted) {
      started = true;
      continue;
    }
    if (type == kDenied) {
      denied = SystemCallName(std::atoi(payload.c_str()));
      continue;  // its end follows
    }
    started = true;  // any other frame comes from a task that ran
    if (type == kLog) {
      LogWorkerLine(plugin.name, context.task_id, payload);
      continue;
    }
    try {
      const msgpack::object_handle handle = msgpack::unpack(payload.data(), payload.size());
      const auto fields = handle.get().as<std::map<std::string, msgpack::object>>();
      // A frame names its task: one from an earlier task (a thread or a
      // forked process the plugin left behind) is not this task's answer.
      if (const auto from = fields.find("task"); from != fields.end() && from->second.as<std::string>() != context.task_id) {
        CountLateFrame(plugin.name);
        spdlog::warn("plugin {}: a {} frame of task '{}' came while task '{}' ran (something the plugin left "
                     "running); dropped",
                     plugin.name, type == kDone ? "result" : "progress", from->second.as<std::string>(), context.task_id);
        continue;
      }
      if (type == kProgress) {
        if (context.on_progress) {
          context.on_progress(fields.at("fraction").as<double>(), fields.at("message").as<std::string>());
        }
        continue;
      }
      if (type != kDone) throw std::runtime_error("unexpected frame type " + std::to_string(type));
      if (fields.at("ok").as<bool>()) {
        const msgpack::object& output = fields.at("output");
        context.output_msgpack.assign(output.via.bin.ptr, output.via.bin.size);
      } else {
        outcome.error = new UMI_Error{fields.at("code").as<std::string>(), fields.at("message").as<std::string>()};
      }
    } catch (const std::exception& e) {
      // A worker that breaks the frame protocol cannot be trusted with more tasks.
      Reap(worker, /*kill_first=*/true);
      CountEnded(plugin.name);
      outcome.crashed = true;
      outcome.error = new UMI_Error{"crashed", std::string("the plugin's worker process sent a bad frame: ") + e.what()};
      return outcome;
    }
    std::lock_guard lock(mutex_);
    idle_[plugin.name].push_back(worker);
    return outcome;
  }
}

// ---- the worker process ------------------------------------------------------

namespace {

int g_host_fd = -1;  // the worker's socket, for the SIGSYS handler

// In the SIGSYS handler: a kDenied frame naming the call, by number.
void ReportDenied(int number) {
  char frame[5 + 12];
  int length = 0;
  char digits[12];
  unsigned value = static_cast<unsigned>(number);
  do {
    digits[length++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value > 0 && length < 11);
  frame[0] = static_cast<char>(kDenied);
  const uint32_t size = static_cast<uint32_t>(length);
  std::memcpy(frame + 1, &size, sizeof(size));
  for (int i = 0; i < length; ++i) frame[5 + i] = digits[length - 1 - i];
  [[maybe_unused]] ssize_t n = send(g_host_fd, frame, 5 + static_cast<size_t>(length), MSG_NOSIGNAL);
}

// A worker that is pid 1 of its namespace: what the task started, killed.
void KillLeftoverProcesses() {
  kill(-1, SIGKILL);  // every process of the namespace but this one
  while (waitpid(-1, nullptr, 0) > 0 || errno == EINTR) {
  }
}

}  // namespace

int RunPluginWorker(int fd, const std::filesystem::path& library_path, bool sandboxed) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() == 1) return 1;  // the host died before PDEATHSIG was armed
  // One malloc arena: RLIMIT_AS then bounds what the plugin allocates, not
  // the 64 MiB of address space glibc reserves per thread arena.
  mallopt(M_ARENA_MAX, 1);

  FrameType type{};
  bool reap_after_each_task = false;
  if (sandboxed) {  // before the plugin's code runs at all
    std::string frame;
    if (!ReadFrame(fd, type, frame) || type != kSandbox) return 1;
    g_host_fd = fd;
    if (Status entered = EnterSandbox(frame, ReportDenied, &reap_after_each_task); !entered.ok()) {
      WriteFrame(fd, kInitFailed, "cannot enter the sandbox: " + entered.message());
      return 1;
    }
  }
  std::string settings;
  if (!ReadFrame(fd, type, settings) || type != kInit) return 1;
  boost::dll::shared_library library;
  LoadedPlugin plugin;
  try {
    library.load(library_path, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
    plugin.name = library.get<const UMI_PluginDescriptor*()>("UMI_PluginDescribe")()->name;
    plugin.execute = library.get<UMI_Error*(UMI_Context*)>("UMI_PluginExecute");
    if (library.has("UMI_InstanceInitialize")) {
      plugin.instance_initialize = library.get<UMI_Error*(void**)>("UMI_InstanceInitialize");
      plugin.instance_finalize = library.get<void(void*)>("UMI_InstanceFinalize");
    }
    auto initialize = library.get<UMI_Error*(const UMI_HostApi*, const uint8_t*, size_t)>("UMI_PluginInitialize");
    if (UMI_Error* error = initialize(HostApi(), reinterpret_cast<const uint8_t*>(settings.data()), settings.size())) {
      WriteFrame(fd, kInitFailed, "initialize failed: " + error->code + ": " + error->message);
      delete error;
      return 1;
    }
  } catch (const std::exception& e) {
    WriteFrame(fd, kInitFailed, std::string("cannot load: ") + e.what());
    return 1;
  }
  if (!WriteFrame(fd, kReady, {})) return 1;

  cpu_set_t all_cpus;
  sched_getaffinity(0, sizeof(all_cpus), &all_cpus);
  rlimit unlimited{};
  getrlimit(RLIMIT_AS, &unlimited);

  // The reader thread hands tasks to this thread and turns a cancel frame
  // into a cancelled context while the plugin runs. A cancel can overtake
  // its task (it names the task): it is kept until that task starts.
  std::mutex mutex;
  std::condition_variable wake;
  std::deque<std::string> tasks;
  bool closed = false;
  UMI_Context* running = nullptr;
  std::set<std::string> early_cancels;
  std::mutex write_mutex;  // progress may come from the plugin's own threads
  std::thread reader([&] {
    FrameType frame{};
    std::string payload;
    while (ReadFrame(fd, frame, payload)) {
      std::lock_guard lock(mutex);
      if (frame == kTask) tasks.push_back(std::move(payload));
      if (frame == kCancel) {
        if (running && running->task_id == payload) {
          running->Cancel();
        } else {
          early_cancels.insert(payload);
        }
      }
      wake.notify_one();
    }
    std::lock_guard lock(mutex);
    closed = true;
    if (running) running->Cancel();
    wake.notify_one();
  });

  while (true) {
    std::string payload;
    {
      std::unique_lock lock(mutex);
      wake.wait(lock, [&] { return closed || !tasks.empty(); });
      if (closed) break;
      payload = std::move(tasks.front());
      tasks.pop_front();
    }
    const msgpack::object_handle handle = msgpack::unpack(payload.data(), payload.size());
    const auto fields = handle.get().as<std::map<std::string, msgpack::object>>();
    Allocation allocation;
    allocation.cpu_cores = Quantity::FromDouble(fields.at("cpu_cores").as<double>());
    allocation.cpu_threads = fields.at("cpu_threads").as<int>();
    allocation.memory_mb = fields.at("memory_mb").as<int64_t>();
    allocation.cpu_ids = fields.at("cpu_ids").as<std::vector<int>>();
    allocation.gpu_ids = fields.at("gpu_ids").as<std::vector<int>>();
    const msgpack::object& input = fields.at("input");
    UMI_Context context(fields.at("id").as<std::string>(), plugin.name, std::string(input.via.bin.ptr, input.via.bin.size),
                        allocation);
    context.on_progress = [&](double fraction, std::string_view message) {
      const std::string frame = Pack([&](auto& p) {
        p.pack_map(3);
        p.pack("task").pack(context.task_id);
        p.pack("fraction").pack(fraction);
        p.pack("message").pack(message);
      });
      std::lock_guard lock(write_mutex);
      WriteFrame(fd, kProgress, frame);
    };

    if (!allocation.cpu_ids.empty()) {
      cpu_set_t granted;
      CPU_ZERO(&granted);
      for (int cpu : allocation.cpu_ids) CPU_SET(cpu, &granted);
      sched_setaffinity(0, sizeof(granted), &granted);
    }
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    // Sanitizer runtimes map shadow memory as they go: a limit kills them.
    const bool limit_memory = false;
#else
    const bool limit_memory = allocation.memory_mb > 0 && allocation.gpu_ids.empty();
#endif
    if (limit_memory) {
      rlimit limit = unlimited;
      limit.rlim_cur = static_cast<rlim_t>(AddressSpaceBytes() + allocation.memory_mb * (int64_t{1} << 20));
      setrlimit(RLIMIT_AS, &limit);
    }
    {
      std::lock_guard lock(mutex);
      running = &context;
      // Only this task's cancel can still matter; older ones arrived late.
      if (early_cancels.count(context.task_id)) context.Cancel();
      early_cancels.clear();
    }
    {
      std::lock_guard lock(write_mutex);
      WriteFrame(fd, kStarted, {});  // a closed socket shows again at kDone
    }
    UMI_Error* error = nullptr;
    try {
      error = AcquireInstanceState(plugin, &context.instance_state);
      if (!error) error = plugin.execute(&context);
    } catch (const std::bad_alloc&) {
      error = new UMI_Error{"out_of_memory", "the plugin ran out of its memory_mb=" +
                                                 std::to_string(allocation.memory_mb) + " limit"};
    } catch (const std::exception& e) {
      error = new UMI_Error{"plugin_error", std::string("exception escaped the plugin ABI: ") + e.what()};
    } catch (...) {
      error = new UMI_Error{"plugin_error", "exception escaped the plugin ABI"};
    }
    {
      std::lock_guard lock(mutex);
      running = nullptr;
    }
    if (limit_memory) setrlimit(RLIMIT_AS, &unlimited);
    if (!allocation.cpu_ids.empty()) sched_setaffinity(0, sizeof(all_cpus), &all_cpus);

    std::string done;
    if (error) {
      done = ErrorPayload(error->code, error->message);
      delete error;
    } else {
      done = Pack([&](auto& p) {
        p.pack_map(2);
        p.pack("ok").pack(true);
        p.pack("output").pack_bin(static_cast<uint32_t>(context.output_msgpack.size()));
        p.pack_bin_body(context.output_msgpack.data(), static_cast<uint32_t>(context.output_msgpack.size()));
      });
    }
    if (reap_after_each_task) KillLeftoverProcesses();
    std::lock_guard lock(write_mutex);
    if (!WriteFrame(fd, kDone, done)) break;
  }
  // The host closed the socket (it is stopping, or gave up on this worker).
  shutdown(fd, SHUT_RDWR);
  reader.join();
  std::_Exit(0);  // plugin threads and globals are not ours to tear down
}

}  // namespace umi
