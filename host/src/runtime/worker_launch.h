// LaunchWorker: starts a worker process (process_pool.h) with clone() and
// execve, in its own process group, with the descriptors it is given; with
// a sandbox (sandbox.h), in fresh namespaces (an empty network; its own
// pids when it may start processes; a user namespace when the host is not
// root), with no_new_privs, no capabilities and the sandbox's rlimits.
// Between clone and exec the child makes system calls only: the host has
// other threads, which may hold locks.
//
// Thread safety: reentrant; may be called from any thread.
#pragma once

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

#include "common/status_or.h"
#include "runtime/sandbox.h"

namespace umi {

struct WorkerLaunch {
  std::vector<std::string> argv;  // argv[0] is looked up in PATH
  std::vector<std::string> environment;
  std::vector<std::pair<int, int>> fds;  // (host descriptor, descriptor in the worker)
  const SandboxPolicy* sandbox = nullptr;
};
struct LaunchedWorker {
  pid_t pid = -1;
  bool own_pid_namespace = false;  // it is pid 1 of its own namespace
};
// `name` as PATH finds it (itself when it holds a '/' or is not found).
std::string FindProgram(const std::string& name);

// Starts the worker in its own process group; with a sandbox, in fresh
// namespaces, with no_new_privs, no capabilities and the sandbox's rlimits.
StatusOr<LaunchedWorker> LaunchWorker(const WorkerLaunch& launch);

}  // namespace umi
