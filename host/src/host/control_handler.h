// ControlHandler: the rpc control ops (health, stats, cancel, result, drain,
// reload)
// as a table from op name to handler; each handler returns the encoded reply.
// An op nobody registered is answered `unknown_op`, naming the known ones.
// A reply says which request it answers: its `op`, and the `task` a request
// named (not `id`: on the rpc socket that key marks a task's result).
//
// Thread safety: none; the event loop registers and calls.
#pragma once

#include <functional>
#include <map>
#include <string>

#include "transport/protocol.h"

namespace umi {

class ControlHandler {
 public:
  using Handler = std::function<std::string(const ControlRequest& request)>;

  void Add(std::string op, Handler handler) { handlers_[std::move(op)] = std::move(handler); }

  std::string Handle(const ControlRequest& request) const {
    std::string reply;
    if (const auto found = handlers_.find(request.op); found != handlers_.end()) {
      reply = found->second(request);
    } else {
      std::string known;
      for (const auto& [op, handler] : handlers_) known += (known.empty() ? "" : ", ") + op;
      reply = EncodeControlError(Status(ErrorCode::kUnknownOp, "unknown op '" + request.op + "' (known: " + known + ")"));
    }
    reply = WithStringField(std::move(reply), "op", request.op);
    return request.id.empty() ? reply : WithStringField(std::move(reply), "task", request.id);
  }

 private:
  std::map<std::string, Handler> handlers_;
};

}  // namespace umi
