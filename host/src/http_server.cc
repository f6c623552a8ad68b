#include "http_server.h"

#include <httplib.h>

#include <charconv>
#include <chrono>

#include "dashboard_html.h"

namespace umi {
namespace {

constexpr size_t kDefaultRecent = 500;
constexpr size_t kMaxRecent = 10000;

// A two-thread pool: scrapes and the dashboard are light, and the host's
// cores belong to tasks.
class SmallTaskQueue : public httplib::ThreadPool {
 public:
  SmallTaskQueue() : httplib::ThreadPool(2) {}
};

}  // namespace

HttpServer::HttpServer(const Telemetry& telemetry) : telemetry_(telemetry) {}

HttpServer::~HttpServer() { Stop(); }

std::string HttpServer::Start(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) return "http.listen '" + listen + "': expected host:port";
  std::string host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  int port = -1;
  const std::string port_text = listen.substr(colon + 1);
  const auto parsed = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (parsed.ec != std::errc() || parsed.ptr != port_text.data() + port_text.size() || port < 0 || port > 65535) {
    return "http.listen '" + listen + "': the port must be a number from 0 to 65535";
  }

  server_ = std::make_unique<httplib::Server>();
  server_->new_task_queue = [] { return new SmallTaskQueue(); };
  // cpp-httplib's default is SO_REUSEPORT, which would let a second host
  // share the port and split the scrapes: a busy port must be an error.
  server_->set_socket_options([](int sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  server_->Get("/", [](const httplib::Request&, httplib::Response& response) {
    response.set_content(kDashboardHtml, "text/html; charset=utf-8");
  });
  server_->Get("/metrics", [this](const httplib::Request&, httplib::Response& response) {
    response.set_content(telemetry_.PrometheusText(), "text/plain; version=0.0.4; charset=utf-8");
  });
  server_->Get("/healthz", [this](const httplib::Request&, httplib::Response& response) {
    if (const std::string why = telemetry_.Unhealthy(std::chrono::steady_clock::now()); !why.empty()) {
      response.status = 503;
      response.set_content("unhealthy: " + why + "\n", "text/plain");
      return;
    }
    response.set_content("ok\n", "text/plain");
  });
  server_->Get("/readyz", [this](const httplib::Request&, httplib::Response& response) {
    const Telemetry::Snapshot state = telemetry_.Take();
    if (!state.config_fallback.empty() && !state.draining && state.ready) {
      response.set_content("ready, on detected hardware: " + state.config_fallback + "\n", "text/plain");
    } else if (state.draining) {
      response.status = 503;
      response.set_content("not ready: draining\n", "text/plain");
    } else if (!state.ready) {
      response.status = 503;
      response.set_content("not ready: starting\n", "text/plain");
    } else {
      response.set_content("ready\n", "text/plain");
    }
  });
  server_->Get("/api/stats", [this](const httplib::Request&, httplib::Response& response) {
    response.set_content(telemetry_.StatsJson(), "application/json");
  });
  server_->Get("/api/tasks/recent", [this](const httplib::Request& request, httplib::Response& response) {
    size_t limit = kDefaultRecent;
    if (request.has_param("limit")) {
      const std::string text = request.get_param_value("limit");
      const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), limit);
      if (error != std::errc() || end != text.data() + text.size()) {
        response.status = 400;
        response.set_content("{\"error\":\"limit must be a non-negative integer\"}", "application/json");
        return;
      }
    }
    response.set_content(telemetry_.RecentJson(std::min(limit, kMaxRecent)), "application/json");
  });

  const int bound = port == 0 ? server_->bind_to_any_port(host) : (server_->bind_to_port(host, port) ? port : -1);
  if (bound < 0) {
    server_.reset();
    return "http: cannot listen on " + listen + " (address in use, or not an address of this machine)";
  }
  url_ = "http://" + (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(bound);
  thread_ = std::thread([server = server_.get()] { server->listen_after_bind(); });
  // stop() is a no-op until the accept loop runs, and cpp-httplib 0.11 has
  // no ready callback: wait for it, so a quick Stop cannot hang in join.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!server_->is_running() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  return {};
}

void HttpServer::Stop() {
  if (!server_) return;
  server_->stop();
  if (thread_.joinable()) thread_.join();
  server_.reset();
}

}  // namespace umi
