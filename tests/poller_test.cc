// Poller timers: a part says how long until it must run; the wait ends by
// then and the part runs once due, not before.
#include "transport/poller.h"

#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <future>

namespace umi {
namespace {

using std::chrono::milliseconds;

TEST(Poller, ADueTimerEndsAnUnlimitedWaitAndRuns) {
  Poller poller;
  int ran = 0;
  poller.AddTimer([] { return milliseconds(0); }, [&] { ++ran; });
  // Without the timer an unlimited wait with nothing registered never ends.
  auto turn = std::async(std::launch::async, [&] { poller.PollOnce(milliseconds(-1)); });
  ASSERT_EQ(turn.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_EQ(ran, 1);
}

TEST(Poller, ATimerNotDueOrUnarmedDoesNotRunWhileHandlersDo) {
  Poller poller;
  const int fd = eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK);  // readable now
  int handled = 0, later = 0, unarmed = 0;
  poller.Add(fd, [] { return static_cast<short>(ZMQ_POLLIN); }, [&](short) { ++handled; });
  poller.AddTimer([] { return milliseconds(60000); }, [&] { ++later; });
  poller.AddTimer([] { return std::optional<milliseconds>(); }, [&] { ++unarmed; });
  poller.PollOnce(milliseconds(-1));
  EXPECT_EQ(handled, 1);
  EXPECT_EQ(later, 0);
  EXPECT_EQ(unarmed, 0);
  close(fd);
}

TEST(Poller, AWakeOnlyTimerEndsTheWaitWithoutACallback) {
  Poller poller;
  poller.AddTimer([] { return milliseconds(-5); });  // overdue: wait 0
  auto turn = std::async(std::launch::async, [&] { poller.PollOnce(milliseconds(-1)); });
  EXPECT_EQ(turn.wait_for(std::chrono::seconds(30)), std::future_status::ready);
}

}  // namespace
}  // namespace umi
