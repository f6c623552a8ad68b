// evil: does what code would do once a hostile file has taken over a
// plugin, one escape per task, for the sandbox tests (sandbox_e2e_test.cc).
//   input.attempt:
//     read {path}            open and read a file; output.data
//     write {path}           create a file and write to it
//     connect {port}         a TCP connection to 127.0.0.1:port
//     exec                   execve /bin/sh in place of the worker
//     spawn                  fork, exec /bin/true, wait; output.exit_code
//     fork_bomb {count}      fork `count` children (they wait, then die)
//     leave_child {mark}     start `sleep 30` (environment UMI_TEST_MARK=mark), return at once
//     signal {pid, signal}   kill(pid, signal)
//     ptrace {pid}           PTRACE_ATTACH to pid
//     big_write {path, mb}   write `mb` MiB to a file
//     io_uring               set up an io_uring (its operations pass no system call filter)
// A path starting $TMPDIR is in the worker's temp dir.
// An escape that works answers ok; one the kernel refuses with an errno
// answers error `denied` with it; a system call the sandbox stops ends
// the task `crashed`.
#include <umi/plugin.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

[[noreturn]] void Denied(const std::string& what) { throw umi::Error("denied", what + ": " + std::strerror(errno)); }

}  // namespace

class Evil : public umi::Plugin {
 public:
  static umi::PluginInfo Info() {
    umi::PluginInfo info;
#ifdef UMI_EVIL_DECLARES_EXEC  // evil_exec: the same, declaring that it starts processes and needs its sandbox
    info.name = "evil_exec";
    info.sandbox.exec = true;
    info.sandbox.required = true;
#else
    info.name = "evil";
#endif
    info.version = "1.0.0";
    info.description = "Tries to escape its sandbox, as asked";
    info.requirement = {.cpu_cores = 0.5, .cpu_threads = 1, .memory_mb = 64};
    info.settings = {{"media_roots", "list of directories", "what its sandbox lets it read"},
                     {"output_root", "directory", "where its sandbox lets it write"}};
    return info;
  }

  explicit Evil(const umi::Settings&) {}

  void Process(umi::TaskContext& task) override {
    const std::string attempt = task.input().Get<std::string>("attempt", "");
    std::string path = task.input().Get<std::string>("path", "");
    if (path.rfind("$TMPDIR", 0) == 0) path = std::string(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp") + path.substr(7);
    if (attempt == "read") {
      const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) Denied("open " + path);
      char buffer[4096];
      const ssize_t n = read(fd, buffer, sizeof(buffer));
      close(fd);
      if (n < 0) Denied("read " + path);
      task.output().Set("data", std::string(buffer, static_cast<size_t>(n)));
    } else if (attempt == "write") {
      const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (fd < 0) Denied("create " + path);
      const bool written = write(fd, "pwned", 5) == 5;
      close(fd);
      if (!written) Denied("write " + path);
    } else if (attempt == "connect") {
      const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0) Denied("socket");
      sockaddr_in address{};
      address.sin_family = AF_INET;
      address.sin_port = htons(static_cast<uint16_t>(task.input().Get<int64_t>("port", 0)));
      address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      const int connected = connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
      const int error = errno;
      close(fd);
      errno = error;
      if (connected != 0) Denied("connect");
    } else if (attempt == "exec") {
      execl("/bin/sh", "sh", "-c", "exit 0", static_cast<char*>(nullptr));
      Denied("execve /bin/sh");
    } else if (attempt == "spawn") {
      const pid_t child = fork();
      if (child < 0) Denied("fork");
      if (child == 0) {
        execl("/bin/true", "true", static_cast<char*>(nullptr));
        _exit(127);
      }
      int status = 0;
      waitpid(child, &status, 0);
      task.output().Set("exit_code", static_cast<int64_t>(WIFEXITED(status) ? WEXITSTATUS(status) : -1));
    } else if (attempt == "fork_bomb") {
      const int64_t count = task.input().Get<int64_t>("count", 10000);
      std::vector<pid_t> children;
      for (int64_t i = 0; i < count; ++i) {
        const pid_t child = fork();
        if (child == 0) {
          pause();
          _exit(0);
        }
        if (child < 0) break;
        children.push_back(child);
      }
      for (pid_t child : children) kill(child, SIGKILL);
      for (pid_t child : children) waitpid(child, nullptr, 0);
      task.output().Set("forked", static_cast<int64_t>(children.size()));
    } else if (attempt == "leave_child") {
      const std::string mark = "UMI_TEST_MARK=" + task.input().Get<std::string>("mark", "");
      int started[2];  // closed by the child's exec: then its mark is in its environment
      if (pipe2(started, O_CLOEXEC) != 0) Denied("pipe");
      const pid_t child = fork();
      if (child < 0) Denied("fork");
      if (child == 0) {
        char* const argv[] = {const_cast<char*>("sleep"), const_cast<char*>("30"), nullptr};
        char* const envp[] = {const_cast<char*>(mark.c_str()), nullptr};
        execve("/bin/sleep", argv, envp);
        _exit(127);
      }
      close(started[1]);
      char byte;
      while (read(started[0], &byte, 1) < 0 && errno == EINTR) {
      }
      close(started[0]);
    } else if (attempt == "signal") {
      const pid_t target = static_cast<pid_t>(task.input().Get<int64_t>("pid", 0));
      if (kill(target, static_cast<int>(task.input().Get<int64_t>("signal", SIGSTOP))) != 0) Denied("kill");
    } else if (attempt == "ptrace") {
      const pid_t target = static_cast<pid_t>(task.input().Get<int64_t>("pid", 0));
      if (ptrace(PTRACE_ATTACH, target, nullptr, nullptr) != 0) Denied("ptrace");
      ptrace(PTRACE_DETACH, target, nullptr, nullptr);
    } else if (attempt == "io_uring") {
      char params[120] = {};  // struct io_uring_params
      const long ring = syscall(SYS_io_uring_setup, 4, params);
      if (ring < 0) Denied("io_uring_setup");
      close(static_cast<int>(ring));
    } else if (attempt == "big_write") {
      const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (fd < 0) Denied("create " + path);
      const std::string block(1 << 20, 'x');
      const int64_t mb = task.input().Get<int64_t>("mb", 10240);
      for (int64_t i = 0; i < mb; ++i) {
        if (write(fd, block.data(), block.size()) != static_cast<ssize_t>(block.size())) {
          close(fd);
          Denied("write " + path + " after " + std::to_string(i) + " MiB");
        }
      }
      close(fd);
    } else {
      throw umi::Error("bad_input", "unknown attempt '" + attempt + "'");
    }
  }
};

UMI_DECLARE_PLUGIN(Evil)
