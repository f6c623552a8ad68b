// Clock: where the host's parts read time, so a test can drive them on a
// virtual clock (drain deadlines, task timeouts, dedup expiry, the
// scheduler's reservation delay) without sleeping.
//
// Now() is monotonic (std::chrono::steady_clock's epoch); UnixSeconds() is
// wall time, only for what people read (result timestamps).
//
// Thread safety: SystemClock is stateless. ManualClock is for tests on one
// thread.
#pragma once

#include <chrono>

namespace umi {

class Clock {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  using Duration = std::chrono::steady_clock::duration;

  virtual ~Clock() = default;
  virtual TimePoint Now() const = 0;
  virtual double UnixSeconds() const = 0;
};

class SystemClock final : public Clock {
 public:
  TimePoint Now() const override { return std::chrono::steady_clock::now(); }
  double UnixSeconds() const override {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  }
  static const SystemClock& Instance() {
    static const SystemClock clock;
    return clock;
  }
};

// Starts at an arbitrary point and moves only when told.
class ManualClock final : public Clock {
 public:
  TimePoint Now() const override { return now_; }
  double UnixSeconds() const override { return 1.7e9 + std::chrono::duration<double>(now_ - TimePoint()).count(); }
  void Advance(Duration by) { now_ += by; }

 private:
  TimePoint now_ = TimePoint() + std::chrono::hours(1);
};

}  // namespace umi
