#include "runtime/sandbox.h"

#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <msgpack.hpp>

#include <cerrno>
#include <cstring>
#include <glob.h>
#include <algorithm>
#include <map>
#include <sys/stat.h>

#include "common/text.h"
#include "runtime/plugin_registry.h"
#include "runtime/python_plugin.h"

extern char** environ;

namespace umi {
namespace {

// Landlock's ABI, spelled out: Debian 12's kernel headers stop at ABI 2,
// the kernels it runs on go further.
constexpr uint64_t kFsExecute = 1ULL << 0, kFsWriteFile = 1ULL << 1, kFsReadFile = 1ULL << 2,
                   kFsReadDir = 1ULL << 3, kFsRemoveDir = 1ULL << 4, kFsRemoveFile = 1ULL << 5,
                   kFsMakeChar = 1ULL << 6, kFsMakeDir = 1ULL << 7, kFsMakeReg = 1ULL << 8, kFsMakeSock = 1ULL << 9,
                   kFsMakeFifo = 1ULL << 10, kFsMakeBlock = 1ULL << 11, kFsMakeSym = 1ULL << 12,
                   kFsRefer = 1ULL << 13,     // ABI 2
                   kFsTruncate = 1ULL << 14,  // ABI 3
                   kFsIoctlDev = 1ULL << 15;  // ABI 5
constexpr uint64_t kNetBindTcp = 1ULL << 0, kNetConnectTcp = 1ULL << 1;          // ABI 4
constexpr uint64_t kScopeAbstractUnixSocket = 1ULL << 0, kScopeSignal = 1ULL << 1;  // ABI 6
// What a rule on a file (not a directory) may grant.
constexpr uint64_t kFileRights = kFsExecute | kFsWriteFile | kFsReadFile | kFsTruncate | kFsIoctlDev;
constexpr int kRulePathBeneath = 1;
constexpr unsigned kCreateRulesetVersion = 1U << 0;

struct RulesetAttr {
  uint64_t handled_access_fs = 0;
  uint64_t handled_access_net = 0;  // ABI 4
  uint64_t scoped = 0;              // ABI 6
};
struct __attribute__((packed)) PathBeneathAttr {
  uint64_t allowed_access;
  int32_t parent_fd;
};

uint64_t HandledFs(int abi) {
  uint64_t handled = (kFsMakeSym << 1) - 1;  // ABI 1: execute .. make_sym
  if (abi >= 2) handled |= kFsRefer;
  if (abi >= 3) handled |= kFsTruncate;
  if (abi >= 5) handled |= kFsIoctlDev;
  return handled;
}

// Files a program reads to start and run, beyond its own: the loader's
// cache, shared libraries, time zone, CPU count; devices every program uses.
const char* const kSystemReadPaths[] = {"/usr", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin",
                                        "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d",
                                        "/etc/localtime", "/etc/ssl/openssl.cnf", "/sys/devices/system/cpu"};
const char* const kSystemDevices[] = {"/dev/null", "/dev/zero", "/dev/urandom", "/dev/random", "/dev/full"};

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

// Reads every msgpack string of settings[key] (a string or a list of them).
std::vector<std::filesystem::path> SettingPaths(const std::string& settings_msgpack, const char* key) {
  std::vector<std::filesystem::path> paths;
  try {
    const msgpack::object_handle handle = msgpack::unpack(settings_msgpack.data(), settings_msgpack.size());
    const msgpack::object& map = handle.get();
    if (map.type != msgpack::type::MAP) return paths;
    for (const msgpack::object_kv& entry : map.via.map) {
      if (entry.key.type != msgpack::type::STR || entry.key.as<std::string>() != key) continue;
      if (entry.val.type == msgpack::type::STR) paths.emplace_back(entry.val.as<std::string>());
      if (entry.val.type == msgpack::type::ARRAY) {
        for (const msgpack::object& item : entry.val.via.array) {
          if (item.type == msgpack::type::STR) paths.emplace_back(item.as<std::string>());
        }
      }
    }
  } catch (const std::exception&) {  // the plugin reports its own bad settings
  }
  return paths;
}

bool ProbeNamespaces(int flags) {
  // In a child: unshare changes the caller, and the host must stay as it is.
  const pid_t pid = fork();
  if (pid == 0) _exit(unshare(flags) == 0 ? 0 : 1);
  if (pid < 0) return false;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// The SIGSYS handler's hook (one per process: the worker's).
void (*g_on_denied)(int) = nullptr;

void OnSigsys(int, siginfo_t* info, void*) {
  if (g_on_denied) g_on_denied(info->si_syscall);
  _exit(128 + SIGSYS);  // not raise(): a worker that is pid 1 of its namespace ignores its own signals
}

}  // namespace

const SandboxSupport& SandboxSupport::Get() {
  static const SandboxSupport support = [] {
    SandboxSupport probed;
    const long abi = syscall(SYS_landlock_create_ruleset, nullptr, 0, kCreateRulesetVersion);
    probed.landlock_abi = abi > 0 ? static_cast<int>(abi) : 0;
    probed.seccomp = prctl(PR_GET_SECCOMP, 0, 0, 0, 0) >= 0 && seccomp_api_get() >= 1;
    probed.user_namespace = geteuid() != 0;
    const int user = probed.user_namespace ? CLONE_NEWUSER : 0;
    probed.network_namespace = ProbeNamespaces(user | CLONE_NEWNET);
    probed.pid_namespace = ProbeNamespaces(user | CLONE_NEWPID);
    return probed;
  }();
  return support;
}

std::vector<std::pair<std::string, bool>> SandboxSupport::Mechanisms() const {
  return {{"landlock_files", landlock_abi >= 1},   {"landlock_tcp", landlock_abi >= 4},
          {"landlock_signals", landlock_abi >= 6}, {"seccomp", seccomp},
          {"network_namespace", network_namespace}, {"pid_namespace", pid_namespace}};
}

std::string SandboxSupport::Summary() const {
  std::string offered, lacking;
  for (const auto& [name, available] : Mechanisms()) (available ? offered : lacking) += " " + name;
  std::string summary = "Landlock ABI " + std::to_string(landlock_abi) + "; offered:" + (offered.empty() ? " none" : offered);
  if (!lacking.empty()) summary += "; lacking:" + lacking;
  return summary;
}

std::optional<SandboxPolicy> MakeSandboxPolicy(const SandboxConfig& config, const std::string& settings_msgpack,
                                               const LoadedPlugin& plugin) {
  if (!config.enabled) return std::nullopt;
  SandboxPolicy policy;
  policy.required = config.required || plugin.sandbox_needs.required;
  // What the plugin declares, and what the operator's YAML adds.
  policy.exec = config.exec || plugin.sandbox_needs.exec;
  policy.network = config.network || plugin.sandbox_needs.network;
  policy.max_file_bytes = config.max_file_mb << 20;
  std::error_code error;
  for (const char* path : kSystemReadPaths) {
    if (std::filesystem::exists(path, error)) policy.read.emplace_back(path);
  }
  policy.read.push_back(plugin.path.parent_path());  // its library (and what it links beside it), its helpers
  for (const std::string& path : SplitColonList(std::getenv("LD_LIBRARY_PATH"))) policy.read.emplace_back(path);
  if (plugin.python) {
    for (const std::filesystem::path& path : PythonReadPaths()) policy.read.push_back(path);
  }
  // A data directory not made yet grants nothing (the plugin refuses its paths, naming it).
  for (const std::filesystem::path& path : SettingPaths(settings_msgpack, "media_roots")) {
    if (std::filesystem::exists(path, error)) policy.read.push_back(path);
  }
  policy.read.insert(policy.read.end(), plugin.sandbox_needs.read.begin(), plugin.sandbox_needs.read.end());
  policy.read.insert(policy.read.end(), config.read.begin(), config.read.end());
  for (const std::filesystem::path& path : SettingPaths(settings_msgpack, "output_root")) {
    if (std::filesystem::exists(path, error)) policy.write.push_back(path);
  }
  policy.write.insert(policy.write.end(), config.write.begin(), config.write.end());
  for (const char* path : kSystemDevices) {
    if (std::filesystem::exists(path, error)) policy.devices.emplace_back(path);
  }
  if (plugin.requirement.uses_gpu()) {
    // CUDA: its device nodes, and what the driver reads about them.
    glob_t found{};
    if (glob("/dev/nvidia*", 0, nullptr, &found) == 0) {
      for (size_t i = 0; i < found.gl_pathc; ++i) policy.devices.emplace_back(found.gl_pathv[i]);
    }
    globfree(&found);
    for (const char* path : {"/proc/driver/nvidia", "/sys/bus/pci", "/sys/devices"}) {
      if (std::filesystem::exists(path, error)) policy.read.emplace_back(path);
    }
  }
  return policy;
}

std::vector<std::string> MissingMechanisms(const SandboxPolicy& policy, const SandboxSupport& support) {
  std::vector<std::string> missing;
  if (support.landlock_abi < 1) missing.push_back("landlock_files");
  if (!policy.network && support.landlock_abi < 4) missing.push_back("landlock_tcp");
  if (support.landlock_abi < 6) missing.push_back("landlock_signals");
  if (!support.seccomp) missing.push_back("seccomp");
  if (!policy.network && !support.network_namespace) missing.push_back("network_namespace");
  if (policy.exec && !support.pid_namespace) missing.push_back("pid_namespace");
  return missing;
}

StatusOr<int> MakeLandlockRuleset(const SandboxPolicy& policy) {
  const int abi = SandboxSupport::Get().landlock_abi;
  if (abi < 1) return -1;
  RulesetAttr attributes;
  attributes.handled_access_fs = HandledFs(abi);
  if (abi >= 4 && !policy.network) attributes.handled_access_net = kNetBindTcp | kNetConnectTcp;
  if (abi >= 6) attributes.scoped = kScopeAbstractUnixSocket | kScopeSignal;
  const size_t size = abi >= 6 ? sizeof(RulesetAttr) : abi >= 4 ? 2 * sizeof(uint64_t) : sizeof(uint64_t);
  const int ruleset = static_cast<int>(syscall(SYS_landlock_create_ruleset, &attributes, size, 0));
  if (ruleset < 0) return Status(ErrorCode::kUnavailable, Errno("landlock_create_ruleset"));
  const uint64_t handled = attributes.handled_access_fs;
  const uint64_t exec = policy.exec ? kFsExecute : 0;
  auto allow = [&](const std::filesystem::path& path, uint64_t rights) -> Status {
    const int fd = open(path.c_str(), O_PATH | O_CLOEXEC);
    if (fd < 0) return Status(ErrorCode::kInvalidConfig, Errno("sandbox: cannot open '" + path.string() + "'"));
    struct stat info {};
    fstat(fd, &info);
    PathBeneathAttr rule{rights & handled & (S_ISDIR(info.st_mode) ? ~uint64_t{0} : kFileRights), fd};
    const long added = rule.allowed_access ? syscall(SYS_landlock_add_rule, ruleset, kRulePathBeneath, &rule, 0) : 0;
    const int add_errno = errno;
    close(fd);
    if (added != 0) {
      errno = add_errno;
      return Status(ErrorCode::kInvalidConfig, Errno("sandbox: cannot allow '" + path.string() + "'"));
    }
    return {};
  };
  const uint64_t read = kFsReadFile | kFsReadDir | exec;
  const uint64_t write = read | kFsWriteFile | kFsRemoveDir | kFsRemoveFile | kFsMakeDir | kFsMakeReg |
                         kFsMakeSym | kFsMakeFifo | kFsRefer | kFsTruncate;
  const uint64_t device = kFsReadFile | kFsWriteFile | kFsIoctlDev;
  std::vector<std::pair<const std::vector<std::filesystem::path>*, uint64_t>> grants = {
      {&policy.read, read}, {&policy.write, write}, {&policy.devices, device}};
  for (const auto& [paths, rights] : grants) {
    for (const std::filesystem::path& path : *paths) {
      if (Status allowed = allow(path, rights); !allowed.ok()) {
        close(ruleset);
        return allowed;
      }
    }
  }
  (void)kFsMakeChar, (void)kFsMakeSock, (void)kFsMakeBlock;  // never granted: devices, sockets
  return ruleset;
}

StatusOr<std::string> MakeSandboxFrame(const SandboxPolicy& policy, bool has_ruleset, pid_t self) {
  std::string program;
  if (SandboxSupport::Get().seccomp) {
    scmp_filter_ctx filter = seccomp_init(SCMP_ACT_ALLOW);
    if (!filter) return Status(ErrorCode::kUnavailable, "seccomp_init failed");
    // A binary tree of system call numbers, not a list: every allowed call
    // (most of them) passes a few comparisons instead of one per rule.
    int failed = seccomp_attr_set(filter, SCMP_FLTATR_CTL_OPTIMIZE, 2);
    auto deny = [&](const char* name, unsigned count = 0, scmp_arg_cmp condition = {}) {
      const int number = seccomp_syscall_resolve_name(name);
      if (number == __NR_SCMP_ERROR) return;  // not on this architecture
      const int added = count ? seccomp_rule_add(filter, SCMP_ACT_TRAP, number, 1, condition)
                              : seccomp_rule_add(filter, SCMP_ACT_TRAP, number, 0);
      if (added != 0) failed = added;
    };
    for (const char* name :
         {"ptrace", "process_vm_readv", "process_vm_writev", "mount", "umount2", "pivot_root", "chroot",
          "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr", "bpf",
          "perf_event_open", "keyctl", "add_key", "request_key", "kexec_load", "kexec_file_load", "init_module",
          "finit_module", "delete_module", "setns", "unshare", "reboot", "swapon", "swapoff", "acct", "iopl",
          "ioperm", "userfaultfd", "pidfd_getfd", "pidfd_send_signal", "open_by_handle_at", "name_to_handle_at",
          "quotactl", "setsid", "setpgid", "syslog", "settimeofday", "clock_settime", "adjtimex", "sethostname",
          "setdomainname", "vhangup", "tkill",
          // io_uring runs socket, open and connect operations no filter sees;
          // these reach other processes' memory and scheduling.
          "io_uring_setup", "io_uring_enter", "io_uring_register", "process_madvise", "kcmp", "move_pages",
          "migrate_pages"}) {
      deny(name);
    }
    // Typing into the host's terminal.
    deny("ioctl", 1, SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCSTI));
    if (!policy.network) {
      deny("socket");
      deny("socketpair");
    }
    // clone3 hides its flags in memory a filter cannot read: "not here"
    // makes glibc fall back to clone, whose flags it can.
    if (const int clone3 = seccomp_syscall_resolve_name("clone3"); clone3 != __NR_SCMP_ERROR) {
      if (const int added = seccomp_rule_add(filter, SCMP_ACT_ERRNO(ENOSYS), clone3, 0); added != 0) failed = added;
    }
    if (!policy.exec) {
      for (const char* name : {"execve", "execveat", "fork", "vfork"}) deny(name);
      deny("clone", 1, SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, 0));  // threads, not processes
    }
    if (self != 1) {  // in its own pid namespace a worker reaches only its own processes
      for (const char* name : {"kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo"}) {
        deny(name, 1, SCMP_A0(SCMP_CMP_NE, static_cast<scmp_datum_t>(self)));
      }
    }
    const int memory = memfd_create("umi-seccomp", MFD_CLOEXEC);
    if (failed == 0 && memory >= 0) failed = seccomp_export_bpf(filter, memory);
    seccomp_release(filter);
    if (memory < 0) return Status(ErrorCode::kUnavailable, Errno("memfd_create"));
    const off_t size = lseek(memory, 0, SEEK_END);
    program.resize(size > 0 ? static_cast<size_t>(size) : 0);
    const bool read_back = failed == 0 && pread(memory, program.data(), program.size(), 0) == size;
    close(memory);
    if (!read_back) {
      return Status(ErrorCode::kUnavailable, "cannot build the seccomp filter: " + std::string(std::strerror(-failed)));
    }
  }
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  packer.pack_map(3);
  packer.pack("landlock").pack(has_ruleset);
  packer.pack("seccomp").pack_bin(static_cast<uint32_t>(program.size()));
  packer.pack_bin_body(program.data(), static_cast<uint32_t>(program.size()));
  packer.pack("reap").pack(self == 1);
  return std::string(buffer.data(), buffer.size());
}

std::string SystemCallName(int number) {
  char* name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, number);
  std::string resolved = name ? name : "system call " + std::to_string(number);
  free(name);
  return resolved;
}

Status EnterSandbox(const std::string& frame, void (*on_denied)(int number), bool* reap_after_each_task) {
  bool landlock = false;
  std::string program;
  try {
    const msgpack::object_handle handle = msgpack::unpack(frame.data(), frame.size());
    const auto fields = handle.get().as<std::map<std::string, msgpack::object>>();
    landlock = fields.at("landlock").as<bool>();
    const msgpack::object& bpf = fields.at("seccomp");
    program.assign(bpf.via.bin.ptr, bpf.via.bin.size);
    *reap_after_each_task = fields.at("reap").as<bool>();
  } catch (const std::exception& e) {
    return Status(ErrorCode::kInternal, std::string("a bad sandbox frame: ") + e.what());
  }
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return Status(ErrorCode::kUnavailable, Errno("no_new_privs"));
  if (landlock) {
    // Its own /proc entry (its memory size, for the memory limit): only the
    // worker can name it, so the worker adds the rule.
    const int own = open("/proc/self", O_PATH | O_CLOEXEC);
    PathBeneathAttr rule{kFsReadFile | kFsReadDir, own};
    if (own < 0 || syscall(SYS_landlock_add_rule, kSandboxRulesetFd, kRulePathBeneath, &rule, 0) != 0) {
      return Status(ErrorCode::kUnavailable, Errno("landlock_add_rule(/proc/self)"));
    }
    close(own);
    if (syscall(SYS_landlock_restrict_self, kSandboxRulesetFd, 0) != 0) {
      return Status(ErrorCode::kUnavailable, Errno("landlock_restrict_self"));
    }
    close(kSandboxRulesetFd);
  }
  if (!program.empty()) {
    g_on_denied = on_denied;
    struct sigaction action {};
    action.sa_sigaction = OnSigsys;
    action.sa_flags = SA_SIGINFO;
    sigaction(SIGSYS, &action, nullptr);
    sock_fprog filter{static_cast<unsigned short>(program.size() / sizeof(sock_filter)),
                      reinterpret_cast<sock_filter*>(program.data())};
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &filter, 0, 0) != 0) {
      return Status(ErrorCode::kUnavailable, Errno("seccomp"));
    }
  }
  return {};
}

}  // namespace umi
