#include "transport/poller.h"

#include <algorithm>

namespace umi {

void Poller::Add(zmq::socket_t& socket, Interest interest, Handler handler) {
  watches_.push_back({{socket.handle(), 0, 0, 0}, std::move(interest), std::move(handler), {}});
}

void Poller::Add(int fd, Interest interest, Handler handler) {
  watches_.push_back({{nullptr, fd, 0, 0}, std::move(interest), std::move(handler), {}});
}

void Poller::Add(std::function<int()> fd, Interest interest, Handler handler) {
  watches_.push_back({{nullptr, -1, 0, 0}, std::move(interest), std::move(handler), std::move(fd)});
}

void Poller::AddTimer(DueIn due_in, std::function<void()> on_due) {
  timers_.push_back({std::move(due_in), std::move(on_due)});
}

void Poller::PollOnce(std::chrono::milliseconds at_most) {
  std::chrono::milliseconds timeout = at_most;
  for (const Timer& timer : timers_) {
    const std::optional<std::chrono::milliseconds> due = timer.due_in();
    if (!due) continue;
    const std::chrono::milliseconds wait = std::max(*due, std::chrono::milliseconds(0));
    timeout = timeout.count() < 0 ? wait : std::min(timeout, wait);
  }
  items_.resize(watches_.size());
  for (size_t i = 0; i < watches_.size(); ++i) {
    items_[i] = watches_[i].item;
    if (watches_[i].fd) items_[i].fd = watches_[i].fd();
    // poll(2) skips a negative descriptor.
    items_[i].events = items_[i].socket || items_[i].fd >= 0 ? watches_[i].interest() : 0;
  }
  zmq::poll(items_.data(), items_.size(), timeout);
  for (size_t i = 0; i < watches_.size(); ++i) {
    if (items_[i].revents != 0) watches_[i].handler(items_[i].revents);
  }
  for (const Timer& timer : timers_) {
    if (!timer.on_due) continue;
    const std::optional<std::chrono::milliseconds> due = timer.due_in();
    if (due && due->count() <= 0) timer.on_due();
  }
}

}  // namespace umi
