#include "host/result_cache.h"

#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <random>
#include <string>

namespace umi {
namespace {

using std::chrono::seconds;
using Clock = ResultCache::Clock;

TEST(ResultCache, KeepsAResultForTheWindowOnly) {
  ResultCache cache(seconds(300), 100);
  const Clock::time_point start{};
  cache.Remember("a", "result-a", {7, 8}, start);
  const ResultCache::Entry* found = cache.Find("a", start + seconds(300));
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(found->body, "result-a");
  EXPECT_EQ(found->fingerprint, (TaskFingerprint{7, 8}));
  EXPECT_EQ(cache.Find("a", start + seconds(301)), nullptr);
  EXPECT_EQ(cache.size(), 0u);
}

TEST(ResultCache, DropsTheOldestBeyondMaxEntries) {
  ResultCache cache(seconds(300), 2);
  const Clock::time_point start{};
  cache.Remember("a", "1", {}, start);
  cache.Remember("b", "2", {}, start + seconds(1));
  cache.Remember("c", "3", {}, start + seconds(2));
  EXPECT_EQ(cache.Find("a", start + seconds(2)), nullptr);
  EXPECT_NE(cache.Find("b", start + seconds(2)), nullptr);
  EXPECT_NE(cache.Find("c", start + seconds(2)), nullptr);
}

TEST(ResultCache, AnIdRememberedAgainKeepsItsNewerEntry) {
  ResultCache cache(seconds(10), 100);
  const Clock::time_point start{};
  cache.Remember("a", "old", {1}, start);
  cache.Remember("a", "new", {2}, start + seconds(8));
  const ResultCache::Entry* found = cache.Find("a", start + seconds(12));  // the first pair expired
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(found->body, "new");
}

TEST(ResultCache, AZeroWindowOrSizeKeepsNothing) {
  ResultCache none(seconds(0), 100);
  none.Remember("a", "x", {}, Clock::time_point{});
  EXPECT_EQ(none.size(), 0u);
  ResultCache empty(seconds(10), 0);
  empty.Remember("a", "x", {}, Clock::time_point{});
  EXPECT_EQ(empty.size(), 0u);
}

// The ring and its index against the obvious model (a map by id plus the
// order of arrival), through growth, wrap-around, replaced ids, expiry by
// time and by count, and limits that change on the way.
TEST(ResultCache, AgreesWithAPlainMapThroughRandomUse) {
  std::mt19937 random(17);
  size_t max_entries = 64;
  seconds window(50);
  ResultCache cache(window, max_entries);
  struct Model {
    std::string body;
    Clock::time_point at;
    TaskFingerprint fingerprint;
  };
  std::map<std::string, Model> model;
  std::deque<std::pair<Clock::time_point, std::string>> order;
  auto expire = [&](Clock::time_point now, size_t keep) {
    while (!order.empty() && (now - order.front().first > window || order.size() > keep)) {
      const auto& [at, id] = order.front();
      if (const auto found = model.find(id); found != model.end() && found->second.at == at) model.erase(found);
      order.pop_front();
    }
  };
  Clock::time_point now{};
  for (int step = 0; step < 200000; ++step) {
    if (step % 20000 == 10000) {  // a reload changes the limits
      max_entries = 16 + random() % 200;
      window = seconds(5 + random() % 100);
      cache.SetLimits(window, max_entries);
    }
    now += std::chrono::milliseconds(random() % 1500);
    const std::string id = "task-" + std::to_string(random() % 400);
    if (random() % 3 == 0) {
      const std::string body = "body-" + std::to_string(step) + std::string(random() % 40, 'x');
      cache.Remember(id, body, {static_cast<uint64_t>(step)}, now);
      expire(now, max_entries - 1);
      model[id] = Model{body, now, {static_cast<uint64_t>(step)}};
      order.emplace_back(now, id);
    } else {
      const ResultCache::Entry* found = cache.Find(id, now);
      expire(now, max_entries);
      const auto expected = model.find(id);
      ASSERT_EQ(found != nullptr, expected != model.end()) << "step " << step << " id " << id;
      if (found) {
        EXPECT_EQ(found->body, expected->second.body);
        EXPECT_EQ(found->fingerprint, expected->second.fingerprint);
        EXPECT_EQ(found->at, expected->second.at);
      }
    }
    ASSERT_EQ(cache.size(), model.size()) << "step " << step;
  }
}

}  // namespace
}  // namespace umi
