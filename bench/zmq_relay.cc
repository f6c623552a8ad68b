// umi_zmq_relay: the end-to-end benchmark's reference, in a process of its
// own like umi-host. It binds a PULL and a PUSH socket on tcp loopback,
// prints "ready <in> <out>", then for each task decodes it with umi's
// protocol codec, encodes an ok result for it and pushes that: what a host
// must do at the least, without admission, scheduling or running. It exits
// after `count` tasks.
//
//   umi_zmq_relay COUNT
#include <zmq.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <variant>

#include "transport/protocol.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: umi_zmq_relay COUNT\n");
    return 2;
  }
  const long count = std::strtol(argv[1], nullptr, 10);
  zmq::context_t context;
  zmq::socket_t in(context, zmq::socket_type::pull), out(context, zmq::socket_type::push);
  in.bind("tcp://127.0.0.1:*");
  out.bind("tcp://127.0.0.1:*");
  std::printf("ready %s %s\n", in.get(zmq::sockopt::last_endpoint).c_str(),
              out.get(zmq::sockopt::last_endpoint).c_str());
  std::fflush(stdout);
  zmq::message_t message;
  for (long i = 0; i < count; ++i) {
    (void)in.recv(message);
    umi::Message decoded = umi::DecodeMessage(std::string_view(static_cast<const char*>(message.data()), message.size()));
    auto* task = std::get_if<umi::TaskMessage>(&decoded);
    umi::TaskResult result;
    if (task) {
      result.id = std::move(task->id);
      result.plugin = std::move(task->plugin);
      result.output_msgpack = std::string("\x80", 1);
      // The same fields as a host's answer to a noop task.
      const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
      result.started_at = now;
      result.finished_at = now;
      result.allocation.emplace();
      result.allocation->cpu_cores = umi::Quantity::FromDouble(1);
      result.allocation->cpu_threads = 1;
    } else {
      result = umi::RejectedResult(std::nullopt, "", umi::Status(umi::ErrorCode::kBadRequest, "not a task"));
    }
    const std::string body = umi::EncodeResult(result, "relay");
    out.send(zmq::buffer(body), zmq::send_flags::none);
  }
  out.set(zmq::sockopt::linger, -1);
  return 0;
}
