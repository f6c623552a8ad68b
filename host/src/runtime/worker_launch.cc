#include "runtime/worker_launch.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "common/text.h"

namespace umi {
namespace {

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

// ---- between clone and exec: system calls only ----

struct ChildPlan {
  const char* path = nullptr;
  char* const* argv = nullptr;
  char* const* envp = nullptr;
  std::vector<std::pair<int, int>> fds;  // (source, target), sources above every target
  int error_pipe = -1;
  bool sandbox = false;
  bool user_namespace = false;
  bool drop_capabilities = false;
  rlim_t max_file_bytes = RLIM_INFINITY;
  char uid_map[64] = {};
  char gid_map[64] = {};
};

bool WriteFile(const char* path, const char* text) {
  const int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const size_t length = strlen(text);
  const bool written = write(fd, text, length) == static_cast<ssize_t>(length);
  close(fd);
  return written;
}

[[noreturn]] void FailChild(const ChildPlan& plan, int step) {
  const int codes[2] = {step, errno};
  [[maybe_unused]] ssize_t n = write(plan.error_pipe, codes, sizeof(codes));
  _exit(127);
}

enum ChildStep { kStepUserMap = 1, kStepGroup, kStepFds, kStepLimits, kStepPrivileges, kStepExec };
const char* const kStepNames[] = {"", "mapping its user namespace", "making its process group",
                                  "passing its descriptors", "setting its limits", "dropping privileges",
                                  "starting the program"};

[[noreturn]] void RunChild(const ChildPlan& plan) {
  if (plan.user_namespace) {
    if (!WriteFile("/proc/self/setgroups", "deny") || !WriteFile("/proc/self/uid_map", plan.uid_map) ||
        !WriteFile("/proc/self/gid_map", plan.gid_map)) {
      FailChild(plan, kStepUserMap);
    }
  }
  // Its own process group: a terminal's Ctrl-C reaches only the host, and
  // the host kills the group (what the plugin started) with the worker.
  if (setpgid(0, 0) != 0) FailChild(plan, kStepGroup);
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  for (int signal = 1; signal < NSIG; ++signal) {
    if (signal != SIGKILL && signal != SIGSTOP) sigaction(signal, &default_action, nullptr);
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);  // the host blocks what it reads from a signalfd
  for (const auto& [source, target] : plan.fds) {
    if (dup2(source, target) < 0) FailChild(plan, kStepFds);  // dup2 clears close-on-exec on the target
  }
  if (plan.sandbox) {
    const rlimit no_core{0, 0}, file_size{plan.max_file_bytes, plan.max_file_bytes};
    if (setrlimit(RLIMIT_CORE, &no_core) != 0 || setrlimit(RLIMIT_FSIZE, &file_size) != 0) FailChild(plan, kStepLimits);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) FailChild(plan, kStepPrivileges);
    if (plan.drop_capabilities) {
      // Root's capabilities come back at exec from the bounding set: empty
      // it, and the worker runs as uid 0 with none (no CAP_DAC_OVERRIDE,
      // CAP_KILL, CAP_SYS_PTRACE, CAP_NET_RAW...).
      for (int capability = 0; capability < 64; ++capability) {
        if (prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0 && errno != EINVAL) FailChild(plan, kStepPrivileges);
      }
      prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    }
  }
  execve(plan.path, plan.argv, plan.envp);
  FailChild(plan, kStepExec);
}

// The namespaces a worker under `sandbox` (null: none) gets, as clone flags.
int CloneFlags(const SandboxPolicy* sandbox, const SandboxSupport& support) {
  int flags = SIGCHLD;
  if (sandbox) {
    if (!sandbox->network && support.network_namespace) flags |= CLONE_NEWNET;
    // A worker that may start processes is pid 1 of its own namespace: it
    // kills them all after each task (kill(-1) reaches only its namespace).
    if (sandbox->exec && support.pid_namespace) flags |= CLONE_NEWPID;
    if ((flags & (CLONE_NEWNET | CLONE_NEWPID)) && support.user_namespace) flags |= CLONE_NEWUSER;
  }
  return flags;
}

}  // namespace

std::string FindProgram(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  for (const std::string& directory : SplitColonList(std::getenv("PATH"))) {
    const std::filesystem::path candidate = std::filesystem::path(directory) / name;
    if (access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return name;
}

StatusOr<LaunchedWorker> LaunchWorker(const WorkerLaunch& launch) {
  const SandboxPolicy* sandbox = launch.sandbox;
  const int flags = CloneFlags(sandbox, SandboxSupport::Get());

  // Everything the child uses is made here: between clone and exec it may
  // only make system calls (the host has other threads, holding locks).
  std::vector<std::string> argv_strings = launch.argv;
  std::vector<std::string> environment = launch.environment;
  const std::string path = FindProgram(argv_strings.at(0));
  std::vector<char*> argv, envp;
  for (std::string& arg : argv_strings) argv.push_back(arg.data());
  argv.push_back(nullptr);
  for (std::string& variable : environment) envp.push_back(variable.data());
  envp.push_back(nullptr);

  ChildPlan plan;
  plan.path = path.c_str();
  plan.argv = argv.data();
  plan.envp = envp.data();
  plan.sandbox = sandbox != nullptr;
  plan.user_namespace = (flags & CLONE_NEWUSER) != 0;
  plan.drop_capabilities = sandbox && geteuid() == 0 && !plan.user_namespace;
  if (sandbox) plan.max_file_bytes = static_cast<rlim_t>(sandbox->max_file_bytes);
  std::snprintf(plan.uid_map, sizeof(plan.uid_map), "%u %u 1", geteuid(), geteuid());
  std::snprintf(plan.gid_map, sizeof(plan.gid_map), "%u %u 1", getegid(), getegid());

  int error_pipe[2];
  if (pipe2(error_pipe, O_CLOEXEC) != 0) return Status(ErrorCode::kUnavailable, Errno("pipe"));
  // Every descriptor the child moves starts above every target, so no
  // dup2 overwrites a source still to be moved.
  std::vector<int> moved;
  auto above = [&](int fd) {
    const int copy = fcntl(fd, F_DUPFD_CLOEXEC, 64);
    moved.push_back(copy);
    return copy;
  };
  plan.error_pipe = above(error_pipe[1]);
  for (const auto& [source, target] : launch.fds) plan.fds.emplace_back(above(source), target);
  auto close_moved = [&] {
    for (int fd : moved) {
      if (fd >= 0) close(fd);
    }
    close(error_pipe[1]);
  };
  if (std::find(moved.begin(), moved.end(), -1) != moved.end()) {
    close_moved();
    close(error_pipe[0]);
    return Status(ErrorCode::kUnavailable, Errno("fcntl(F_DUPFD)"));
  }

  const long pid = syscall(SYS_clone, static_cast<unsigned long>(flags), nullptr, nullptr, nullptr, 0);
  if (pid == 0) RunChild(plan);
  const int clone_errno = errno;
  close_moved();
  if (pid < 0) {
    close(error_pipe[0]);
    return Status(ErrorCode::kUnavailable, std::string("clone: ") + std::strerror(clone_errno));
  }
  int codes[2] = {0, 0};
  ssize_t n;
  while ((n = read(error_pipe[0], codes, sizeof(codes))) < 0 && errno == EINTR) {
  }
  close(error_pipe[0]);
  if (n == static_cast<ssize_t>(sizeof(codes))) {  // the child failed before exec: it has exited
    int status = 0;
    while (waitpid(static_cast<pid_t>(pid), &status, 0) < 0 && errno == EINTR) {
    }
    const int step = codes[0] >= 1 && codes[0] <= kStepExec ? codes[0] : 0;
    return Status(ErrorCode::kUnavailable, std::string("cannot start the worker process '") + path + "' (" +
                                               kStepNames[step] + "): " + std::strerror(codes[1]));
  }
  return LaunchedWorker{static_cast<pid_t>(pid), (flags & CLONE_NEWPID) != 0};
}

}  // namespace umi
