#include "common/text.h"

#include <gtest/gtest.h>

namespace umi {
namespace {

TEST(Text, ValidUtf8AcceptsWellFormedAndRefusesTheRest) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(IsValidUtf8("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x8E\xAC"));
  EXPECT_FALSE(IsValidUtf8("\xff"));
  EXPECT_FALSE(IsValidUtf8("\xC3("));            // a lead without its continuation
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));         // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));     // a surrogate
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xE2\x82"));         // truncated
}

TEST(Text, ToValidUtf8ReplacesEachBadByte) {
  EXPECT_EQ(ToValidUtf8("a\xffz"), "a\xEF\xBF\xBDz");
  EXPECT_EQ(ToValidUtf8("\xC3("), "\xEF\xBF\xBD(");
  EXPECT_EQ(ToValidUtf8("caf\xC3\xA9"), "caf\xC3\xA9");
}

TEST(Text, SplitColonListKeepsTheNonEmptyParts) {
  EXPECT_EQ(SplitColonList("/a::/b c:"), (std::vector<std::string>{"/a", "/b c"}));
  EXPECT_TRUE(SplitColonList("").empty());
  EXPECT_TRUE(SplitColonList(nullptr).empty());
}

TEST(Text, EscapeForLogKeepsOneLine) {
  EXPECT_EQ(EscapeForLog("a\nb\r\tc\\d\x7f\x01"), "a\\nb\\r\\tc\\\\d\\x7f\\x01");
  EXPECT_EQ(EscapeForLog("caf\xC3\xA9\xff"), "caf\xC3\xA9\\xff");
  EXPECT_EQ(EscapeForLog("Traceback:\n  File x\r\n", /*indent_newlines=*/true), "Traceback:\n      File x\\r\n    ");
}

TEST(Text, ClosestMatchSuggestsOnlyNearMisses) {
  EXPECT_EQ(ClosestMatch("sleeep", {"spin", "sleep", "noop"}), "sleep");
  EXPECT_EQ(ClosestMatch("coers", {"cores", "threads"}), "cores");
  EXPECT_EQ(ClosestMatch("checksum_v2", {"checksum"}), "") << "three edits away: not a typo";
  EXPECT_EQ(ClosestMatch("anything", {}), "");
}

}  // namespace
}  // namespace umi
