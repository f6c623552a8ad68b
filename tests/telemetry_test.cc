// Telemetry: counts, histograms, the recent-task ring and the renderers.
#include "telemetry/telemetry.h"
#include "transport/protocol.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace umi {
namespace {

TaskResult Finished(const std::string& id, const std::string& plugin, TaskStatus status, double run_ms) {
  TaskResult result;
  result.id = id;
  result.plugin = plugin;
  result.status = status;
  result.queued_ms = 1;
  result.run_ms = run_ms;
  result.started_at = 100;
  result.finished_at = 100 + run_ms / 1000;
  return result;
}

TEST(Telemetry, HistogramBucketsAreUpperBoundsInclusive) {
  Telemetry::Histogram h;
  const auto& bounds = Telemetry::BucketBounds();
  h.Observe(0.001, bounds);  // exactly a bound: goes in le="0.001"
  h.Observe(0.0011, bounds);
  h.Observe(1e6, bounds);  // beyond every bound: +Inf
  const size_t at = static_cast<size_t>(std::find(bounds.begin(), bounds.end(), 0.001) - bounds.begin());
  EXPECT_EQ(h.counts[at], 1u);
  EXPECT_EQ(h.counts[at + 1], 1u);
  EXPECT_EQ(h.counts.back(), 1u);
  EXPECT_EQ(h.count, 3u);
}

TEST(Telemetry, ConfiguredBucketBoundsReplaceTheBuiltInOnes) {
  Telemetry telemetry("host", 10, {1, 60, 600});
  telemetry.TaskFinished(0, Finished("a", "transcode", TaskStatus::kOk, 30000));  // 30 s
  telemetry.TaskFinished(0, RejectedResult(std::string("b"), "never_ran", Status(ErrorCode::kBadRequest, "x")));
  const std::string text = telemetry.PrometheusText();
  EXPECT_NE(text.find("umi_task_run_seconds_bucket{plugin=\"transcode\",le=\"1\"} 0"), std::string::npos) << text;
  EXPECT_NE(text.find("umi_task_run_seconds_bucket{plugin=\"transcode\",le=\"60\"} 1"), std::string::npos);
  EXPECT_NE(text.find("umi_task_run_seconds_bucket{plugin=\"transcode\",le=\"+Inf\"} 1"), std::string::npos);
  EXPECT_EQ(text.find("le=\"0.001\""), std::string::npos);  // none of the built-in bounds
  // A plugin whose tasks never started has empty buckets, not garbage.
  EXPECT_NE(text.find("umi_task_run_seconds_bucket{plugin=\"never_ran\",le=\"600\"} 0"), std::string::npos);
}

TEST(Telemetry, PrometheusEscapesLabelsAndCountsByPluginAndStatus) {
  Telemetry telemetry("host \"one\"\n");
  telemetry.TaskFinished(0, Finished("a", "noop", TaskStatus::kOk, 2));
  telemetry.TaskFinished(0, Finished("b", "noop", TaskStatus::kError, 2));
  telemetry.TaskFinished(0, RejectedResult(std::nullopt, "", Status(ErrorCode::kBadRequest, "garbage")));
  const std::string text = telemetry.PrometheusText();
  EXPECT_NE(text.find(R"(umi_info{host="host \"one\"\n",)"), std::string::npos) << text;
  EXPECT_NE(text.find("umi_tasks_total{plugin=\"noop\",status=\"ok\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("umi_tasks_total{plugin=\"noop\",status=\"error\"} 1\n"), std::string::npos);
  // A message with no plugin counts in the totals only, never as plugin "".
  EXPECT_EQ(text.find("plugin=\"\""), std::string::npos);
  EXPECT_NE(text.find("umi_task_run_seconds_count{plugin=\"noop\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("umi_task_run_seconds_bucket{plugin=\"noop\",le=\"+Inf\"} 2\n"), std::string::npos);
  const auto stats = nlohmann::json::parse(telemetry.StatsJson());
  EXPECT_EQ(stats["done"]["rejected"], 1);
  EXPECT_EQ(stats["done"]["ok"], 1);
}

TEST(Telemetry, NamesOfPluginsNotLoadedShareOneLabel) {
  Telemetry telemetry("h");
  telemetry.SetKnownPlugins({"noop"});
  for (int i = 0; i < 1000; ++i) {
    telemetry.TaskFinished(0, RejectedResult("t" + std::to_string(i), "made-up-" + std::to_string(i),
                                             Status(ErrorCode::kUnknownPlugin, "no such plugin")));
  }
  telemetry.TaskFinished(0, Finished("a", "noop", TaskStatus::kOk, 2));
  const std::string text = telemetry.PrometheusText();
  EXPECT_EQ(text.find("made-up-"), std::string::npos);
  EXPECT_NE(text.find("umi_tasks_total{plugin=\"_unknown\",status=\"rejected\"} 1000\n"), std::string::npos) << text;
  EXPECT_NE(text.find("umi_tasks_total{plugin=\"noop\",status=\"ok\"} 1\n"), std::string::npos);
  EXPECT_EQ(nlohmann::json::parse(telemetry.StatsJson())["plugins"].size(), 2u);
}

TEST(Telemetry, RendersIllFormedUtf8AsReplacementCharacters) {
  Telemetry telemetry("h");
  telemetry.TaskFinished(0, RejectedResult("t", "\xc3(", Status(ErrorCode::kBadRequest, "x")));
  TaskRecord record;
  record.id = "\xff\xfe";
  record.plugin = "noop";
  telemetry.TaskStarted(7, record);
  EXPECT_NO_THROW(nlohmann::json::parse(telemetry.StatsJson()));
  const auto recent = nlohmann::json::parse(telemetry.RecentJson(10));
  EXPECT_EQ(recent["tasks"][0]["id"], "\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(Telemetry, AStaleHeartbeatIsUnhealthy) {
  Telemetry telemetry("h");
  const auto now = std::chrono::steady_clock::now();
  EXPECT_EQ(telemetry.Unhealthy(now), "") << "not started: /readyz speaks for it";
  telemetry.SetLoad(0, 0, 0, PoolUsage{});
  EXPECT_EQ(telemetry.Unhealthy(std::chrono::steady_clock::now()), "");
  const std::string stuck = telemetry.Unhealthy(std::chrono::steady_clock::now() + Telemetry::kStuckAfter +
                                                std::chrono::seconds(1));
  EXPECT_NE(stuck.find("the event loop has not turned for"), std::string::npos) << stuck;
}

TEST(Telemetry, AnInlineRunIsCountedAndOnTheTimelineWithoutTaskStarted) {
  Telemetry telemetry("h", /*recent_capacity=*/4);
  TaskRecord record;
  record.id = "inline";
  record.plugin = "noop";
  record.started_at = 100;
  telemetry.TaskFinished(7, Finished("inline", "noop", TaskStatus::kOk, 1), &record);
  const std::vector<TaskRecord> recent = telemetry.Recent(10);
  ASSERT_EQ(recent.size(), 1u);
  EXPECT_EQ(recent[0].id, "inline");
  EXPECT_EQ(recent[0].status, "ok");
  EXPECT_TRUE(recent[0].finished_at.has_value());
  EXPECT_EQ(telemetry.Take().plugins.at("noop").done.at("ok"), 1u);
}

TEST(Telemetry, RecentKeepsTheNewestFinishedThenTheRunning) {
  Telemetry telemetry("h", /*recent_capacity=*/2);
  for (int i = 1; i <= 5; ++i) {  // around the ring of 2 twice
    TaskRecord record;
    record.id = "t" + std::to_string(i);
    record.plugin = "noop";
    record.started_at = 100 + i;
    telemetry.TaskStarted(static_cast<uint64_t>(i), record);
    telemetry.TaskFinished(static_cast<uint64_t>(i), Finished(record.id, "noop", TaskStatus::kOk, 1));
  }
  TaskRecord running;
  running.id = "r";
  running.started_at = 200;
  telemetry.TaskStarted(9, running);
  const std::vector<TaskRecord> recent = telemetry.Recent(10);
  ASSERT_EQ(recent.size(), 3u);
  EXPECT_EQ(recent[0].id, "t4");
  EXPECT_EQ(recent[1].id, "t5");
  EXPECT_EQ(recent[1].status, "ok");
  EXPECT_EQ(recent[2].id, "r");
  EXPECT_EQ(recent[2].status, "running");
  EXPECT_FALSE(recent[2].finished_at.has_value());
  const std::vector<TaskRecord> newest = telemetry.Recent(1);  // the limit applies to finished tasks
  ASSERT_EQ(newest.size(), 2u);
  EXPECT_EQ(newest[0].id, "t5");
}

}  // namespace
}  // namespace umi
