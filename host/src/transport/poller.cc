#include "transport/poller.h"

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

void Poller::PollOnce(std::chrono::milliseconds timeout) {
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
}

}  // namespace umi
