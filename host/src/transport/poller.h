// Poller: the event loop's only wait. Parts register what they want to
// watch (a ZeroMQ socket or a file descriptor), a function saying which
// events they want this turn (interest) and a handler for what happened.
// PollOnce waits on all of them at once, then calls the handlers of the
// ready ones in the order they were added. It knows nothing of tasks.
//
// Interest is asked again on every turn, so a part that must not read now
// (backpressure) returns 0 and its socket is not even polled for input.
//
// Thread safety: none; one thread adds and polls.
#pragma once

#include <zmq.hpp>

#include <chrono>
#include <functional>
#include <vector>

namespace umi {

class Poller {
 public:
  using Interest = std::function<short()>;       // ZMQ_POLLIN | ZMQ_POLLOUT, or 0
  using Handler = std::function<void(short revents)>;

  void Add(zmq::socket_t& socket, Interest interest, Handler handler);
  void Add(int fd, Interest interest, Handler handler);
  // A descriptor that may change (a connection that reconnects); -1: none now.
  void Add(std::function<int()> fd, Interest interest, Handler handler);

  // Waits until something registered is ready or `timeout` passes (-1: no
  // limit), then runs the handlers of what is ready.
  void PollOnce(std::chrono::milliseconds timeout);

 private:
  struct Watch {
    zmq::pollitem_t item;
    Interest interest;
    Handler handler;
    std::function<int()> fd;  // set for a descriptor that may change
  };
  std::vector<Watch> watches_;
  std::vector<zmq::pollitem_t> items_;  // reused every turn
};

}  // namespace umi
