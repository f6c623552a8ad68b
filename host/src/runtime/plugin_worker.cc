#include "runtime/plugin_worker.h"

#include <fcntl.h>
#include <malloc.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/dll/shared_library.hpp>

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <optional>
#include <thread>

#include "runtime/plugin_registry.h"
#include "runtime/sandbox.h"
#include "runtime/task_context.h"
#include "runtime/worker_frames.h"

namespace umi {

namespace {

// The process's address space (VmSize), before each task: /proc/self/statm's
// first field, in pages, read with one pread of a descriptor kept open
// (/proc/self/status, parsed line by line, cost more than a no-op task).
int64_t AddressSpaceBytes() {
  static const int statm = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  char text[64];
  const ssize_t n = statm >= 0 ? pread(statm, text, sizeof(text) - 1, 0) : -1;
  if (n <= 0) return 0;
  text[n] = '\0';
  static const int64_t page = sysconf(_SC_PAGESIZE);
  return std::strtoll(text, nullptr, 10) * page;
}

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

int g_cancel_wake = -1;  // the write end of the watcher's pipe
struct sigaction g_earlier_on_cancel {};  // the plugin's own handler, if it set one (a Go runtime's)

// The host's kCancelSignal: a cancel frame waits on the socket. Wakes the
// watcher thread, which reads it, then calls whatever handler the plugin
// had set for the signal.
void NoteCancel(int signal, siginfo_t* info, void* context) {
  const int saved = errno;
  [[maybe_unused]] ssize_t n = write(g_cancel_wake, "c", 1);
  errno = saved;
  if (g_earlier_on_cancel.sa_flags & SA_SIGINFO) {
    if (g_earlier_on_cancel.sa_sigaction) g_earlier_on_cancel.sa_sigaction(signal, info, context);
  } else if (g_earlier_on_cancel.sa_handler != SIG_DFL && g_earlier_on_cancel.sa_handler != SIG_IGN) {
    g_earlier_on_cancel.sa_handler(signal);
  }
}

// A worker that is pid 1 of its namespace: what the task started, killed.
void KillLeftoverProcesses() {
  kill(-1, SIGKILL);  // every process of the namespace but this one
  while (waitpid(-1, nullptr, 0) > 0 || errno == EINTR) {
  }
}


// One worker process: its steps, in the order they run.
class PluginWorker {
 public:
  explicit PluginWorker(int fd) : fd_(fd) {}

  // Before any of the plugin's code: the sandbox the host sent.
  bool EnterSandbox() {
    FrameType type{};
    std::string frame;
    if (!ReadFrame(fd_, type, frame) || type != kSandbox) return false;
    g_host_fd = fd_;
    if (Status entered = umi::EnterSandbox(frame, ReportDenied, &reap_after_each_task_); !entered.ok()) {
      WriteFrame(fd_, kInitFailed, "cannot enter the sandbox: " + entered.message());
      return false;
    }
    return true;
  }

  // The library, its entry points and UMI_PluginInitialize with the kInit
  // settings; kReady or kInitFailed says how it went.
  bool LoadPlugin(const std::filesystem::path& path) {
    FrameType type{};
    std::string settings;
    if (!ReadFrame(fd_, type, settings) || type != kInit) return false;
    try {
      library_.load(path, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
      plugin_.name = library_.get<const UMI_PluginDescriptor*()>("UMI_PluginDescribe")()->name;
      plugin_.execute = library_.get<UMI_Error*(UMI_Context*)>("UMI_PluginExecute");
      if (library_.has("UMI_InstanceInitialize")) {
        plugin_.instance_initialize = library_.get<UMI_Error*(void**)>("UMI_InstanceInitialize");
        plugin_.instance_finalize = library_.get<void(void*)>("UMI_InstanceFinalize");
      }
      auto initialize = library_.get<UMI_Error*(const UMI_HostApi*, const uint8_t*, size_t)>("UMI_PluginInitialize");
      if (OwnedError error{initialize(HostApi(), reinterpret_cast<const uint8_t*>(settings.data()), settings.size())}) {
        WriteFrame(fd_, kInitFailed, "initialize failed: " + error->code + ": " + error->message);
        return false;
      }
    } catch (const std::exception& e) {
      WriteFrame(fd_, kInitFailed, std::string("cannot load: ") + e.what());
      return false;
    }
    return WriteFrame(fd_, kReady, {});
  }

  // Runs tasks until the host closes the socket. This thread reads its
  // tasks itself (no thread hands them over: one wake-up less per task);
  // the cancels that come while a task runs are read by the watcher thread,
  // which the host's kCancelSignal wakes.
  [[noreturn]] void Serve() {
    sched_getaffinity(0, sizeof(all_cpus_), &all_cpus_);
    getrlimit(RLIMIT_AS, &unlimited_);
    int wake[2];
    if (pipe2(wake, O_CLOEXEC) == 0) {
      fcntl(wake[1], F_SETFL, O_NONBLOCK);  // a full pipe: a wake-up is pending already
      g_cancel_wake = wake[1];
      struct sigaction on_cancel {};
      on_cancel.sa_sigaction = NoteCancel;
      on_cancel.sa_flags = SA_RESTART | SA_SIGINFO;
      sigemptyset(&on_cancel.sa_mask);
      sigaction(kCancelSignal, &on_cancel, &g_earlier_on_cancel);
      std::thread([this, read_end = wake[0]] { WatchCancels(read_end); }).detach();
    }
    while (std::optional<std::string> task = NextTask()) {
      std::string done = RunTask(*task);
      if (reap_after_each_task_) KillLeftoverProcesses();
      std::lock_guard lock(write_mutex_);
      if (!WriteFrame(fd_, kDone, done)) break;
    }
    // The host closed the socket (it is stopping, or gave up on this worker).
    shutdown(fd_, SHUT_RDWR);
    std::_Exit(0);  // plugin threads and globals are not ours to tear down
  }

 private:
  // The next task; the cancels read on the way name a task not started yet
  // (a cancel can overtake its task) or one that ended. None: the host
  // closed the socket.
  std::optional<std::string> NextTask() {
    FrameType type{};
    std::string payload;
    while (true) {
      {
        std::lock_guard reading(read_mutex_);
        if (!ReadFrame(fd_, type, payload)) return std::nullopt;
      }
      if (type == kTask) return payload;
      if (type == kCancel) Cancel(payload);
    }
  }

  // Each wake-up: the cancel frames at the head of the socket, read.
  void WatchCancels(int wake) {
    char drained[64];
    while (true) {
      const ssize_t n = read(wake, drained, sizeof(drained));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      TakeWaitingCancels();
    }
  }

  // Reads the cancel frames at the head of the socket; a task frame there
  // is the main thread's, left alone. The main thread calls it too as each
  // run starts: a cancel that came right behind its task frame found that
  // frame at the head when its signal woke the watcher.
  void TakeWaitingCancels() {
    std::lock_guard reading(read_mutex_);
    char header[5];
    while (recv(fd_, header, sizeof(header), MSG_PEEK | MSG_DONTWAIT) == sizeof(header) && header[0] == kCancel) {
      FrameType type{};
      std::string payload;
      if (!ReadFrame(fd_, type, payload)) return;
      Cancel(payload);
    }
  }

  void Cancel(const std::string& task_id) {
    std::lock_guard lock(mutex_);
    if (running_ && running_->task_id == task_id) {
      running_->Cancel();
    } else {
      early_cancels_.insert(task_id);
    }
  }

  // One task within its grant; the kDone payload.
  std::string RunTask(const std::string& payload) {
    const msgpack::object_handle handle = msgpack::unpack(payload.data(), payload.size());
    const auto fields = handle.get().as<std::map<std::string, msgpack::object>>();
    Allocation allocation;
    allocation.cpu_cores = Quantity::FromDouble(fields.at("cpu_cores").as<double>());
    allocation.cpu_threads = fields.at("cpu_threads").as<int>();
    allocation.memory_mb = fields.at("memory_mb").as<int64_t>();
    allocation.cpu_ids = fields.at("cpu_ids").as<std::vector<int>>();
    allocation.gpu_ids = fields.at("gpu_ids").as<std::vector<int>>();
    const msgpack::object& input = fields.at("input");
    UMI_Context context(fields.at("id").as<std::string>(), plugin_.name,
                        std::string(input.via.bin.ptr, input.via.bin.size), allocation);
    context.on_progress = [&](double fraction, std::string_view message) {
      const std::string frame = Pack([&](auto& p) {
        p.pack_map(3);
        p.pack("task").pack(context.task_id);
        p.pack("fraction").pack(fraction);
        p.pack("message").pack(message);
      });
      std::lock_guard lock(write_mutex_);
      WriteFrame(fd_, kProgress, frame);
    };

    const bool limit_memory = HoldToGrant(allocation);
    {
      std::lock_guard lock(mutex_);
      running_ = &context;
      // Only this task's cancel can still matter; older ones arrived late.
      if (early_cancels_.count(context.task_id)) context.Cancel();
      early_cancels_.clear();
    }
    TakeWaitingCancels();
    {
      std::lock_guard lock(write_mutex_);
      WriteFrame(fd_, kStarted, {});  // a closed socket shows again at kDone
    }
    const OwnedError error = Execute(context, allocation);
    {
      std::lock_guard lock(mutex_);
      running_ = nullptr;
    }
    if (limit_memory) setrlimit(RLIMIT_AS, &unlimited_);
    if (!allocation.cpu_ids.empty()) sched_setaffinity(0, sizeof(all_cpus_), &all_cpus_);

    if (error) return ErrorPayload(error->code, error->message);
    return Pack([&](auto& p) {
      p.pack_map(2);
      p.pack("ok").pack(true);
      p.pack("output").pack_bin(static_cast<uint32_t>(context.output_msgpack.size()));
      p.pack_bin_body(context.output_msgpack.data(), static_cast<uint32_t>(context.output_msgpack.size()));
    });
  }

  // CPU affinity and RLIMIT_AS for the task; whether memory is limited.
  bool HoldToGrant(const Allocation& allocation) {
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
      rlimit limit = unlimited_;
      limit.rlim_cur = static_cast<rlim_t>(AddressSpaceBytes() + allocation.memory_mb * (int64_t{1} << 20));
      setrlimit(RLIMIT_AS, &limit);
    }
    return limit_memory;
  }

  // The plugin's execute; what escapes it becomes its error.
  OwnedError Execute(UMI_Context& context, const Allocation& allocation) {
    try {
      if (OwnedError error = AcquireInstanceState(plugin_, &context.instance_state)) return error;
      return OwnedError(plugin_.execute(&context));
    } catch (const std::bad_alloc&) {
      return MakeError("out_of_memory",
                       "the plugin ran out of its memory_mb=" + std::to_string(allocation.memory_mb) + " limit");
    } catch (const std::exception& e) {
      return MakeError("plugin_error", std::string("exception escaped the plugin ABI: ") + e.what());
    } catch (...) {
      return MakeError("plugin_error", "exception escaped the plugin ABI");
    }
  }

  const int fd_;
  bool reap_after_each_task_ = false;
  boost::dll::shared_library library_;
  LoadedPlugin plugin_;
  cpu_set_t all_cpus_{};
  rlimit unlimited_{};
  std::mutex read_mutex_;  // one reader of the socket at a time: this thread or the watcher
  std::mutex mutex_;  // guards what follows, shared with the watcher thread
  UMI_Context* running_ = nullptr;
  std::set<std::string> early_cancels_;
  std::mutex write_mutex_;  // progress may come from the plugin's own threads
};

}  // namespace

int RunPluginWorker(int fd, const std::filesystem::path& library_path, bool sandboxed) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() == 1) return 1;  // the host died before PDEATHSIG was armed
  // One malloc arena: RLIMIT_AS then bounds what the plugin allocates, not
  // the 64 MiB of address space glibc reserves per thread arena.
  mallopt(M_ARENA_MAX, 1);
  PluginWorker worker(fd);
  if (sandboxed && !worker.EnterSandbox()) return 1;
  if (!worker.LoadPlugin(library_path)) return 1;
  worker.Serve();
}

}  // namespace umi
