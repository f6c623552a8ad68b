#include "runtime/python_plugin.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <msgpack.hpp>
#include <spdlog/spdlog.h>

#include <array>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>

#include "common/text.h"
#include "runtime/plugin_registry.h"
#include "runtime/worker_launch.h"

extern char** environ;

namespace umi {
namespace {

constexpr auto kDescribeTimeout = std::chrono::seconds(60);

std::string Interpreter() {
  const char* chosen = std::getenv("UMI_PYTHON");
  return chosen && *chosen ? chosen : "python3";
}

// The interpreter as a path, for messages: `python3` is whichever PATH
// finds first (pyenv, conda and venvs put their own there).
std::string InterpreterPath() { return FindProgram(Interpreter()); }

std::filesystem::path PackageDir() {
  std::error_code error;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", error);
  return (self.parent_path() / "../share/umi/python").lexically_normal();
}

std::string LastLine(const std::string& text) {
  const size_t end = text.find_last_not_of("\n");
  if (end == std::string::npos) return {};
  const size_t begin = text.rfind('\n', end);
  return text.substr(begin == std::string::npos ? 0 : begin + 1, end + 1 - (begin == std::string::npos ? 0 : begin + 1));
}

std::vector<char*> Pointers(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  for (std::string& s : strings) pointers.push_back(s.data());
  pointers.push_back(nullptr);
  return pointers;
}

}  // namespace

bool IsPythonPluginFile(const std::filesystem::path& path) {
  const std::string name = path.filename().string();
  return path.extension() == ".py" && !name.empty() && name[0] != '_';
}

std::vector<std::string> PythonWorkerArgv(const LoadedPlugin& plugin) {
  return {Interpreter(), "-m", "umi._worker", "--fd", "3", "--file", plugin.path.string(), "--source-fd",
          std::to_string(kPythonSourceFd)};
}

int PythonSourceFd(const std::string& source) {
  const int fd = memfd_create("umi-python-plugin", MFD_CLOEXEC);
  if (fd < 0) return -1;
  for (size_t written = 0; written < source.size();) {
    const ssize_t n = pwrite(fd, source.data() + written, source.size() - written, static_cast<off_t>(written));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      close(fd);
      return -1;
    }
    written += static_cast<size_t>(n);
  }
  return fd;
}

std::vector<std::string> PythonWorkerEnvironment(const LoadedPlugin& plugin) {
  std::map<std::string, std::string> overrides;
  const char* path = std::getenv("PYTHONPATH");
  overrides["PYTHONPATH"] = PackageDir().string() + (path && *path ? ":" + std::string(path) : "");
  overrides["PYTHONUNBUFFERED"] = "1";
  if (plugin.requirement.cpu_threads > 0) {
    for (const char* name : {"OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"}) {
      overrides[name] = std::to_string(plugin.requirement.cpu_threads);
    }
  }
  std::vector<std::string> environment;
  for (char** entry = environ; *entry; ++entry) {
    const std::string variable = *entry;
    if (!overrides.count(variable.substr(0, variable.find('=')))) environment.push_back(variable);
  }
  for (const auto& [name, value] : overrides) environment.push_back(name + "=" + value);
  return environment;
}

std::vector<std::filesystem::path> PythonReadPaths() {
  std::vector<std::filesystem::path> paths = {PackageDir()};
  std::error_code error;
  const std::filesystem::path interpreter = InterpreterPath();
  // <prefix>/bin/python3: the prefix holds its standard library; a venv's
  // python is a link into another prefix, and both are read.
  if (interpreter.is_absolute()) paths.push_back(interpreter.parent_path().parent_path());
  const std::filesystem::path real = std::filesystem::canonical(interpreter, error);
  if (!error) paths.push_back(real.parent_path().parent_path());
  for (const std::string& entry : SplitColonList(std::getenv("PYTHONPATH"))) paths.emplace_back(entry);
  return paths;
}

namespace {

// What `python3 -m umi._worker --describe` wrote, and whether it ran out of time.
struct DescribeRun {
  std::string out, err;
  bool timed_out = false;
};

// Runs the interpreter on the plugin's source (handed on a memfd) and reads
// what it writes, for at most kDescribeTimeout.
StatusOr<DescribeRun> RunDescribe(const std::filesystem::path& file, const std::string& source,
                                  const LoadedPlugin& plugin) {
  const int source_fd = PythonSourceFd(source);
  if (source_fd < 0) return Status(ErrorCode::kUnavailable, std::string("memfd_create: ") + std::strerror(errno));
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0) {
    close(source_fd);
    return Status(ErrorCode::kUnavailable, std::string("pipe: ") + std::strerror(errno));
  }
  if (pipe2(err, O_CLOEXEC) != 0) {
    close(source_fd);
    close(out[0]);
    close(out[1]);
    return Status(ErrorCode::kUnavailable, std::string("pipe: ") + std::strerror(errno));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err[1], 2);
  posix_spawn_file_actions_adddup2(&actions, source_fd, kPythonSourceFd);
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attributes, &none);
  posix_spawnattr_setsigdefault(&attributes, &all);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<std::string> args = {Interpreter(), "-m", "umi._worker", "--describe", file.string(), "--source-fd",
                                   std::to_string(kPythonSourceFd)};
  std::vector<std::string> environment = PythonWorkerEnvironment(plugin);
  std::vector<char*> argv = Pointers(args), envp = Pointers(environment);
  pid_t pid = -1;
  const int spawned = posix_spawnp(&pid, args[0].c_str(), &actions, &attributes, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  close(out[1]);
  close(err[1]);
  close(source_fd);
  if (spawned != 0) {
    close(out[0]);
    close(err[0]);
    return Status(ErrorCode::kUnavailable, "cannot start the Python interpreter '" + args[0] +
                                               "' (set UMI_PYTHON): " + std::strerror(spawned));
  }

  std::array<std::string, 2> read;  // stdout, stderr
  std::array<pollfd, 2> fds{{{out[0], POLLIN, 0}, {err[0], POLLIN, 0}}};
  const auto deadline = std::chrono::steady_clock::now() + kDescribeTimeout;
  bool timed_out = false;
  while (fds[0].fd >= 0 || fds[1].fd >= 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    if (poll(fds.data(), fds.size(), static_cast<int>(left.count())) < 0 && errno != EINTR) break;
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buffer[65536];
      const ssize_t n = ::read(fds[i].fd, buffer, sizeof(buffer));
      if (n > 0) {
        read[i].append(buffer, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
      }
    }
  }
  for (const pollfd& fd : fds) {
    if (fd.fd >= 0) close(fd.fd);
  }
  if (timed_out) kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return DescribeRun{std::move(read[0]), std::move(read[1]), timed_out};
}

// The descriptor's fields into `plugin`; an error says what could not be read.
Status ReadDescriptor(const std::string& bytes, LoadedPlugin& plugin) {
  try {
    const msgpack::object_handle handle = msgpack::unpack(bytes.data(), bytes.size());
    const auto fields = handle.get().as<std::map<std::string, msgpack::object>>();
    if (!fields.at("ok").as<bool>()) return Status(ErrorCode::kUnavailable, fields.at("reason").as<std::string>());
    plugin.name = fields.at("name").as<std::string>();
    plugin.version = fields.at("version").as<std::string>();
    plugin.description = fields.at("description").as<std::string>();
    plugin.license = fields.at("license").as<std::string>();
    plugin.declared_task_group = fields.at("task_group").as<std::string>();
    const auto requirement = fields.at("requirement").as<std::map<std::string, msgpack::object>>();
    plugin.declared.cpu_cores = Quantity::FromDouble(requirement.at("cpu_cores").as<double>());
    plugin.declared.cpu_threads = requirement.at("cpu_threads").as<int>();
    plugin.declared.gpu_count = Quantity::FromDouble(requirement.at("gpu_count").as<double>());
    plugin.declared.memory_mb = requirement.at("memory_mb").as<int64_t>();
    plugin.declared.exclusive_gpu = requirement.at("exclusive_gpu").as<bool>();
    if (const auto settings = fields.find("settings"); settings != fields.end()) {
      for (const auto& setting : settings->second.as<std::vector<std::map<std::string, std::string>>>()) {
        plugin.settings.push_back({setting.at("name"), setting.at("type"), setting.at("description")});
      }
    }
    if (const auto sandbox = fields.find("sandbox"); sandbox != fields.end()) {
      const auto needs = sandbox->second.as<std::map<std::string, msgpack::object>>();
      plugin.sandbox_needs.exec = needs.at("exec").as<bool>();
      plugin.sandbox_needs.network = needs.at("network").as<bool>();
      plugin.sandbox_needs.required = needs.at("required").as<bool>();
      for (const std::string& path : needs.at("read").as<std::vector<std::string>>()) plugin.sandbox_needs.read.emplace_back(path);
    }
  } catch (const std::exception& e) {
    return Status(ErrorCode::kUnavailable, std::string("the descriptor could not be read: ") + e.what());
  }
  return {};
}

}  // namespace

Status DescribePythonPlugin(const std::filesystem::path& file, LoadedPlugin& plugin) {
  // The code is read once, here: what is described is what the workers run.
  std::ifstream in(file, std::ios::binary);
  std::string source((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) return Status(ErrorCode::kUnavailable, "cannot read it");
  plugin.path = file;
  StatusOr<DescribeRun> ran = RunDescribe(file, source, plugin);
  if (!ran.ok()) return ran.status();
  const auto& [out, err, timed_out] = ran.value();
  if (!err.empty()) spdlog::debug("python plugin {}: the interpreter wrote: {}", file.string(), err);
  if (timed_out) {
    return Status(ErrorCode::kUnavailable, "importing it took over " + std::to_string(kDescribeTimeout.count()) + " s");
  }
  if (out.empty()) {
    const std::string tail = LastLine(err);
    if (tail.rfind("ModuleNotFoundError", 0) == 0) {  // an interpreter without what the worker needs
      return Status(ErrorCode::kUnavailable,
                    "the Python interpreter " + InterpreterPath() + " cannot run plugins: " + tail +
                        "; install it for that interpreter, or set UMI_PYTHON to one that has it (Debian: "
                        "/usr/bin/python3 with python3-msgpack)");
    }
    return Status(ErrorCode::kUnavailable, "the Python interpreter " + InterpreterPath() + " gave no descriptor" +
                                               (tail.empty() ? "" : ": " + tail) +
                                               " (is the umi package at " + PackageDir().string() + "?)");
  }
  if (Status read = ReadDescriptor(out, plugin); !read.ok()) return read;
  plugin.kind = plugin.declared.gpu_count.units() > 0 ? UMI_PLUGIN_KIND_GPU : UMI_PLUGIN_KIND_CPU;
  plugin.python = true;
  plugin.python_source = std::move(source);
  return {};
}

}  // namespace umi
