#include "telemetry/http_server.h"

#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <charconv>
#include <chrono>
#include <cstring>

#include "telemetry/dashboard_html.h"

namespace umi {
namespace {

constexpr size_t kDefaultRecent = 500;
constexpr size_t kMaxRecent = 10000;

struct Reply {
  unsigned int status = 200;
  std::string content_type = "text/plain";
  std::string body;
};

// Listens on host:port itself, so a busy port is an error (no SO_REUSEPORT:
// two hosts must never split the scrapes) and port 0 can be read back.
int Listen(const std::string& host, int port, std::string* why) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (const int error = getaddrinfo(host.c_str(), service.c_str(), &hints, &found); error != 0) {
    *why = gai_strerror(error);
    return -1;
  }
  int fd = -1;
  for (addrinfo* a = found; a && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) continue;
    const int yes = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 128) != 0) {
      *why = std::strerror(errno);
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(found);
  return fd;
}

int BoundPort(int fd) {
  sockaddr_storage address{};
  socklen_t size = sizeof(address);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size) != 0) return -1;
  if (address.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&address)->sin6_port);
  return ntohs(reinterpret_cast<sockaddr_in*>(&address)->sin_port);
}

}  // namespace

HttpServer::HttpServer(const Telemetry& telemetry) : telemetry_(telemetry) {}

HttpServer::~HttpServer() { Stop(); }

Status HttpServer::Start(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) return Status(ErrorCode::kIoError, "http.listen '" + listen + "': expected host:port");
  std::string host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  int port = -1;
  const std::string port_text = listen.substr(colon + 1);
  const auto parsed = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (parsed.ec != std::errc() || parsed.ptr != port_text.data() + port_text.size() || port < 0 || port > 65535) {
    return Status(ErrorCode::kIoError, "http.listen '" + listen + "': the port must be a number from 0 to 65535");
  }
  std::string why;
  const int fd = Listen(host, port, &why);
  if (fd < 0) return Status(ErrorCode::kIoError, "http: cannot listen on " + listen + ": " + why);
  const int bound = BoundPort(fd);

  // One epoll thread serves every connection: a client that is slow or idle
  // holds a socket, never a thread, so probes are answered whatever others do.
  // The bounds are kept by Admit (which sheds idle connections); the
  // server's own limit leaves room for the shed ones until they close.
  constexpr unsigned int kClosingRoom = 64;
  daemon_ = MHD_start_daemon(
      MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0, &HttpServer::Admit, this, &HttpServer::Dispatch, this,
      MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT,
      static_cast<unsigned int>(kMaxConnections) + kClosingRoom, MHD_OPTION_CONNECTION_TIMEOUT,
      static_cast<unsigned int>(kIdleTimeout.count()), MHD_OPTION_CONNECTION_MEMORY_LIMIT,
      static_cast<size_t>(64 * 1024), MHD_OPTION_NOTIFY_CONNECTION, &HttpServer::Notify, this,
      MHD_OPTION_NOTIFY_COMPLETED, &HttpServer::Completed, this, MHD_OPTION_END);
  if (!daemon_) {
    close(fd);
    return Status(ErrorCode::kIoError, "http: cannot start the server on " + listen);
  }
  url_ = "http://" + (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(bound);
  return {};
}

void HttpServer::Stop() {
  if (!daemon_) return;
  MHD_stop_daemon(daemon_);  // joins its thread and closes the listening socket
  daemon_ = nullptr;
}

namespace {

// The client's IP as bytes (no port): what the per-address bound counts.
std::string AddressKey(const sockaddr* address) {
  if (address->sa_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(address);
    return std::string(reinterpret_cast<const char*>(&v4->sin_addr), sizeof(v4->sin_addr));
  }
  if (address->sa_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(address);
    return std::string(reinterpret_cast<const char*>(&v6->sin6_addr), sizeof(v6->sin6_addr));
  }
  return {};
}

}  // namespace

MHD_Result HttpServer::Admit(void* self, const sockaddr* address, socklen_t) {
  auto& server = *static_cast<HttpServer*>(self);
  const std::string key = AddressKey(address);
  const auto from_address = server.per_address_.find(key);
  if (from_address != server.per_address_.end() && from_address->second >= kMaxConnectionsPerAddress &&
      !server.ShedIdle(&key)) {
    return MHD_NO;
  }
  if (server.open_.size() >= kMaxConnections && !server.ShedIdle(nullptr)) return MHD_NO;
  return MHD_YES;
}

bool HttpServer::ShedIdle(const std::string* address) {
  auto victim = open_.end();
  for (auto it = open_.begin(); it != open_.end(); ++it) {
    if (it->second.busy || (address && it->second.address != *address)) continue;
    if (victim == open_.end() || it->second.idle_since < victim->second.idle_since) victim = it;
  }
  if (victim == open_.end()) return false;
  // The server sees the end of the stream and closes it (Notify: closed).
  shutdown(victim->second.fd, SHUT_RDWR);
  if (--per_address_[victim->second.address] == 0) per_address_.erase(victim->second.address);
  open_.erase(victim);
  return true;
}

void HttpServer::Notify(void* self, MHD_Connection* connection, void**, MHD_ConnectionNotificationCode code) {
  auto& server = *static_cast<HttpServer*>(self);
  if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
    const auto open = server.open_.find(connection);
    if (open == server.open_.end()) return;  // shed already
    if (--server.per_address_[open->second.address] == 0) server.per_address_.erase(open->second.address);
    server.open_.erase(open);
    return;
  }
  Open open;
  const MHD_ConnectionInfo* fd = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
  const MHD_ConnectionInfo* client = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  open.fd = fd ? fd->connect_fd : -1;
  open.address = client ? AddressKey(client->client_addr) : std::string();
  open.idle_since = std::chrono::steady_clock::now();
  ++server.per_address_[open.address];
  server.open_[connection] = std::move(open);
}

void HttpServer::Completed(void* self, MHD_Connection* connection, void**, MHD_RequestTerminationCode) {
  auto& server = *static_cast<HttpServer*>(self);
  if (const auto open = server.open_.find(connection); open != server.open_.end()) {
    open->second.busy = false;
    open->second.idle_since = std::chrono::steady_clock::now();
  }
}

MHD_Result HttpServer::Dispatch(void* self, MHD_Connection* connection, const char* url, const char* method,
                                const char*, const char*, size_t* upload_size, void**) {
  auto& server = *static_cast<HttpServer*>(self);
  if (const auto open = server.open_.find(connection); open != server.open_.end()) open->second.busy = true;
  Reply reply;
  if (std::strcmp(method, "GET") != 0 && std::strcmp(method, "HEAD") != 0) {
    reply = {405, "text/plain", "only GET\n"};
  } else if (*upload_size != 0) {
    *upload_size = 0;  // a GET with a body: ignore the body
    return MHD_YES;
  } else {
    const char* limit = MHD_lookup_connection_value(connection, MHD_GET_ARGUMENT_KIND, "limit");
    server.Route(url, limit, reply.status, reply.content_type, reply.body);
  }
  MHD_Response* response =
      MHD_create_response_from_buffer(reply.body.size(), reply.body.data(), MHD_RESPMEM_MUST_COPY);
  if (!response) return MHD_NO;
  MHD_add_response_header(response, "Content-Type", reply.content_type.c_str());
  const MHD_Result queued = MHD_queue_response(connection, reply.status, response);
  MHD_destroy_response(response);
  return queued;
}

void HttpServer::Route(const std::string& path, const char* limit_text, unsigned int& status,
                       std::string& content_type, std::string& body) const {
  if (path == "/") {
    content_type = "text/html; charset=utf-8";
    body = kDashboardHtml;
  } else if (path == "/metrics") {
    content_type = "text/plain; version=0.0.4; charset=utf-8";
    body = telemetry_.PrometheusText();
  } else if (path == "/healthz") {
    if (const std::string why = telemetry_.Unhealthy(std::chrono::steady_clock::now()); !why.empty()) {
      status = 503;
      body = "unhealthy: " + why + "\n";
    } else {
      body = "ok\n";
    }
  } else if (path == "/readyz") {
    const Telemetry::Snapshot state = telemetry_.Take();
    if (state.draining) {
      status = 503;
      body = "not ready: draining\n";
    } else if (!state.ready) {
      status = 503;
      body = "not ready: starting\n";
    } else if (!state.config_fallback.empty()) {
      body = "ready, on detected hardware: " + state.config_fallback + "\n";
    } else {
      body = "ready\n";
    }
    if (status == 200 && !state.sandbox_summary.empty()) body += "sandbox: " + state.sandbox_summary + "\n";
  } else if (path == "/api/cluster") {
    content_type = "application/json";
    if (!cluster_) {
      status = 404;
      body = "{\"error\":\"this host takes no tasks from Redis\"}";
      return;
    }
    StatusOr<std::string> view = cluster_();
    if (!view.ok()) {
      status = 503;
      body = nlohmann::json{{"error", view.error()}}.dump();
      return;
    }
    body = std::move(view).value();
  } else if (path == "/api/backlog") {
    content_type = "application/json";
    body = telemetry_.BacklogJson();
  } else if (path == "/api/stats") {
    content_type = "application/json";
    body = telemetry_.StatsJson();
  } else if (path == "/api/tasks/recent") {
    content_type = "application/json";
    size_t limit = kDefaultRecent;
    if (limit_text) {
      const std::string text = limit_text;
      const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), limit);
      if (error != std::errc() || end != text.data() + text.size()) {
        status = 400;
        body = "{\"error\":\"limit must be a non-negative integer\"}";
        return;
      }
    }
    body = telemetry_.RecentJson(std::min(limit, kMaxRecent));
  } else {
    status = 404;
    body = "not found\n";
  }
}

}  // namespace umi
