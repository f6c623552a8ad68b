#include "transport/redis_connection.h"

#include <gtest/gtest.h>

namespace umi {
namespace {

TEST(RedisUrl, ParsesTheFormsOperatorsWrite) {
  auto tcp = RedisUrl::Parse("redis://:s3cret@cache.internal:6380/2");
  ASSERT_TRUE(tcp.ok()) << tcp.error();
  EXPECT_EQ(tcp->host, "cache.internal");
  EXPECT_EQ(tcp->port, 6380);
  EXPECT_EQ(tcp->db, 2);
  EXPECT_EQ(tcp->password, "s3cret");
  auto plain = RedisUrl::Parse("redis://localhost");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->port, 6379);
  EXPECT_EQ(plain->db, 0);
  auto unix_socket = RedisUrl::Parse("unix:///run/redis/redis.sock?db=3");
  ASSERT_TRUE(unix_socket.ok());
  EXPECT_EQ(unix_socket->unix_path, "/run/redis/redis.sock");
  EXPECT_EQ(unix_socket->db, 3);
}

TEST(RedisUrl, ThePasswordNeverReachesTextForPeople) {
  const auto url = RedisUrl::Parse("redis://user:s3cret@h:1/0");
  ASSERT_TRUE(url.ok());
  EXPECT_EQ(url->Redacted().find("s3cret"), std::string::npos) << url->Redacted();
  EXPECT_EQ(url->Redacted(), "redis://user:***@h:1");
}

// redis://user:pw@host logs in as that ACL user (AUTH user pw), as redis-py
// does; without a user, AUTH pw is the default user's.
TEST(RedisUrl, AUserInTheUrlIsTheAclUser) {
  const auto url = RedisUrl::Parse("redis://umi-host:s3cret@h:1/0");
  ASSERT_TRUE(url.ok());
  EXPECT_EQ(url->user, "umi-host");
  EXPECT_EQ(url->AuthArgs(), (std::vector<std::string>{"AUTH", "umi-host", "s3cret"}));
  const auto plain = RedisUrl::Parse("redis://:s3cret@h:1/0");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->AuthArgs(), (std::vector<std::string>{"AUTH", "s3cret"}));
}

// redis+sentinel://: the sentinels to ask, the master's name, its db.
TEST(RedisUrl, ASentinelUrlNamesItsSentinelsAndMaster) {
  const auto url = RedisUrl::Parse("redis+sentinel://farm:s3cret@s1:26380,s2/media-farm/3");
  ASSERT_TRUE(url.ok()) << url.error();
  EXPECT_EQ(url->sentinels, (std::vector<std::pair<std::string, int>>{{"s1", 26380}, {"s2", 26379}}));
  EXPECT_EQ(url->master, "media-farm");
  EXPECT_EQ(url->db, 3);
  EXPECT_EQ(url->user, "farm");
  EXPECT_EQ(url->password, "s3cret");
  EXPECT_EQ(url->Redacted(), "redis+sentinel://farm:***@s1:26380,s2:26379/media-farm/3");
  for (const char* bad : {"redis+sentinel://s1:26379", "redis+sentinel://s1:0/m", "redis+sentinel://s1,,s2/m"}) {
    const auto refused = RedisUrl::Parse(bad);
    ASSERT_FALSE(refused.ok()) << bad;
    EXPECT_NE(refused.error().find("redis+sentinel://"), std::string::npos) << refused.error();
  }
}

TEST(RedisUrl, BadUrlsSayWhatIsExpected) {
  for (const char* bad : {"http://h", "redis://", "redis://h:99999", "redis://h/x", "unix://relative.sock"}) {
    const auto url = RedisUrl::Parse(bad);
    ASSERT_FALSE(url.ok()) << bad;
    EXPECT_EQ(url.status().code(), ErrorCode::kInvalidConfig);
    EXPECT_NE(url.error().find("expected redis://"), std::string::npos) << url.error();
  }
}

TEST(RedisConnection, AnUnreachableServerIsUnavailableNotACrash) {
  RedisConnection connection;
  const auto url = RedisUrl::Parse("unix:///nonexistent/umi-test.sock");
  ASSERT_TRUE(url.ok());
  const Status status = connection.Connect(url.value(), std::chrono::milliseconds(100));
  EXPECT_EQ(status.code(), ErrorCode::kUnavailable);
  EXPECT_FALSE(connection.connected());
  EXPECT_EQ(connection.Command({"PING"}).status().code(), ErrorCode::kUnavailable);
}

}  // namespace
}  // namespace umi
