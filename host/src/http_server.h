// HttpServer: the operator's HTTP endpoint, served by cpp-httplib on its
// own threads (two), reading only from Telemetry.
//
//   GET /                  the dashboard (host/web/dashboard.html, built in)
//   GET /metrics           Prometheus text format 0.0.4
//   GET /healthz           200 while the process serves
//   GET /readyz            200 when ready (plugins loaded, sockets bound, not
//                          draining), else 503 with the reason
//   GET /api/stats         JSON: counts, percentiles, pool use
//   GET /api/tasks/recent  JSON: recent and running tasks with their grants;
//                          ?limit=N (default 500, at most 10000)
//
// It is read-only and unauthenticated: keep `http.listen` on loopback or
// behind a proxy that authenticates (docs/operations.md).
//
// Thread safety: Start and Stop from one thread; handlers run on the
// server's threads.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "telemetry.h"

namespace httplib {
class Server;
}

namespace umi {

class HttpServer {
 public:
  explicit HttpServer(const Telemetry& telemetry);
  ~HttpServer();  // stops

  // Binds `listen` ("host:port", "[v6]:port"; port 0 picks a free one) and
  // starts serving. Empty on success, else why not.
  std::string Start(const std::string& listen);
  // "http://host:port" once started.
  const std::string& url() const { return url_; }
  void Stop();

 private:
  const Telemetry& telemetry_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::string url_;
};

}  // namespace umi
