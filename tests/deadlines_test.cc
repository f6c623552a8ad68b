#include "host/deadlines.h"

#include <gtest/gtest.h>

namespace umi {
namespace {

using std::chrono::milliseconds;

TEST(Deadlines, ExpireInTimeOrderOnceAndNotAfterRemoval) {
  Deadlines deadlines;
  const Deadlines::Clock::time_point start{};
  deadlines.Add(1, start + milliseconds(300));
  deadlines.Add(2, start + milliseconds(100));
  deadlines.Add(3, start + milliseconds(200));
  deadlines.Add(4, start + milliseconds(100));
  EXPECT_EQ(deadlines.Next(), start + milliseconds(100));
  deadlines.Remove(4);  // ended before its timeout
  EXPECT_TRUE(deadlines.Expired(start + milliseconds(99)).empty());
  EXPECT_EQ(deadlines.Expired(start + milliseconds(200)), (std::vector<uint64_t>{2, 3}));
  EXPECT_TRUE(deadlines.Expired(start + milliseconds(200)).empty()) << "each once";
  EXPECT_EQ(deadlines.Next(), start + milliseconds(300));
  deadlines.Add(1, start + milliseconds(1000));  // moved
  EXPECT_TRUE(deadlines.Expired(start + milliseconds(999)).empty());
  EXPECT_EQ(deadlines.Expired(start + milliseconds(1000)), std::vector<uint64_t>{1});
  EXPECT_FALSE(deadlines.Next());
  EXPECT_EQ(deadlines.size(), 0u);
}

}  // namespace
}  // namespace umi
