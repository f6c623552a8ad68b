// Outbox: every answer the host sends over ZeroMQ, and the ones that wait.
//
// Results for the tasks socket go out on the results PUSH socket in
// batches: Send keeps them until kResultBatch wait, and the loop flushes the
// rest at the end of its turn (FlushResults), so ZeroMQ's I/O thread is
// woken once per batch instead of once per result. While no collector takes
// them they wait in order. Replies to rpc clients go back
// through the ROUTER with ZMQ_ROUTER_MANDATORY: a client whose pipe is full
// makes its replies wait (in order, per client) instead of losing them, and
// a client that is gone is counted through `on_dropped`. The loop stops
// reading a socket while its answers wait beyond its bound, so the waiting
// is bounded by transport.max_pending_results.
//
// Thread safety: none; the event loop owns it and the sockets.
#pragma once

#include <zmq.hpp>

#include <deque>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace umi {

class Outbox {
 public:
  // `rpc` must have ZMQ_ROUTER_MANDATORY set.
  Outbox(zmq::socket_t& results, zmq::socket_t& rpc, std::function<void()> on_dropped)
      : results_(results), rpc_(rpc), on_dropped_(std::move(on_dropped)) {}

  static constexpr size_t kResultBatch = 256;

  // `envelope` empty: a result for the results socket (sent with its batch);
  // else the rpc client's routing frames (sent now).
  void Send(std::string_view body, const std::vector<std::string>& envelope);
  // Sends what each reader can take now.
  void FlushResults();
  void FlushReplies();

  size_t results_waiting() const { return waiting_results_.size(); }
  size_t replies_waiting() const { return replies_waiting_; }
  size_t waiting() const { return waiting_results_.size() + replies_waiting_; }

 private:
  struct Reply {
    std::vector<std::string> envelope;
    std::string body;
  };
  // True when the reply left or never can (its client is gone); false when
  // the client's pipe is full.
  bool TrySend(const std::vector<std::string>& envelope, std::string_view body);

  zmq::socket_t& results_;
  zmq::socket_t& rpc_;
  std::function<void()> on_dropped_;
  std::deque<zmq::message_t> waiting_results_;  // copied in once, handed to ZeroMQ as they are
  std::unordered_map<std::string, std::deque<Reply>> waiting_replies_;  // by client routing id
  size_t replies_waiting_ = 0;
};

}  // namespace umi
