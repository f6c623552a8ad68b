#include "host/lifecycle.h"

#include <gtest/gtest.h>

namespace umi {
namespace {

using std::chrono::seconds;
using Due = Lifecycle::Due;

TEST(Lifecycle, ADrainCancelsAtItsTimeoutThenAbandonsAfterTheGrace) {
  Lifecycle lifecycle(seconds(5));
  const Lifecycle::Clock::time_point start{};
  EXPECT_TRUE(lifecycle.serving());
  EXPECT_FALSE(lifecycle.NextDeadline());
  EXPECT_EQ(lifecycle.Tick(start + seconds(1000)), Due::kNothing);

  ASSERT_TRUE(lifecycle.BeginDrain(start, seconds(30)));
  EXPECT_FALSE(lifecycle.BeginDrain(start + seconds(1), seconds(1))) << "a second drain changes nothing";
  EXPECT_EQ(lifecycle.NextDeadline(), start + seconds(30));
  EXPECT_EQ(lifecycle.Tick(start + seconds(29)), Due::kNothing);
  EXPECT_EQ(lifecycle.Tick(start + seconds(30)), Due::kCancelRunning);
  EXPECT_EQ(lifecycle.state(), Lifecycle::State::kCancelling);
  EXPECT_EQ(lifecycle.Tick(start + seconds(31)), Due::kNothing) << "cancelled once";
  EXPECT_EQ(lifecycle.NextDeadline(), start + seconds(35));
  EXPECT_EQ(lifecycle.Tick(start + seconds(35)), Due::kAbandon);
}

TEST(Lifecycle, AZeroTimeoutCancelsAtOnce) {
  Lifecycle lifecycle(seconds(5));
  const Lifecycle::Clock::time_point start{};
  lifecycle.BeginDrain(start, seconds(0));
  EXPECT_EQ(lifecycle.Tick(start), Due::kCancelRunning);
}

}  // namespace
}  // namespace umi
