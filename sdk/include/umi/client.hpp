// umi/client.hpp: a producer-side client for umi hosts (protocol v1).
//
//   zmq::context_t context;
//   umi::Client client(context, {.rpc = {"tcp://127.0.0.1:5557"}});
//   client.Submit({.id = "job-1", .plugin = "sleep", .input = umi::PackMap({{"ms", 250}})});
//   umi::TaskOutcome outcome = client.Await("job-1", std::chrono::seconds(30));
//
// Two wirings:
//   - rpc: a DEALER connected to one or more hosts' rpc endpoints; results
//     come back on the same socket (round-robin across hosts).
//   - tasks + results: a PUSH and a PULL, connected to one host or bound
//     ('@' prefix) so that many hosts connect to them (scale-out).
//
// At-least-once: a task with no result within its deadline (retry_after,
// plus its timeout_ms) is sent again, up to max_attempts sends in a row that
// nobody answers. A host that holds the task (queued or running) answers the
// copy rejected/duplicate_id, which the client takes as "wait longer" and
// which starts the count again: a task waits as long as a host keeps saying
// it has it. A host that finished it resends the stored result. The client
// hands out one result per id, dropping later copies. A task whose sends go
// unanswered max_attempts times yields a TaskOutcome with status "error",
// code "no_result".
//
// Thread safety: a Client is used from one thread.
#pragma once

#include <zmq.hpp>

#include <chrono>
#include <cstring>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "task.hpp"

namespace umi {

struct ClientOptions {
  std::vector<std::string> rpc = {};  // DEALER connects to each
  std::string tasks = {};             // PUSH; '@' binds, '>' or nothing connects
  std::string results = {};           // PULL; same prefixes
  std::chrono::milliseconds retry_after{30000};
  int max_attempts = 3;  // sends in a row with no answer before "no_result"
  // ZeroMQ CURVE, for a host with security.curve: the host's public key and
  // this client's key pair, all Z85 (40 characters; `umi-host keygen`).
  // Empty: plain TCP.
  std::string curve_server_key = {};
  std::string curve_public_key = {};
  std::string curve_secret_key = {};
};

class Client {
 public:
  using Clock = std::chrono::steady_clock;

  Client(zmq::context_t& context, ClientOptions options)
      : options_(std::move(options)), monitor_(context, zmq::socket_type::pair) {
    if (!options_.rpc.empty()) {
      send_.emplace(context, zmq::socket_type::dealer);
      Monitor(context);
      Secure(*send_);
      for (const std::string& endpoint : options_.rpc) send_->connect(endpoint);
    } else {
      send_.emplace(context, zmq::socket_type::push);
      receive_.emplace(context, zmq::socket_type::pull);
      Monitor(context);
      Secure(*send_);
      Secure(*receive_);
      Attach(*send_, options_.tasks);
      Attach(*receive_, options_.results);
    }
    send_->set(zmq::sockopt::linger, 0);
  }

  // Waits until `count` hosts are connected to the bound tasks socket (or
  // any rpc endpoint): ZeroMQ only deals tasks to peers already connected.
  bool WaitForHosts(size_t count, std::chrono::milliseconds wait) {
    const auto deadline = Clock::now() + wait;
    while (connected_ < count) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return false;
      zmq::pollitem_t item{monitor_.handle(), 0, ZMQ_POLLIN, 0};
      if (zmq::poll(&item, 1, left) == 0) continue;
      zmq::message_t event, address;
      (void)monitor_.recv(event);
      (void)monitor_.recv(address);
      uint16_t id = 0;
      std::memcpy(&id, event.data(), sizeof(id));
      if (id == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) ++connected_;
      if (id == ZMQ_EVENT_DISCONNECTED && connected_ > 0) --connected_;
    }
    return true;
  }

  // The endpoint a bound socket got (for '@tcp://host:*').
  std::string tasks_endpoint() const { return send_->get(zmq::sockopt::last_endpoint); }
  std::string results_endpoint() const { return input().get(zmq::sockopt::last_endpoint); }

  void Submit(TaskRequest request) {
    Pending& pending = pending_[request.id];
    pending.request = std::move(request);
    Send(pending);
  }

  // The next task outcome (one per submitted id), or nothing within `wait`.
  std::optional<TaskOutcome> Next(std::chrono::milliseconds wait) {
    const auto deadline = Clock::now() + wait;
    while (ready_.empty()) {
      RetryDue();
      if (!ready_.empty()) break;
      const auto now = Clock::now();
      if (now >= deadline) return std::nullopt;
      auto until = deadline;
      for (const auto& [id, pending] : pending_) until = std::min(until, pending.deadline);
      zmq::pollitem_t item{input().handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::max(std::chrono::ceil<std::chrono::milliseconds>(until - now),
                                   std::chrono::milliseconds(0)));
      if (item.revents & ZMQ_POLLIN) Receive();
    }
    TaskOutcome outcome = std::move(ready_.front());
    ready_.pop_front();
    return outcome;
  }

  // Waits for one id's outcome; other outcomes stay queued for Next.
  std::optional<TaskOutcome> Await(const std::string& id, std::chrono::milliseconds wait) {
    const auto deadline = Clock::now() + wait;
    while (true) {
      for (auto it = ready_.begin(); it != ready_.end(); ++it) {
        if (it->id == id) {
          TaskOutcome outcome = std::move(*it);
          ready_.erase(it);
          return outcome;
        }
      }
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return std::nullopt;
      std::optional<TaskOutcome> next = Next(left);
      if (!next) return std::nullopt;
      ready_.push_back(std::move(*next));
      if (ready_.back().id != id) continue;
      TaskOutcome outcome = std::move(ready_.back());
      ready_.pop_back();
      return outcome;
    }
  }

  // A control request (rpc wiring only): the reply map, msgpack-encoded.
  std::optional<std::string> Control(const std::string& op, std::chrono::milliseconds wait,
                                     const std::string& id = "") {
    msgpack::sbuffer buffer;
    msgpack::packer<msgpack::sbuffer> packer(buffer);
    packer.pack_map(id.empty() ? 1 : 2);
    packer.pack("op").pack(op);
    if (!id.empty()) packer.pack("id").pack(id);
    send_->send(zmq::buffer(buffer.data(), buffer.size()));
    const auto deadline = Clock::now() + wait;
    while (control_replies_.empty()) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return std::nullopt;
      zmq::pollitem_t item{input().handle(), 0, ZMQ_POLLIN, 0};
      if (zmq::poll(&item, 1, left) > 0) Receive();
    }
    std::string reply = std::move(control_replies_.front());
    control_replies_.pop_front();
    return reply;
  }

  size_t pending() const { return pending_.size(); }

 private:
  struct Pending {
    TaskRequest request;
    int attempts = 0;    // sends in all
    int unanswered = 0;  // sends since a host last said it holds the task
    Clock::time_point deadline;
  };

  void Monitor(zmq::context_t&) {
    const std::string address = "inproc://umi-client-monitor-" + std::to_string(reinterpret_cast<uintptr_t>(this));
    zmq_socket_monitor(send_->handle(), address.c_str(), ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED);
    monitor_.connect(address);
  }

  void Secure(zmq::socket_t& socket) const {
    if (options_.curve_server_key.empty()) return;
    socket.set(zmq::sockopt::curve_serverkey, options_.curve_server_key);
    socket.set(zmq::sockopt::curve_publickey, options_.curve_public_key);
    socket.set(zmq::sockopt::curve_secretkey, options_.curve_secret_key);
  }

  static void Attach(zmq::socket_t& socket, const std::string& endpoint) {
    if (!endpoint.empty() && endpoint[0] == '@') {
      socket.bind(endpoint.substr(1));
    } else {
      socket.connect(endpoint.empty() || endpoint[0] != '>' ? endpoint : endpoint.substr(1));
    }
  }

  zmq::socket_t& input() { return receive_ ? *receive_ : *send_; }
  const zmq::socket_t& input() const { return receive_ ? *receive_ : *send_; }

  void Send(Pending& pending) {
    const TaskRequest& r = pending.request;
    const std::string bytes = EncodeTask(r, {.attempt = pending.attempts + 1});
    // Never block: with no host connected, or its queue full, this attempt
    // is spent and the task is sent again soon.
    const bool queued = send_->send(zmq::buffer(bytes), zmq::send_flags::dontwait).has_value();
    ++pending.attempts;
    ++pending.unanswered;
    pending.deadline = Clock::now() + (queued ? options_.retry_after + std::chrono::milliseconds(r.timeout_ms)
                                              : std::min(options_.retry_after, std::chrono::milliseconds(100)));
  }

  void RetryDue() {
    const auto now = Clock::now();
    for (auto it = pending_.begin(); it != pending_.end();) {
      Pending& pending = it->second;
      if (now < pending.deadline) {
        ++it;
      } else if (pending.unanswered < options_.max_attempts) {
        Send(pending);
        ++it;
      } else {
        TaskOutcome outcome;
        outcome.id = it->first;
        outcome.plugin = pending.request.plugin;
        outcome.status = "error";
        outcome.error_code = "no_result";
        outcome.error_message = "no result after " + std::to_string(pending.attempts) + " attempt(s)";
        outcome.attempts = pending.attempts;
        ready_.push_back(std::move(outcome));
        it = pending_.erase(it);
      }
    }
  }

  void Receive() {
    zmq::message_t message;
    while (input().recv(message, zmq::recv_flags::dontwait)) {
      std::string bytes = message.to_string();
      TaskOutcome outcome;
      bool has_ok = false;
      if (!DecodeResult(bytes, outcome, has_ok)) continue;  // not a protocol message
      if (has_ok && outcome.id.empty()) {  // a control reply, not a task result
        control_replies_.push_back(std::move(bytes));
        continue;
      }
      const auto pending = pending_.find(outcome.id);
      if (pending == pending_.end()) continue;  // a duplicate after a retry, or not ours
      if (outcome.status == "rejected" && outcome.error_code == "duplicate_id") {
        // A retry reached the host still holding the task (queued or
        // running): its result will come, however long it waits.
        pending->second.deadline = Clock::now() + options_.retry_after;
        pending->second.unanswered = 0;
        continue;
      }
      outcome.attempts = pending->second.attempts;
      outcome.result = std::move(bytes);
      pending_.erase(pending);
      ready_.push_back(std::move(outcome));
    }
  }

  ClientOptions options_;
  zmq::socket_t monitor_;
  size_t connected_ = 0;
  std::optional<zmq::socket_t> send_;
  std::optional<zmq::socket_t> receive_;
  std::map<std::string, Pending> pending_;
  std::deque<TaskOutcome> ready_;
  std::deque<std::string> control_replies_;
};

}  // namespace umi
