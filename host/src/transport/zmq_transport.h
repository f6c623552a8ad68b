// ZmqTransport: protocol v1 over ZeroMQ, the single-machine transport.
//
// Sockets (docs/protocol.md): tasks PULL, results PUSH, rpc ROUTER, events
// XPUB (PUB to subscribers; it also tells whether anyone listens). An
// endpoint "tcp://..." or "@tcp://..." binds; ">tcp://..." connects. With
// security.curve every socket is a CURVE server and a ZAP handler admits
// only the authorized client keys.
//
// Connection states, per socket:
//
//   | socket  | state              | when                                  | the host does                    |
//   |---------|--------------------|---------------------------------------|----------------------------------|
//   | tasks   | reading            | accepting and results drain           | reads up to 256 per turn         |
//   | tasks   | paused             | queue full, draining, or results wait | leaves tasks in ZeroMQ's queues  |
//   |         |                    | beyond transport.max_pending_results  | (producers see HWM backpressure) |
//   | results | flowing / waiting  | a collector takes / none does         | keeps results in order           |
//   | rpc     | reading / paused   | replies wait beyond the same bound    | stops reading requests           |
//   | events  | silent / publishing| no subscriber / some                  | skips encoding / publishes       |
//
// Thread safety: none; the event loop owns it (the ZAP handler has its own
// thread).
#pragma once

#include <zmq.hpp>

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "transport/curve_auth.h"
#include "transport/outbox.h"
#include "transport/transport.h"

namespace umi {

struct ZmqTransportOptions {
  std::string tasks_endpoint = "tcp://127.0.0.1:5555";
  std::string results_endpoint = "tcp://127.0.0.1:5556";
  std::string rpc_endpoint = "tcp://127.0.0.1:5557";
  std::string events_endpoint = "tcp://127.0.0.1:5558";
  std::filesystem::path curve_secret_key_file;  // empty: CURVE off
  std::filesystem::path curve_authorized_keys_file;
  int tasks_hwm = 1000;                        // ZMQ_RCVHWM of the tasks socket
  int64_t max_message_bytes = 64 << 20;        // ZMQ_MAXMSGSIZE of tasks and rpc
  int64_t max_pending_results = 100000;        // answers waiting before reading stops
};

class ZmqTransport final : public Transport, public EventSink {
 public:
  // Answers it cannot deliver are counted through Inbox::RepliesDropped.
  explicit ZmqTransport(ZmqTransportOptions options);
  ~ZmqTransport() override;

  Status Open(Poller& poller, Inbox& inbox) override;
  std::map<std::string, std::string> endpoints() const override { return endpoints_; }
  void Send(std::string_view body, const ReplyRoute& route, const TaskFingerprint* kept_as) override;
  size_t waiting() const override { return outbox_.waiting(); }
  void AfterPoll() override;
  size_t Flush(std::chrono::steady_clock::time_point deadline) override;

  bool listening() const override { return subscriptions_ > 0; }
  void Publish(std::string_view topic, std::string_view body) override;

  void SetMaxPendingResults(int64_t limit) override { options_.max_pending_results = limit; }
  // Closes every socket, delivering what ZeroMQ has queued (linger).
  void Close() override;
  // transport.max_pending_results answers wait unsent: the tasks socket is not read.
  bool backlogged() const override {
    return outbox_.results_waiting() >= static_cast<size_t>(options_.max_pending_results);
  }

 private:
  // When unsent rpc replies are tried again; none: nothing waits.
  std::optional<std::chrono::milliseconds> RetryIn() const;
  void Receive(zmq::socket_t& socket, bool is_rpc);
  void ReadSubscriptions();

  ZmqTransportOptions options_;
  Inbox* inbox_ = nullptr;
  zmq::context_t context_;
  zmq::socket_t tasks_, results_, rpc_, events_;
  std::unique_ptr<ZapHandler> zap_;  // with CURVE; destroyed before the sockets and the context
  Outbox outbox_;
  std::map<std::string, std::string> endpoints_;
  int subscriptions_ = 0;
};

}  // namespace umi
