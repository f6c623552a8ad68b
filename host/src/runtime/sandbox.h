// Sandbox: the OS confinement of a plugin's worker process (process_pool.h),
// so that a plugin taken over by a hostile file can touch nothing but its
// own task. On by default for every isolated plugin (C++ `isolation:
// process` and every Python plugin); `plugins.<name>.sandbox: false` turns
// it off, `sandbox: {read, write, exec, network}` grants more.
//
//   | mechanism                   | what it stops                                   | applied                       |
//   |-----------------------------|-------------------------------------------------|-------------------------------|
//   | Landlock (ABI 1+)           | reading beyond the media roots and libraries,   | ruleset made by the host, on  |
//   |                             | writing beyond the output root and a private    | fd kSandboxRulesetFd; entered |
//   |                             | temp dir, exec (ABI 4: TCP; ABI 6: signals and  | by the worker before the      |
//   |                             | abstract sockets outside the sandbox)           | plugin is loaded              |
//   | seccomp-bpf (libseccomp)    | sockets, ptrace, process_vm_*, mount, bpf,      | program made by the host, in  |
//   |                             | perf_event_open, keyctl, kexec, modules,        | the kSandbox frame; loaded by |
//   |                             | namespaces, io_uring, fork and exec (unless     | the worker with the ruleset   |
//   |                             | declared),                                      |                               |
//   |                             | signals to other processes, TIOCSTI             |                               |
//   | network namespace           | any network: the worker's is empty              | at clone                      |
//   | pid namespace (exec plugins)| a process outliving its task (killed after it)  | at clone                      |
//   | no_new_privs, no capability | privileges (setuid binaries, root's caps)       | between clone and exec        |
//   | RLIMIT_FSIZE/CORE (/NPROC)  | huge files, core dumps (fork bombs)             | between clone and exec        |
//
// A denied system call kills the worker with SIGSYS: the task ends
// `crashed` with the call's name; a denied file is EACCES to the plugin.
// What this kernel lacks is reported at start (log, /readyz,
// `plugins --json`, umi_sandbox_mechanism) and never skipped silently; a
// plugin configured `sandbox: {required: true}` refuses to run without all.
//
// Thread safety: SandboxSupport::Get is thread-safe; the functions are
// reentrant. SpawnWorkerProcess may be called from any thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/status_or.h"
#include "config/hardware_config.h"

namespace umi {

struct LoadedPlugin;

// The worker finds its Landlock ruleset on this descriptor.
inline constexpr int kSandboxRulesetFd = 5;

// What this kernel offers, probed once.
struct SandboxSupport {
  int landlock_abi = 0;  // 0: none
  bool seccomp = false;
  bool network_namespace = false;
  bool pid_namespace = false;
  bool user_namespace = false;  // namespaces come with a user namespace (not root)

  static const SandboxSupport& Get();
  // Each mechanism and whether this kernel offers it, in a fixed order.
  std::vector<std::pair<std::string, bool>> Mechanisms() const;
  std::string Summary() const;  // one line for the log
};

// What one plugin's workers may do.
struct SandboxPolicy {
  bool required = false;
  std::vector<std::filesystem::path> read;     // read and list
  std::vector<std::filesystem::path> write;    // read, write, create, remove
  std::vector<std::filesystem::path> devices;  // read, write, ioctl (GPU device nodes)
  bool exec = false;
  bool network = false;
  int64_t max_file_bytes = 0;
  friend bool operator==(const SandboxPolicy&, const SandboxPolicy&) = default;
};

// The policy of `plugin`'s workers, or none (`sandbox: false`): the
// config's read and write, the settings' media_roots (read) and output_root
// (write), the libraries and interpreter it runs on (read), and the GPU
// device nodes when it asks for a GPU.
std::optional<SandboxPolicy> MakeSandboxPolicy(const SandboxConfig& config, const std::string& settings_msgpack,
                                               const LoadedPlugin& plugin);

// What `policy` would use that `support` lacks; empty when nothing.
std::vector<std::string> MissingMechanisms(const SandboxPolicy& policy, const SandboxSupport& support);

// ---- the host's side (worker_launch.h starts the process) ----

// A Landlock ruleset (close-on-exec) for `policy`; -1 where Landlock is
// not offered; kInvalidConfig when a path of the policy cannot be opened.
StatusOr<int> MakeLandlockRuleset(const SandboxPolicy& policy);

// The kSandbox frame's payload for a worker that sees itself as `self`.
StatusOr<std::string> MakeSandboxFrame(const SandboxPolicy& policy, bool has_ruleset, pid_t self);

// The name of system call `number` (for a worker's SIGSYS report).
std::string SystemCallName(int number);

// ---- the worker's side ----

// Enters the sandbox the frame describes (before the plugin is loaded). A
// call the sandbox denies then raises SIGSYS; `on_denied` runs in its
// handler (async-signal-safe only) with the call's number, then the worker
// exits. `reap_after_each_task`: the worker is pid 1 of its own namespace
// and kills what each task left running.
Status EnterSandbox(const std::string& frame, void (*on_denied)(int number), bool* reap_after_each_task);

}  // namespace umi
