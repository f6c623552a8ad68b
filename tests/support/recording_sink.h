// RecordingSink: a fake answer and event sink for the host's unit tests. It
// keeps every answer's bytes and every event's topic, in order; events are
// published only while `subscribed` is set, as with a real listener.
//
// Thread safety: none; the test's thread (the loop's) uses it.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "transport/transport.h"

namespace umi {

class RecordingSink final : public ResultSink, public EventSink {
 public:
  std::vector<std::string> sent, published;
  bool subscribed = false;
  void Send(std::string_view body, const ReplyRoute&, const TaskFingerprint*) override { sent.emplace_back(body); }
  bool listening() const override { return subscribed; }
  void Publish(std::string_view topic, std::string_view) override { published.emplace_back(topic); }
};

}  // namespace umi
