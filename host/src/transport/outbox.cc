#include "transport/outbox.h"

#include <spdlog/spdlog.h>
#include <zmq_addon.hpp>

namespace umi {

void Outbox::Send(std::string_view body, const std::vector<std::string>& envelope) {
  if (envelope.empty()) {
    waiting_results_.emplace_back(body.data(), body.size());
    if (waiting_results_.size() >= kResultBatch) FlushResults();
    return;
  }
  std::deque<Reply>* waiting = nullptr;
  if (const auto found = waiting_replies_.find(envelope.front()); found != waiting_replies_.end()) {
    waiting = &found->second;
  }
  if (!waiting && TrySend(envelope, body)) return;
  if (!waiting) waiting = &waiting_replies_[envelope.front()];
  waiting->push_back({envelope, std::string(body)});
  ++replies_waiting_;
}

void Outbox::FlushResults() {
  while (!waiting_results_.empty()) {
    if (!results_.send(waiting_results_.front(), zmq::send_flags::dontwait)) return;  // no collector yet
    waiting_results_.pop_front();
  }
}

void Outbox::FlushReplies() {
  for (auto client = waiting_replies_.begin(); client != waiting_replies_.end();) {
    std::deque<Reply>& waiting = client->second;
    while (!waiting.empty() && TrySend(waiting.front().envelope, waiting.front().body)) {
      waiting.pop_front();
      --replies_waiting_;
    }
    client = waiting.empty() ? waiting_replies_.erase(client) : std::next(client);
  }
}

bool Outbox::TrySend(const std::vector<std::string>& envelope, std::string_view body) {
  std::vector<zmq::const_buffer> frames;
  for (const std::string& frame : envelope) frames.emplace_back(frame.data(), frame.size());
  frames.emplace_back(body.data(), body.size());
  try {
    return zmq::send_multipart(rpc_, frames, zmq::send_flags::dontwait).has_value();
  } catch (const zmq::error_t& e) {
    if (e.num() != EHOSTUNREACH) throw;
    on_dropped_();
    spdlog::warn("rpc reply dropped: its client disconnected before it was sent");
    return true;
  }
}

}  // namespace umi
