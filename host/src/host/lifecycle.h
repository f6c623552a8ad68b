// Lifecycle: the host's state from serving to the end of a drain, with its
// deadlines, in one place instead of flags on the loop.
//
//   serving --BeginDrain--> draining --drain timeout--> cancelling
//                                     --cancel grace--> (abandon what runs)
//
// NextDeadline is a Poller timer of the loop's; when it is due the loop asks
// Tick(now) and acts on the answer. Time is passed in: tests use a virtual
// clock.
//
// Thread safety: none; the event loop owns it.
#pragma once

#include <chrono>
#include <optional>

namespace umi {

class Lifecycle {
 public:
  using Clock = std::chrono::steady_clock;
  enum class State { kServing, kDraining, kCancelling };
  enum class Due {
    kNothing,
    kCancelRunning,  // the drain timeout passed: cancel what still runs (once)
    kAbandon,        // the cancel grace passed too: answer what runs and exit
  };

  explicit Lifecycle(Clock::duration cancel_grace) : cancel_grace_(cancel_grace) {}

  State state() const { return state_; }
  bool serving() const { return state_ == State::kServing; }

  // False when already draining.
  bool BeginDrain(Clock::time_point now, Clock::duration drain_timeout) {
    if (!serving()) return false;
    state_ = State::kDraining;
    drain_deadline_ = now + drain_timeout;
    return true;
  }

  Due Tick(Clock::time_point now) {
    if (state_ == State::kDraining && now >= drain_deadline_) {
      state_ = State::kCancelling;
      return Due::kCancelRunning;
    }
    if (state_ == State::kCancelling && now >= drain_deadline_ + cancel_grace_) return Due::kAbandon;
    return Due::kNothing;
  }

  std::optional<Clock::time_point> NextDeadline() const {
    switch (state_) {
      case State::kServing: return std::nullopt;
      case State::kDraining: return drain_deadline_;
      case State::kCancelling: return drain_deadline_ + cancel_grace_;
    }
    return std::nullopt;
  }

 private:
  Clock::duration cancel_grace_;
  State state_ = State::kServing;
  Clock::time_point drain_deadline_;
};

}  // namespace umi
