#include "host/result_cache.h"

#include <gtest/gtest.h>

namespace umi {
namespace {

using std::chrono::seconds;
using Clock = ResultCache::Clock;

TEST(ResultCache, KeepsAResultForTheWindowOnly) {
  ResultCache cache(seconds(300), 100);
  const Clock::time_point start{};
  cache.Remember("a", "result-a", 7, start);
  const ResultCache::Entry* found = cache.Find("a", start + seconds(300));
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(found->body, "result-a");
  EXPECT_EQ(found->fingerprint, 7u);
  EXPECT_EQ(cache.Find("a", start + seconds(301)), nullptr);
  EXPECT_EQ(cache.size(), 0u);
}

TEST(ResultCache, DropsTheOldestBeyondMaxEntries) {
  ResultCache cache(seconds(300), 2);
  const Clock::time_point start{};
  cache.Remember("a", "1", 0, start);
  cache.Remember("b", "2", 0, start + seconds(1));
  cache.Remember("c", "3", 0, start + seconds(2));
  EXPECT_EQ(cache.Find("a", start + seconds(2)), nullptr);
  EXPECT_NE(cache.Find("b", start + seconds(2)), nullptr);
  EXPECT_NE(cache.Find("c", start + seconds(2)), nullptr);
}

TEST(ResultCache, AnIdRememberedAgainKeepsItsNewerEntry) {
  ResultCache cache(seconds(10), 100);
  const Clock::time_point start{};
  cache.Remember("a", "old", 1, start);
  cache.Remember("a", "new", 2, start + seconds(8));
  const ResultCache::Entry* found = cache.Find("a", start + seconds(12));  // the first pair expired
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(found->body, "new");
}

TEST(ResultCache, AZeroWindowOrSizeKeepsNothing) {
  ResultCache none(seconds(0), 100);
  none.Remember("a", "x", 0, Clock::time_point{});
  EXPECT_EQ(none.size(), 0u);
  ResultCache empty(seconds(10), 0);
  empty.Remember("a", "x", 0, Clock::time_point{});
  EXPECT_EQ(empty.size(), 0u);
}

}  // namespace
}  // namespace umi
