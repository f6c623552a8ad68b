// Poller: the event loop's only wait. Parts register what they want to
// watch (a ZeroMQ socket or a file descriptor), a function saying which
// events they want this turn (interest) and a handler for what happened.
// PollOnce waits on all of them at once, then calls the handlers of the
// ready ones in the order they were added. It knows nothing of tasks.
//
// Interest is asked again on every turn, so a part that must not read now
// (backpressure) returns 0 and its socket is not even polled for input.
//
// Timers, the same way: a part registers a function saying how long until
// it must run again (nothing: no need), asked every turn; PollOnce waits no
// longer than the earliest, and after the handlers calls each timer that
// is due. So deadlines register themselves; the loop lists none of them.
//
// Thread safety: none; one thread adds and polls.
#pragma once

#include <zmq.hpp>

#include <chrono>
#include <functional>
#include <optional>
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

  using DueIn = std::function<std::optional<std::chrono::milliseconds>()>;
  // `on_due` runs once `due_in` says 0 or less (after the handlers of that
  // turn); none: the timer only ends the wait (the part runs every turn).
  void AddTimer(DueIn due_in, std::function<void()> on_due = {});

  // Waits until something registered is ready, a timer is due or
  // `at_most` passes (-1: no limit), then runs the handlers of what is
  // ready and the timers that are due.
  void PollOnce(std::chrono::milliseconds at_most);

 private:
  struct Watch {
    zmq::pollitem_t item;
    Interest interest;
    Handler handler;
    std::function<int()> fd;  // set for a descriptor that may change
  };
  struct Timer {
    DueIn due_in;
    std::function<void()> on_due;
  };
  std::vector<Watch> watches_;
  std::vector<Timer> timers_;
  std::vector<zmq::pollitem_t> items_;  // reused every turn
};

}  // namespace umi
