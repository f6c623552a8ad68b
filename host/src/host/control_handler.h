// ControlHandler: the rpc control ops (health, stats, cancel, drain, reload)
// as a table from op name to handler; each handler returns the encoded reply.
// An op nobody registered is answered `unknown_op`, naming the known ones.
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
    if (const auto found = handlers_.find(request.op); found != handlers_.end()) return found->second(request);
    std::string known;
    for (const auto& [op, handler] : handlers_) known += (known.empty() ? "" : ", ") + op;
    return EncodeControlError(Status(ErrorCode::kUnknownOp, "unknown op '" + request.op + "' (known: " + known + ")"));
  }

 private:
  std::map<std::string, Handler> handlers_;
};

}  // namespace umi
