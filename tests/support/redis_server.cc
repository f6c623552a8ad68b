#include "support/redis_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <httplib.h>

#include <stdexcept>
#include <thread>

namespace umi::testing {

// A loopback port free right now (the kernel's pick for a bound socket).
int FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    close(fd);
    throw std::runtime_error("no free loopback port");
  }
  close(fd);
  return ntohs(address.sin_port);
}


RedisServer::RedisServer(bool append_only, std::string password, bool tcp)
    : socket_((dir_.path() / "redis.sock").string()),
      append_only_(append_only),
      password_(std::move(password)),
      port_(tcp ? FreeLoopbackPort() : 0) {
  Start();
}

RedisServer::~RedisServer() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (log_fd_ >= 0) close(log_fd_);
}

void RedisServer::Start() {
  int out = -1;
  std::vector<std::string> args = {"/usr/bin/redis-server", "--port", std::to_string(port_), "--bind", "127.0.0.1",
                                   "--unixsocket", socket_,
                                   "--unixsocketperm", "700", "--dir", dir_.path().string(), "--save", "",
                                   "--appendonly", append_only_ ? "yes" : "no", "--appendfsync", "always",
                                   "--loglevel", "notice"};
  if (!password_.empty()) args.insert(args.end(), {"--requirepass", password_});
  pid_ = Spawn(args, &out);
  std::string seen;
  char buffer[4096];
  while (seen.find("to accept connections") == std::string::npos) {
    const ssize_t n = read(out, buffer, sizeof(buffer));
    if (n <= 0) throw std::runtime_error("redis-server did not start: " + seen);
    seen.append(buffer, static_cast<size_t>(n));
  }
  // Kept open: a test's worth of notices fits the pipe, and closing it
  // would make the server's next log line fail.
  log_fd_ = out;
}

void RedisServer::Restart() {
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  close(log_fd_);
  unlink(socket_.c_str());
  Start();
}

void RedisServer::Kill() {
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

void RedisServer::Freeze(std::chrono::milliseconds frozen) {
  kill(pid_, SIGSTOP);
  std::this_thread::sleep_for(frozen);
  kill(pid_, SIGCONT);
}

RedisClient::RedisClient(const std::string& url) {
  auto parsed = RedisUrl::Parse(url);
  if (!parsed.ok()) throw std::runtime_error(parsed.error());
  if (Status connected = connection_.Connect(parsed.value(), std::chrono::seconds(70)); !connected.ok()) {
    throw std::runtime_error(connected.message());
  }
}

RedisReply RedisClient::Command(const std::vector<std::string>& args) {
  auto reply = connection_.Command(args);
  if (!reply.ok()) throw std::runtime_error(reply.error());
  return std::move(reply).value();
}

std::string RedisClient::Submit(const std::string& plugin, const std::string& bytes, const std::string& field) {
  return ReplyText(Command({"XADD", "umi:tasks:" + plugin, "*", field, bytes}).get());
}

std::vector<Result> RedisClient::Results(size_t count, const std::string& stream) {
  std::vector<Result> results;
  while (results.size() < count) {
    RedisReply reply = Command({"XREAD", "COUNT", "100", "BLOCK",
                                std::to_string(std::chrono::milliseconds(kGuardTime).count()), "STREAMS", stream,
                                last_id_});
    if (reply->type != REDIS_REPLY_ARRAY) throw std::runtime_error("no result within the guard time");
    const redisReply* entries = reply->element[0]->element[1];
    for (size_t e = 0; e < entries->elements; ++e) {
      last_id_ = ReplyText(entries->element[e]->element[0]);
      const redisReply* fields = entries->element[e]->element[1];
      for (size_t f = 0; f + 1 < fields->elements; f += 2) {
        if (ReplyText(fields->element[f]) == "m") results.push_back(ParseResult(ReplyText(fields->element[f + 1])));
      }
    }
  }
  return results;
}

long long RedisClient::Pending(const std::string& stream) {
  auto pending = connection_.Command({"XPENDING", stream, "umi"});
  // NOGROUP: no host created the group yet, so nothing is pending.
  if (!pending.ok() && pending.error().find("NOGROUP") != std::string::npos) return 0;
  if (!pending.ok()) throw std::runtime_error(pending.error());
  const RedisReply& reply = pending.value();
  return reply->type == REDIS_REPLY_ARRAY && reply->elements > 0 ? reply->element[0]->integer : -1;
}

HostProcess::Options FarmHost(const RedisServer& redis, const std::string& name, std::string yaml) {
  HostProcess::Options options;
  options.config_yaml = std::move(yaml);
  options.name = name;
  options.extra_args = {"--redis", redis.url()};
  return options;
}

void AwaitSubscription(HostProcess& host, EventsClient& events) {
  for (int i = 0; !events.TryNext(std::chrono::milliseconds(200)); ++i) {
    if (i >= 100) throw std::runtime_error("no events at all");
    host.Send(PackTask({.id = "warmup-" + std::to_string(i), .plugin = "noop"}));
    host.NextResult();
  }
}

void AwaitStarted(EventsClient& events, int count, const std::string& prefix) {
  for (int started = 0; started < count;) {
    const auto [topic, event] = events.Next();
    if (topic == "task.started" && event.id && event.id->rfind(prefix, 0) == 0) ++started;
  }
}

double MetricValue(const HostProcess& host, const std::string& name) {
  httplib::Client http(host.endpoint("http"));
  const auto metrics = http.Get("/metrics");
  if (!metrics) return -1;
  const std::string prefix = "\n" + name + " ";
  const size_t at = metrics->body.find(prefix);
  if (at == std::string::npos) return -1;
  return std::stod(metrics->body.substr(at + prefix.size()));
}

}  // namespace umi::testing
