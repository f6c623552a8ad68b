#include "transport/zmq_transport.h"

#include <spdlog/spdlog.h>
#include <zmq_addon.hpp>

#include <array>
#include <optional>
#include <vector>

#include "transport/poller.h"

namespace umi {
namespace {

// While an rpc client's pipe is full, how often its replies are retried.
constexpr auto kRpcRetryInterval = std::chrono::milliseconds(2);
// Messages read from one socket per turn, so one busy socket cannot starve the rest.
constexpr int kReadBatch = 256;
// How long ZeroMQ may keep delivering what is queued after the host closes.
constexpr int kCloseLingerMs = 5000;

struct Endpoint {
  std::string address;
  bool bind = true;
};

Endpoint ParseEndpoint(const std::string& text) {
  if (!text.empty() && text[0] == '>') return {text.substr(1), false};
  if (!text.empty() && text[0] == '@') return {text.substr(1), true};
  return {text, true};
}

}  // namespace

ZmqTransport::ZmqTransport(ZmqTransportOptions options)
    : options_(std::move(options)),
      tasks_(context_, zmq::socket_type::pull),
      results_(context_, zmq::socket_type::push),
      rpc_(context_, zmq::socket_type::router),
      events_(context_, zmq::socket_type::xpub),
      outbox_(results_, rpc_, [this] { inbox_->RepliesDropped(1); }) {}

ZmqTransport::~ZmqTransport() = default;

Status ZmqTransport::Open(Poller& poller, Inbox& inbox) {
  inbox_ = &inbox;
  std::optional<CurveKeyPair> curve;
  if (!options_.curve_secret_key_file.empty()) {
    auto keys = ReadCurveKeyPair(options_.curve_secret_key_file);
    if (!keys.ok()) return keys.status().Prefixed("security.curve.secret_key_file");
    auto authorized = ReadCurvePublicKeys(options_.curve_authorized_keys_file);
    if (!authorized.ok()) return authorized.status().Prefixed("security.curve.authorized_keys_file");
    if (!zmq_has("curve")) return Status(ErrorCode::kUnavailable, "security.curve: this libzmq has no CURVE support");
    spdlog::info("CURVE on: {} authorized client key(s)", authorized->size());
    zap_ = std::make_unique<ZapHandler>(context_, std::move(authorized).value());
    curve = keys.value();
  }
  struct Named {
    const char* name;
    zmq::socket_t* socket;
    const std::string* endpoint;
  };
  for (const Named& s : {Named{"tasks", &tasks_, &options_.tasks_endpoint},
                         Named{"results", &results_, &options_.results_endpoint},
                         Named{"rpc", &rpc_, &options_.rpc_endpoint},
                         Named{"events", &events_, &options_.events_endpoint}}) {
    const Endpoint endpoint = ParseEndpoint(*s.endpoint);
    try {
      s.socket->set(zmq::sockopt::linger, 0);
      if (curve) {
        s.socket->set(zmq::sockopt::curve_server, 1);
        s.socket->set(zmq::sockopt::curve_secretkey, curve->secret_z85);
        s.socket->set(zmq::sockopt::zap_domain, "umi");
      }
      if (s.socket == &tasks_) tasks_.set(zmq::sockopt::rcvhwm, options_.tasks_hwm);
      if (s.socket == &tasks_ || s.socket == &rpc_) s.socket->set(zmq::sockopt::maxmsgsize, options_.max_message_bytes);
      // A full pipe to a client says EAGAIN (the reply waits) instead of
      // dropping it; a client that is gone says EHOSTUNREACH.
      if (s.socket == &rpc_) rpc_.set(zmq::sockopt::router_mandatory, 1);
      if (endpoint.bind) {
        s.socket->bind(endpoint.address);
        endpoints_[s.name] = s.socket->get(zmq::sockopt::last_endpoint);
      } else {
        s.socket->connect(endpoint.address);
        endpoints_[s.name] = ">" + endpoint.address;
      }
    } catch (const zmq::error_t& e) {
      return Status(ErrorCode::kIoError, std::string(s.name) + " socket: cannot " +
                                             (endpoint.bind ? "bind " : "connect ") + endpoint.address + ": " +
                                             e.what());
    }
  }
  poller.Add(
      results_, [this] { return static_cast<short>(outbox_.results_waiting() == 0 ? 0 : ZMQ_POLLOUT); },
      [this](short) { outbox_.FlushResults(); });
  // Replies waiting for slow rpc clients: read no more requests until they leave.
  poller.Add(
      rpc_,
      [this] {
        return static_cast<short>(outbox_.replies_waiting() < static_cast<size_t>(options_.max_pending_results)
                                      ? ZMQ_POLLIN
                                      : 0);
      },
      [this](short) { Receive(rpc_, /*is_rpc=*/true); });
  poller.Add(
      tasks_,
      [this] { return static_cast<short>(inbox_->accepting_tasks() && !backlogged() ? ZMQ_POLLIN : 0); },
      [this](short) { Receive(tasks_, /*is_rpc=*/false); });
  poller.Add(events_, [] { return static_cast<short>(ZMQ_POLLIN); }, [this](short) { ReadSubscriptions(); });
  poller.AddTimer([this] { return RetryIn(); });  // AfterPoll retries
  return {};
}

void ZmqTransport::Receive(zmq::socket_t& socket, bool is_rpc) {
  std::vector<zmq::message_t> frames;
  for (int i = 0; i < kReadBatch; ++i) {
    if (!is_rpc && !inbox_->accepting_tasks()) return;
    frames.clear();
    if (!zmq::recv_multipart(socket, std::back_inserter(frames), zmq::recv_flags::dontwait)) return;
    ReplyRoute route;
    route.sink = this;
    route.rpc = is_rpc;
    if (is_rpc) {
      for (size_t f = 0; f + 1 < frames.size(); ++f) route.address.push_back(frames[f].to_string());
    }
    const zmq::message_t& body = frames.back();
    inbox_->Deliver(std::string_view(static_cast<const char*>(body.data()), body.size()), std::move(route));
  }
}

void ZmqTransport::Send(std::string_view body, const ReplyRoute& route, const TaskFingerprint* /*kept_as*/) {
  static const std::vector<std::string> kResultsSocket;
  outbox_.Send(body, route.rpc ? route.address : kResultsSocket);
}

void ZmqTransport::AfterPoll() {
  outbox_.FlushResults();
  if (outbox_.replies_waiting() > 0) outbox_.FlushReplies();
}

std::optional<std::chrono::milliseconds> ZmqTransport::RetryIn() const {
  if (outbox_.replies_waiting() > 0) return kRpcRetryInterval;
  return std::nullopt;
}

// XPUB tells us about (un)subscriptions; with nobody listening, events are
// not even encoded.
void ZmqTransport::ReadSubscriptions() {
  zmq::message_t message;
  while (events_.recv(message, zmq::recv_flags::dontwait)) {
    if (message.size() == 0) continue;
    const uint8_t kind = *static_cast<const uint8_t*>(message.data());
    if (kind == 1) ++subscriptions_;
    if (kind == 0 && subscriptions_ > 0) --subscriptions_;
  }
}

void ZmqTransport::Publish(std::string_view topic, std::string_view body) {
  std::array<zmq::const_buffer, 2> frames = {zmq::buffer(topic), zmq::buffer(body)};
  zmq::send_multipart(events_, frames, zmq::send_flags::dontwait);
}

size_t ZmqTransport::Flush(std::chrono::steady_clock::time_point deadline) {
  while (outbox_.waiting() > 0 && std::chrono::steady_clock::now() < deadline) {
    zmq::pollitem_t item{results_.handle(), 0, static_cast<short>(outbox_.results_waiting() == 0 ? 0 : ZMQ_POLLOUT),
                         0};
    zmq::poll(&item, 1, outbox_.replies_waiting() > 0 ? kRpcRetryInterval : std::chrono::milliseconds(100));
    outbox_.FlushResults();
    outbox_.FlushReplies();
  }
  const size_t undelivered = outbox_.waiting();
  if (undelivered > 0) {
    inbox_->RepliesDropped(undelivered);
    spdlog::error("{} result(s) and {} rpc repl(ies) undelivered: nobody took them before the deadline",
                  outbox_.results_waiting(), outbox_.replies_waiting());
  }
  // Give connected peers time to receive what ZeroMQ has queued.
  results_.set(zmq::sockopt::linger, kCloseLingerMs);
  rpc_.set(zmq::sockopt::linger, kCloseLingerMs);
  return undelivered;
}

void ZmqTransport::Close() {
  results_.close();
  rpc_.close();
  events_.close();
  tasks_.close();
  zap_.reset();
  context_.close();  // waits out the linger, delivering what is queued
}

}  // namespace umi
