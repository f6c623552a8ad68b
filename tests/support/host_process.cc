#include "host_process.h"

#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <stdexcept>

extern char** environ;

namespace umi::testing {

pid_t Spawn(std::vector<std::string> args, int* stdout_fd, bool merge_stderr) {
  std::vector<char*> argv;
  for (auto& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  int out[2];
  if (pipe(out) != 0) throw std::runtime_error("pipe failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  if (merge_stderr) posix_spawn_file_actions_adddup2(&actions, out[1], STDERR_FILENO);
  posix_spawn_file_actions_addclose(&actions, out[0]);
  pid_t pid = -1;
  const int spawned = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(out[1]);
  if (spawned != 0) {
    close(out[0]);
    throw std::runtime_error("cannot start " + args[0]);
  }
  *stdout_fd = out[0];
  return pid;
}

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "umi-test-XXXXXX").string();
  if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

std::filesystem::path TempDir::Write(const std::string& name, const std::string& contents) const {
  const auto file = path_ / name;
  std::ofstream(file) << contents;
  return file;
}

std::string TestConfigYaml(const std::string& extra) {
  return R"(hardware:
  cpu: {cores: 24, threads: 48, max_concurrent_tasks: 8}
  gpu: {count: 1, model: "test GPU", memory_gb: 24}
  memory: {total_gb: 128}
task_groups:
  cpu_task: {threads: 4, memory_mb: 4096, max_instances: 8, cpu_cores: 2.0}
  gpu_task: {threads: 2, memory_mb: 2048, max_instances: 4, cpu_cores: 1.0}
shutdown: {drain_timeout_s: 30}
plugins:
  sleep: {task_group: cpu_task}
  gpu_sleep: {task_group: gpu_task, gpu_count: 1, exclusive_gpu: true}
)" + extra;
}

HostProcess::HostProcess(Options options)
    : tasks_(context_, zmq::socket_type::push), results_(context_, zmq::socket_type::pull) {
  const auto config = dir_.Write("config.yaml", options.config_yaml);
  if (options.plugin_dirs.empty()) options.plugin_dirs.push_back(UMI_TEST_PLUGIN_DIR);

  std::vector<std::string> args = {options.binary, "--config", config.string(), "--name", options.name,
                                   "--log-level", options.log_level};
  for (const auto& dir : options.plugin_dirs) {
    args.push_back("--plugins");
    args.push_back(dir.string());
  }
  args.insert(args.end(), options.extra_args.begin(), options.extra_args.end());
  // Parallel tests each get their own HTTP port.
  if (std::find(args.begin(), args.end(), "--http") == args.end()) {
    args.push_back("--http");
    args.push_back("127.0.0.1:0");
  }
  config_path_ = config;
  for (const auto& [flag, endpoint] : {std::pair{"--tasks", options.tasks_endpoint},
                                        std::pair{"--results", options.results_endpoint},
                                        std::pair{"--rpc", std::string("tcp://127.0.0.1:*")},
                                        std::pair{"--events", std::string("tcp://127.0.0.1:*")}}) {
    args.push_back(flag);
    args.push_back(endpoint);
  }
  int stdout_fd = -1;
  pid_ = Spawn(args, &stdout_fd);

  // Wait for the ready line; EOF means the host exited.
  std::string line;
  const auto deadline = std::chrono::steady_clock::now() + kGuardTime;
  while (line.find('\n') == std::string::npos) {
    pollfd fd{stdout_fd, POLLIN, 0};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || poll(&fd, 1, static_cast<int>(left.count())) <= 0) {
      close(stdout_fd);
      throw std::runtime_error("umi-host did not become ready");
    }
    char buffer[512];
    const ssize_t n = read(stdout_fd, buffer, sizeof(buffer));
    if (n <= 0) {
      close(stdout_fd);
      throw std::runtime_error("umi-host exited before it was ready");
    }
    line.append(buffer, static_cast<size_t>(n));
  }
  close(stdout_fd);
  const std::regex pair("\"(\\w+)\":\"([^\"]+)\"");
  for (std::sregex_iterator it(line.begin(), line.end(), pair), end; it != end; ++it) {
    endpoints_[(*it)[1]] = (*it)[2];
  }
  if (options.connect_harness && endpoints_.at("tasks")[0] != '>') tasks_.connect(endpoints_.at("tasks"));
  if (options.connect_harness && endpoints_.at("results")[0] != '>') results_.connect(endpoints_.at("results"));
  tasks_.set(zmq::sockopt::linger, 1000);
}

HostProcess::~HostProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

void HostProcess::Send(const std::string& bytes) { tasks_.send(zmq::buffer(bytes)); }

Result HostProcess::NextResult() {
  zmq::pollitem_t item{results_.handle(), 0, ZMQ_POLLIN, 0};
  if (zmq::poll(&item, 1, std::chrono::duration_cast<std::chrono::milliseconds>(kGuardTime)) == 0) {
    throw std::runtime_error("no result from umi-host within the guard time");
  }
  zmq::message_t message;
  (void)results_.recv(message);
  return ParseResult(message.to_string());
}

std::vector<Result> HostProcess::Results(size_t count) {
  std::vector<Result> results;
  for (size_t i = 0; i < count; ++i) results.push_back(NextResult());
  return results;
}

int HostProcess::Stop() {
  kill(pid_, SIGTERM);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

RpcClient::RpcClient(zmq::context_t& context, const std::string& endpoint)
    : socket_(context, zmq::socket_type::dealer) {
  socket_.set(zmq::sockopt::linger, 0);
  socket_.connect(endpoint);
}

void RpcClient::Send(const std::string& bytes) { socket_.send(zmq::buffer(bytes)); }

std::string RpcClient::Receive() {
  zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
  if (zmq::poll(&item, 1, std::chrono::duration_cast<std::chrono::milliseconds>(kGuardTime)) == 0) {
    throw std::runtime_error("no rpc reply from umi-host within the guard time");
  }
  zmq::message_t message;
  (void)socket_.recv(message);
  return message.to_string();
}

CommandOutput RunCommand(std::vector<std::string> args, bool merge_stderr) {
  int stdout_fd = -1;
  const pid_t pid = Spawn(args, &stdout_fd, merge_stderr);
  CommandOutput result;
  char buffer[4096];
  for (ssize_t n; (n = read(stdout_fd, buffer, sizeof(buffer))) > 0;) result.out.append(buffer, static_cast<size_t>(n));
  close(stdout_fd);
  int status = 0;
  waitpid(pid, &status, 0);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

EventsClient::EventsClient(zmq::context_t& context, const std::string& endpoint)
    : socket_(context, zmq::socket_type::sub) {
  socket_.set(zmq::sockopt::linger, 0);
  socket_.set(zmq::sockopt::subscribe, "");
  socket_.connect(endpoint);
}

std::pair<std::string, Result> EventsClient::Next() {
  auto event = TryNext(std::chrono::duration_cast<std::chrono::milliseconds>(kGuardTime));
  if (!event) throw std::runtime_error("no event from umi-host within the guard time");
  return std::move(*event);
}

std::optional<std::pair<std::string, Result>> EventsClient::TryNext(std::chrono::milliseconds wait) {
  zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
  if (zmq::poll(&item, 1, wait) == 0) return std::nullopt;
  zmq::message_t topic, body;
  (void)socket_.recv(topic);
  (void)socket_.recv(body);
  return std::make_pair(topic.to_string(), ParseResult(body.to_string()));
}

}  // namespace umi::testing
