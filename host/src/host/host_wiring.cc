#include "host/host_wiring.h"

#include <fstream>
#include <mutex>

#include "host/host.h"
#include "transport/redis_cluster.h"
#include "transport/redis_transport.h"
#include "transport/zmq_transport.h"

namespace umi {
namespace {

ZmqTransportOptions ZmqOptions(const HostOptions& options, const HardwareConfig& config) {
  ZmqTransportOptions zmq;
  zmq.tasks_endpoint = options.tasks_endpoint;
  zmq.results_endpoint = options.results_endpoint;
  zmq.rpc_endpoint = options.rpc_endpoint;
  zmq.events_endpoint = options.events_endpoint;
  zmq.curve_secret_key_file = config.security.curve.secret_key_file;
  zmq.curve_authorized_keys_file = config.security.curve.authorized_keys_file;
  zmq.tasks_hwm = config.transport.tasks_hwm;
  zmq.max_message_bytes = config.transport.max_message_bytes;
  zmq.max_pending_results = config.transport.max_pending_results;
  return zmq;
}

StatusOr<RedisTransportOptions> RedisOptions(const std::string& url, const HostOptions& options,
                                             const HardwareConfig& config) {
  StatusOr<RedisUrl> parsed = RedisUrl::Parse(url);
  if (!parsed.ok()) return parsed.status();
  RedisTransportOptions redis;
  redis.url = std::move(parsed).value();
  if (const std::string& file = config.transport.redis_password_file; redis.url.password.empty() && !file.empty()) {
    std::ifstream secret(file);
    if (!secret || !std::getline(secret, redis.url.password) || redis.url.password.empty()) {
      return Status(ErrorCode::kInvalidConfig, "transport.redis_password_file: cannot read a password from " + file);
    }
  }
  redis.host = options.name;
  redis.max_deliveries = config.transport.max_deliveries;
  redis.reserve_after = std::chrono::milliseconds(config.scheduler.reserve_after_ms);
  if (config.transport.prefetch >= 0) redis.prefetch = static_cast<size_t>(config.transport.prefetch);
  redis.keep_results = KeptResults(config);
  return redis;
}

// The dashboard's farm view (/api/cluster): a connection of its own, used on
// the HTTP server's thread, opened when first asked for and again after it broke.
class ClusterView {
 public:
  explicit ClusterView(RedisUrl url) : url_(std::move(url)) {}

  StatusOr<std::string> Read() {
    std::lock_guard lock(mutex_);
    if (!connection_.connected()) {
      if (Status connected = connection_.Connect(url_, std::chrono::seconds(1)); !connected.ok()) return connected;
    }
    const nlohmann::json view = ReadCluster(connection_);
    if (!connection_.connected()) return Status(ErrorCode::kUnavailable, "redis " + url_.Redacted() + ": connection lost");
    return view.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }

 private:
  RedisUrl url_;
  std::mutex mutex_;
  RedisConnection connection_;
};

}  // namespace

StatusOr<HostTransports> WireTransports(const HostOptions& options, const HardwareConfig& config) {
  HostTransports wired;
  auto zmq = std::make_unique<ZmqTransport>(ZmqOptions(options, config));
  wired.events = zmq.get();
  wired.transports.push_back(std::move(zmq));
  // ZeroMQ stays on for rpc, events and local producers.
  const std::string url = !options.redis_url.empty() ? options.redis_url : config.transport.redis;
  if (url.empty()) return wired;
  StatusOr<RedisTransportOptions> redis = RedisOptions(url, options, config);
  if (!redis.ok()) return redis.status();
  wired.cluster_view = [view = std::make_shared<ClusterView>(redis->url)] { return view->Read(); };
  wired.transports.push_back(std::make_unique<RedisTransport>(std::move(redis).value()));
  return wired;
}

}  // namespace umi
