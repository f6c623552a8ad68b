#include "common/log_format.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <sstream>

namespace umi {
namespace {

TEST(LogFormat, JsonLinesCarryTheTaskWhileInScope) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  sink->set_formatter(MakeJsonFormatter("host-\"1\""));
  spdlog::logger logger("json-test", sink);
  logger.info("plain \"quoted\"\nline");
  {
    const std::string plugin = "probe", task = "t-7";
    LogTaskScope scope(plugin, task);
    logger.warn("inside");
  }
  logger.error("after");

  std::istringstream lines(out.str());
  std::vector<nlohmann::json> entries;
  for (std::string line; std::getline(lines, line);) entries.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[0]["message"], "plain \"quoted\"\nline");
  EXPECT_EQ(entries[0]["host"], "host-\"1\"");
  EXPECT_EQ(entries[0]["level"], "info");
  EXPECT_FALSE(entries[0].contains("task"));
  EXPECT_EQ(entries[1]["plugin"], "probe");
  EXPECT_EQ(entries[1]["task"], "t-7");
  EXPECT_EQ(entries[1]["level"], "warn") << "as --log-level spells it";
  const std::string time = entries[0]["time"];
  EXPECT_EQ(time.size(), 27u) << time;  // 2026-12-02T19:40:01.123456Z
  EXPECT_EQ(time.back(), 'Z') << "UTC";
  EXPECT_EQ(time[10], 'T');
  EXPECT_FALSE(entries[2].contains("plugin"));
}

// A plugin's own line: "[plugin task] " in text, fields only in JSON (before,
// the JSON message repeated them).
TEST(LogFormat, APluginsLineNamesItsTaskOnceInEachFormat) {
  const std::string plugin = "probe", task = "t\n7";
  std::ostringstream text, json;
  auto text_sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(text);
  text_sink->set_formatter(MakeTextFormatter("%v"));
  auto json_sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(json);
  json_sink->set_formatter(MakeJsonFormatter("h"));
  spdlog::logger logger("plugin-line-test", {text_sink, json_sink});
  {
    LogTaskScope scope(LogTaskScope::PluginLine{}, plugin, task);
    logger.info("decoded 25 frames");
  }
  logger.info("after");
  EXPECT_EQ(text.str(), "[probe t\\n7] decoded 25 frames\nafter\n");
  const auto entry = nlohmann::json::parse(json.str().substr(0, json.str().find('\n')));
  EXPECT_EQ(entry["message"], "decoded 25 frames");
  EXPECT_EQ(entry["task"], "t\n7");
}

TEST(LogFormat, JsonStringEscapesControlCharacters) {
  EXPECT_EQ(JsonString(std::string("a\x01" "b\tc", 5)), "\"a\\u0001b\\tc\"");
}

TEST(LogFormat, TextLinesCannotBeForged) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  sink->set_formatter(MakeTextFormatter("%l %v"));
  spdlog::logger logger("text-test", sink);
  logger.info("rejected task 'x\n2026-01-01 error FAKE: disk full\x1b[31m\xff'");
  // The forged line is indented, a continuation of the real one.
  EXPECT_EQ(out.str(), "info rejected task 'x\n    2026-01-01 error FAKE: disk full\\x1b[31m\\xff'\n");
}

TEST(LogFormat, JsonStringReplacesIllFormedUtf8) {
  const nlohmann::json parsed = nlohmann::json::parse(JsonString("id-\xff\xc3("));
  EXPECT_EQ(parsed, "id-\xEF\xBF\xBD\xEF\xBF\xBD(");
}

}  // namespace
}  // namespace umi
