// HttpServer: the operator's HTTP endpoint, served by GNU libmicrohttpd on
// one epoll thread of its own, reading only from Telemetry.
//
//   GET /                  the dashboard (host/web/dashboard.html, built in)
//   GET /metrics           Prometheus text format 0.0.4
//   GET /healthz           200 while the event loop turns (its heartbeat is
//                          at most Telemetry::kStuckAfter old), else 503
//   GET /readyz            200 when ready (plugins loaded, sockets bound, not
//                          draining), else 503 with the reason; the body
//                          names a config fallback in force
//   GET /api/stats         JSON: counts, percentiles, pool use
//   GET /api/backlog       JSON: queued and running over the last 5 min, a
//                          sample a second (Telemetry::Backlog)
//   GET /api/tasks/recent  JSON: recent and running tasks with their grants;
//                          ?limit=N (default 500, at most 10000)
//   GET /api/cluster       JSON: the farm as Redis sees it (transport/redis_cluster.h),
//                          when this host takes tasks from Redis; else 404,
//                          503 while Redis cannot be reached
//
// It is read-only and unauthenticated: keep `http.listen` on loopback or
// behind a proxy that authenticates (docs/operations.md). Connections are
// bounded (kMaxConnections, kMaxConnectionsPerAddress) and one idle for
// kIdleTimeout is closed; a slow or idle client holds a socket, not a thread.
// At a bound, a new connection sheds the longest idle one (of its address
// when its address is at the bound), so a client holding idle connections
// never starves a probe; only when all are mid-request is it refused.
//
// Thread safety: Start and Stop from one thread; handlers run on the
// server's threads.
#pragma once

#include <microhttpd.h>

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <unordered_map>

#include "common/status.h"
#include "common/status_or.h"
#include "telemetry/telemetry.h"

namespace umi {

class HttpServer {
 public:
  explicit HttpServer(const Telemetry& telemetry);
  ~HttpServer();  // stops

  // Binds `listen` ("host:port", "[v6]:port"; port 0 picks a free one) and
  // starts serving; kIoError with why not.
  Status Start(const std::string& listen);
  // Serves /api/cluster from `read` (JSON text), called on the server's
  // thread; set before Start.
  void SetClusterSource(std::function<StatusOr<std::string>()> read) { cluster_ = std::move(read); }
  // "http://host:port" once started.
  const std::string& url() const { return url_; }
  void Stop();

  static constexpr size_t kMaxConnections = 512;
  static constexpr size_t kMaxConnectionsPerAddress = 128;
  static constexpr std::chrono::seconds kIdleTimeout{10};

 private:
  static MHD_Result Dispatch(void* self, MHD_Connection* connection, const char* url, const char* method,
                             const char* version, const char* upload, size_t* upload_size, void** state);
  // Connection bookkeeping; all on the server's one thread.
  struct Open {
    int fd = -1;
    std::string address;  // the client's IP, as bytes
    std::chrono::steady_clock::time_point idle_since;
    bool busy = false;  // between a request's headers and its response's end
  };
  static MHD_Result Admit(void* self, const sockaddr* address, socklen_t length);
  static void Notify(void* self, MHD_Connection* connection, void** socket_context, MHD_ConnectionNotificationCode code);
  static void Completed(void* self, MHD_Connection* connection, void** state, MHD_RequestTerminationCode code);
  // Shuts the longest idle connection (of `address`, if given) down; false
  // when every one is busy.
  bool ShedIdle(const std::string* address);
  void Route(const std::string& path, const char* limit, unsigned int& status, std::string& content_type,
             std::string& body) const;

  const Telemetry& telemetry_;
  std::function<StatusOr<std::string>()> cluster_;
  MHD_Daemon* daemon_ = nullptr;
  std::string url_;
  std::unordered_map<MHD_Connection*, Open> open_;  // not yet shed
  std::map<std::string, size_t> per_address_;        // of open_
};

}  // namespace umi
