// Operations end to end: the HTTP endpoint (/metrics, /healthz, /readyz,
// the JSON API, the dashboard in headless Chromium), config reload (rpc and
// SIGHUP, valid and invalid) and systemd notifications, all against the
// real umi-host.
#include <gtest/gtest.h>

#include <httplib.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "support/host_process.h"
#include "support/wire.h"

namespace umi::testing {
namespace {

namespace fs = std::filesystem;

struct Http {
  explicit Http(const std::string& url) : client(url) { client.set_read_timeout(kGuardTime); }
  httplib::Result Get(const std::string& path) { return client.Get(path); }
  httplib::Client client;
};

// Prometheus text format: "# HELP"/"# TYPE" comments and samples
// `name{label="value",...} number`. Parses every sample, failing the test
// on any line that is neither.
std::map<std::string, double> ParsePrometheus(const std::string& text) {
  static const std::regex sample(R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$)");
  static const std::regex comment(R"(^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$)");
  std::map<std::string, double> samples;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    std::smatch match;
    if (std::regex_match(line, comment)) continue;
    if (!std::regex_match(line, match, sample)) {
      ADD_FAILURE() << "not Prometheus text: '" << line << "'";
      continue;
    }
    const std::string value = match[3];
    samples[match[1].str() + match[2].str()] = value == "+Inf" ? INFINITY : std::stod(value);
  }
  return samples;
}

// An rpc reply's fields; they point into `handle`, which keeps them alive.
struct Reply {
  msgpack::object_handle handle;
  std::map<std::string, msgpack::object> fields;
  const msgpack::object& at(const std::string& key) const { return fields.at(key); }
};

// Sends a control request and returns its reply. Task results that arrive
// on the same connection first (tasks sent over rpc) go to `results`.
Reply Control(RpcClient& rpc, const std::string& op, std::vector<Result>* results = nullptr) {
  rpc.Send(PackControl(op));
  while (true) {
    const std::string bytes = rpc.Receive();
    Reply reply{msgpack::unpack(bytes.data(), bytes.size()), {}};
    reply.fields = reply.handle.get().as<std::map<std::string, msgpack::object>>();
    if (reply.fields.count("ok")) return reply;
    if (!results) throw std::runtime_error("a task result where a control reply was expected");
    results->push_back(ParseResult(bytes));
  }
}

TEST(HttpE2E, MetricsAreValidPrometheusTextWithTheTasksThatRan) {
  HostProcess host;
  ASSERT_EQ(host.endpoint("http").rfind("http://127.0.0.1:", 0), 0u);
  for (int i = 0; i < 3; ++i) host.Send(PackTask({.id = "n" + std::to_string(i), .plugin = "noop"}));
  host.Send(PackTask({.id = "u", .plugin = "no_such_plugin"}));
  host.Send("\xc1 not msgpack");
  host.Send(PackTask({.id = "g", .plugin = "gpu_sleep", .input = {{"ms", 1}}}));
  const std::vector<Result> results = host.Results(6);  // the malformed one is answered too

  Http http(host.endpoint("http"));
  const auto response = http.Get("/metrics");
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->get_header_value("Content-Type").rfind("text/plain; version=0.0.4", 0), 0u);
  const auto metrics = ParsePrometheus(response->body);
  EXPECT_EQ(metrics.at(R"(umi_tasks_total{plugin="noop",status="ok"})"), 3);
  // A name that is not loaded never becomes a label of its own.
  EXPECT_EQ(metrics.at(R"(umi_tasks_total{plugin="_unknown",status="rejected"})"), 1);
  EXPECT_EQ(metrics.count(R"(umi_tasks_total{plugin="no_such_plugin",status="rejected"})"), 0u);
  EXPECT_EQ(metrics.at("umi_dropped_replies_total"), 0);
  EXPECT_EQ(metrics.at("umi_config_fallback"), 0);
  EXPECT_GT(metrics.at("umi_loop_last_tick_seconds"), 1.7e9);
  EXPECT_EQ(metrics.at(R"(umi_tasks_total{plugin="gpu_sleep",status="ok"})"), 1);
  EXPECT_EQ(metrics.at("umi_malformed_messages_total"), 1);
  EXPECT_EQ(metrics.at("umi_queue_depth"), 0);
  EXPECT_EQ(metrics.at("umi_ready"), 1);
  EXPECT_EQ(metrics.at(R"(umi_task_run_seconds_count{plugin="noop"})"), 3);
  EXPECT_EQ(metrics.at(R"(umi_task_run_seconds_bucket{plugin="noop",le="+Inf"})"), 3);
  EXPECT_EQ(metrics.at(R"(umi_task_queue_seconds_count{plugin="gpu_sleep"})"), 1);
  // Buckets are cumulative: none holds more than the count.
  for (const auto& [name, value] : metrics) {
    if (name.rfind(R"(umi_task_run_seconds_bucket{plugin="noop")", 0) == 0) {
      EXPECT_LE(value, 3) << name;
    }
  }
  // The pool as the test config sizes it (24 cores, 48 threads, 128 GiB, 1 GPU).
  EXPECT_EQ(metrics.at("umi_pool_cpu_threads_capacity"), 48);
  EXPECT_EQ(metrics.at("umi_pool_memory_capacity_bytes"), 128.0 * 1024 * 1024 * 1024);
  EXPECT_EQ(metrics.at("umi_pool_cpu_threads_used"), 0);
  EXPECT_EQ(metrics.at(R"(umi_gpu_used_ratio{gpu="0"})"), 0);
  EXPECT_EQ(metrics.at(R"(umi_gpu_capacity_ratio{gpu="0"})"), 1);
  // Every loaded plugin's series start at 0, before its first task.
  EXPECT_EQ(metrics.at(R"(umi_tasks_total{plugin="sleep",status="crashed"})"), 0);
  EXPECT_EQ(metrics.at(R"(umi_tasks_queued{plugin="sleep"})"), 0);
  EXPECT_EQ(metrics.at("umi_oldest_queued_age_seconds"), 0);
  EXPECT_EQ(metrics.at("umi_reading_tasks"), 1);
  EXPECT_GT(metrics.at("process_resident_memory_bytes"), 0);
  EXPECT_GT(metrics.at("process_start_time_seconds"), 1.7e9);
  EXPECT_GT(metrics.at("process_open_fds"), 0);
  EXPECT_EQ(metrics.at(R"(umi_plugin_load_failures_total)"), 0);
}

TEST(HttpE2E, HealthzAndReadyzFollowTheHostsState) {
  HostProcess host;
  Http http(host.endpoint("http"));
  auto health = http.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  auto ready = http.Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);

  // A running task keeps the draining host up while we look. It goes over
  // rpc, so the stats request after it on the same connection sees it.
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  rpc.Send(PackTask({.id = "long", .plugin = "sleep", .input = {{"ms", 1500}}}));
  const auto stats = Control(rpc, "stats");
  ASSERT_EQ(stats.at("running").as<int>(), 1);
  const auto drained = Control(rpc, "drain");
  ASSERT_TRUE(drained.at("ok").as<bool>());
  ready = http.Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 503);
  EXPECT_EQ(ready->body, "not ready: draining\n");
  health = http.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(ParseResult(rpc.Receive()).status, "ok");
  EXPECT_EQ(host.Stop(), 0);
}

TEST(HttpE2E, ApiGivesStatsAndRecentTasksWithTheirGrants) {
  HostProcess host;
  host.Send(PackTask({.id = "c", .plugin = "sleep", .input = {{"ms", 1}}}));
  host.Send(PackTask({.id = "g", .plugin = "gpu_sleep", .input = {{"ms", 1}}}));
  host.Results(2);
  Http http(host.endpoint("http"));

  const auto stats_response = http.Get("/api/stats");
  ASSERT_TRUE(stats_response);
  const auto stats = nlohmann::json::parse(stats_response->body);
  EXPECT_EQ(stats["host"], "test-host");
  EXPECT_EQ(stats["status"], "serving");
  EXPECT_EQ(stats["done"]["ok"], 2);
  EXPECT_EQ(stats["plugins"]["sleep"]["run_ms"]["samples"], 1);
  EXPECT_EQ(stats["pool"]["cpu_threads"]["total"], 48);
  EXPECT_EQ(stats["pool"]["gpus"].size(), 1u);

  const auto recent_response = http.Get("/api/tasks/recent?limit=10");
  ASSERT_TRUE(recent_response);
  const auto recent = nlohmann::json::parse(recent_response->body);
  EXPECT_EQ(recent["cpu_threads"], 48);
  EXPECT_EQ(recent["gpus"], 1);
  std::map<std::string, nlohmann::json> tasks;
  for (const auto& task : recent["tasks"]) tasks[task["id"]] = task;
  ASSERT_EQ(tasks.size(), 2u);
  EXPECT_EQ(tasks["c"]["status"], "ok");
  EXPECT_EQ(tasks["c"]["cpu_threads"], 4);  // the cpu_task group
  EXPECT_TRUE(tasks["c"]["gpu_ids"].empty());
  EXPECT_EQ(tasks["g"]["gpu_ids"], nlohmann::json::array({0}));
  EXPECT_EQ(tasks["g"]["gpu_share"], 1.0);
  EXPECT_LE(tasks["g"]["started_at"].get<double>(), tasks["g"]["finished_at"].get<double>());

  // The backlog the host sampled since it started (a sample a second, the
  // first as it opened): what a dashboard opened now draws first.
  const auto backlog_response = http.Get("/api/backlog");
  ASSERT_TRUE(backlog_response);
  const auto backlog = nlohmann::json::parse(backlog_response->body);
  ASSERT_TRUE(backlog.is_array());
  ASSERT_GE(backlog.size(), 1u);
  EXPECT_TRUE(backlog[0].contains("queued") && backlog[0].contains("running"));
  EXPECT_LE(backlog[0]["t"].get<double>(), recent["now"].get<double>() * 1000);

  const auto bad_limit = http.Get("/api/tasks/recent?limit=lots");
  ASSERT_TRUE(bad_limit);
  EXPECT_EQ(bad_limit->status, 400);
  const auto missing = http.Get("/nope");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
}

TEST(HttpE2E, HttpCanBeTurnedOffAndABusyPortIsAClearError) {
  HostProcess off({.extra_args = {"--http", "off"}});
  EXPECT_EQ(off.Stop(), 0);

  HostProcess first;
  const std::string url = first.endpoint("http");
  const std::string port = url.substr(url.rfind(':') + 1);
  TempDir dir;
  const auto config = dir.Write("config.yaml", TestConfigYaml());
  const CommandOutput second = RunCommand({UMI_HOST_BINARY, "--config", config.string(), "--http", "127.0.0.1:" + port,
                                           "--tasks", "tcp://127.0.0.1:*", "--results", "tcp://127.0.0.1:*",
                                           "--rpc", "tcp://127.0.0.1:*", "--events", "tcp://127.0.0.1:*"},
                                          /*merge_stderr=*/true);
  EXPECT_EQ(second.exit_code, 1);
  EXPECT_NE(second.out.find("http: cannot listen on 127.0.0.1:" + port), std::string::npos) << second.out;
}

// The dashboard in a real browser: it must draw a bar for every task that
// ran, CPU tasks in CPU lanes and GPU tasks on their GPU's row.
TEST(HttpE2E, DashboardDrawsTheTasksThatRanInHeadlessChromium) {
  const char* chromium = fs::exists("/usr/bin/chromium") ? "/usr/bin/chromium" : nullptr;
  if (!chromium) GTEST_SKIP() << "chromium is not installed (scripts/bootstrap installs it)";
  HostProcess host;
  for (int i = 0; i < 3; ++i) {
    host.Send(PackTask({.id = "gpu-" + std::to_string(i), .plugin = "gpu_sleep", .input = {{"ms", 300}}}));
    host.Send(PackTask({.id = "cpu-" + std::to_string(i), .plugin = "sleep", .input = {{"ms", 900}}}));
  }
  host.Send(PackTask({.id = "lost", .plugin = "no_such_plugin"}));
  host.Send(PackFlow("fl", {{"first", {}, {}, "sleep", {{"ms", 50}}}, {"second", {}, {"first"}, "sleep", {{"ms", 50}}}}));
  host.Results(8);

  const fs::path artifacts = fs::path(UMI_TEST_ARTIFACT_DIR);
  fs::create_directories(artifacts);
  const fs::path screenshot = artifacts / "dashboard.png";
  fs::remove(screenshot);
  TempDir profile;
  const std::vector<std::string> browser = {"/usr/bin/timeout", "120", chromium, "--headless", "--no-sandbox", "--disable-gpu",
                                            "--disable-dev-shm-usage", "--user-data-dir=" + profile.path().string(),
                                            "--window-size=1200,900", "--virtual-time-budget=5000"};
  std::vector<std::string> dump = browser;
  dump.insert(dump.end(), {"--dump-dom", host.endpoint("http") + "/?task=cpu-1"});
  const CommandOutput dom = RunCommand(dump);
  ASSERT_EQ(dom.exit_code, 0) << dom.out;

  // Every bar: <rect class="bar" data-task="..." data-plugin="..." data-row="...">
  static const std::regex bar(R"re(<rect class="bar" data-task="([^"]+)" data-plugin="([^"]+)" data-row="([^"]+)")re");
  std::map<std::string, std::string> rows;
  for (auto it = std::sregex_iterator(dom.out.begin(), dom.out.end(), bar); it != std::sregex_iterator(); ++it) {
    rows[(*it)[1]] = (*it)[3];
  }
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(rows["gpu-" + std::to_string(i)], "gpu0") << dom.out.substr(0, 2000);
    EXPECT_EQ(rows["cpu-" + std::to_string(i)], "cpu");
  }
  EXPECT_EQ(rows.size(), 8u);
  EXPECT_NE(dom.out.find("serving"), std::string::npos);
  // Rates, queue-time percentiles and the oldest wait; the backlog over time;
  // the breakdowns by plugin and by error code.
  for (const char* figure : {"ok/s", "failed/s", "queue p90 ms", "queue p99 ms", "oldest waiting s"}) {
    EXPECT_NE(dom.out.find(std::string("data-figure=\"") + figure + "\""), std::string::npos) << figure;
  }
  EXPECT_NE(dom.out.find("data-series=\"queued\""), std::string::npos);
  // The backlog line starts from the host's own samples (before: empty on a
  // fresh page); ?task= looks a task up by id; plugins get colours apart
  // (before: a hash that gave two near-identical greens).
  static const std::regex seeded(R"re(id="backlog"[^>]*data-seeded="([0-9]+)")re");
  std::smatch seeded_match;
  ASSERT_TRUE(std::regex_search(dom.out, seeded_match, seeded)) << dom.out.substr(0, 2000);
  EXPECT_GE(std::stoi(seeded_match[1]), 1);
  EXPECT_NE(dom.out.find("<tr data-found=\"status\"><th>status</th><td>ok</td></tr>"), std::string::npos);
  EXPECT_NE(dom.out.find("<tr data-found=\"plugin\"><th>plugin</th><td>sleep</td></tr>"), std::string::npos);
  // A flow's id shows its steps in the order they ran, and marks their bars.
  std::vector<std::string> flow_dump = browser;
  flow_dump.insert(flow_dump.end(), {"--dump-dom", host.endpoint("http") + "/?task=fl"});
  const CommandOutput flow_dom = RunCommand(flow_dump);
  ASSERT_EQ(flow_dom.exit_code, 0) << flow_dom.out;
  const size_t first_row = flow_dom.out.find("<tr data-flow-step=\"first\"><td>first</td><td>sleep</td><td>ok</td>");
  const size_t second_row = flow_dom.out.find("<tr data-flow-step=\"second\"><td>second</td><td>sleep</td><td>ok</td>");
  ASSERT_NE(first_row, std::string::npos) << flow_dom.out.substr(0, 4000);
  ASSERT_NE(second_row, std::string::npos);
  EXPECT_LT(first_row, second_row);
  EXPECT_NE(flow_dom.out.find("data-task=\"fl/second\" data-plugin=\"sleep\" data-row=\"cpu\""), std::string::npos);
  static const std::regex selected(R"re(<rect [^>]*data-flow="selected")re");
  EXPECT_EQ(std::distance(std::sregex_iterator(flow_dom.out.begin(), flow_dom.out.end(), selected),
                          std::sregex_iterator()), 2);
  static const std::regex swatch(R"re(<i style="background:([^"]+)"></i>([a-z_]+)<)re");
  std::map<std::string, std::string> colours;
  for (auto it = std::sregex_iterator(dom.out.begin(), dom.out.end(), swatch); it != std::sregex_iterator(); ++it) {
    colours[(*it)[2]] = (*it)[1];
  }
  ASSERT_TRUE(colours.count("sleep") && colours.count("gpu_sleep")) << dom.out.substr(0, 2000);
  EXPECT_NE(colours["sleep"], colours["gpu_sleep"]);
  EXPECT_EQ(colours["sleep"].front(), '#') << "from the palette, not a hashed hue: " << colours["sleep"];
  EXPECT_NE(dom.out.find("data-series=\"running\""), std::string::npos);
  EXPECT_NE(dom.out.find("<tr data-plugin-row=\"sleep\"><td>sleep</td>"), std::string::npos);
  EXPECT_NE(dom.out.find("<tr data-code=\"unknown_plugin\"><td>unknown_plugin</td><td>1</td>"), std::string::npos)
      << dom.out.substr(0, 4000);

  std::vector<std::string> shot = browser;
  shot.insert(shot.end(), {"--screenshot=" + screenshot.string(), host.endpoint("http") + "/"});
  const CommandOutput picture = RunCommand(shot, /*merge_stderr=*/true);
  ASSERT_EQ(picture.exit_code, 0) << picture.out;
  ASSERT_TRUE(fs::exists(screenshot));
  std::ifstream png(screenshot, std::ios::binary);
  char magic[8] = {};
  png.read(magic, sizeof(magic));
  EXPECT_EQ(std::string(magic + 1, 3), "PNG");
  EXPECT_GT(fs::file_size(screenshot), 10000u);
}

// ---- reload ------------------------------------------------------------------

void Rewrite(const fs::path& path, const std::string& contents) {
  std::ofstream out(path, std::ios::trunc);
  out << contents;
}

// The test config with the sleep plugin's entry replaced.
std::string ConfigWithSleep(const std::string& entry) {
  std::string config = TestConfigYaml();
  const std::string old_entry = "  sleep: {task_group: cpu_task}\n";
  return config.replace(config.find(old_entry), old_entry.size(), "  sleep: " + entry + "\n");
}

TEST(ReloadE2E, AValidChangeAppliesToTasksNotYetStartedAndSparesRunningOnes) {
  HostProcess host;
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  std::vector<Result> over_rpc;
  rpc.Send(PackTask({.id = "running", .plugin = "sleep", .input = {{"ms", 1000}}}));
  ASSERT_EQ(Control(rpc, "stats", &over_rpc).at("running").as<int>(), 1);

  // sleep tasks now take 6 threads each and one at a time.
  Rewrite(host.config_path(), ConfigWithSleep("{task_group: cpu_task, threads: 6, max_instances: 1}"));
  const auto reply = Control(rpc, "reload", &over_rpc);
  ASSERT_TRUE(reply.at("ok").as<bool>());
  EXPECT_TRUE(reply.at("restart_needed").as<std::vector<std::string>>().empty());

  host.Send(PackTask({.id = "a", .plugin = "sleep", .input = {{"ms", 200}}}));
  host.Send(PackTask({.id = "b", .plugin = "sleep", .input = {{"ms", 200}}}));
  std::map<std::string, Result> results;
  for (const Result& r : host.Results(2)) results[*r.id] = r;
  if (over_rpc.empty()) over_rpc.push_back(ParseResult(rpc.Receive()));
  results["running"] = over_rpc.front();
  EXPECT_EQ(results["running"].status, "ok");
  EXPECT_EQ(results["running"].cpu_threads, 4);  // granted before the reload
  EXPECT_EQ(results["a"].cpu_threads, 6);
  EXPECT_EQ(results["b"].cpu_threads, 6);
  EXPECT_FALSE(Overlap(results["a"], results["b"])) << "max_instances: 1 after the reload";
  EXPECT_FALSE(Overlap(results["running"], results["a"]));
}

TEST(ReloadE2E, AnInvalidConfigIsRefusedWithTheReasonAndTheOldOneStays) {
  HostProcess host;
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  Rewrite(host.config_path(), "hardware:\n  cpu: {cores: 4, coers: 8}\n  memory: {total_gb: 1}\n");
  const auto reply = Control(rpc, "reload");
  EXPECT_FALSE(reply.at("ok").as<bool>());
  const auto error = reply.at("error").as<std::map<std::string, std::string>>();
  EXPECT_EQ(error.at("code"), "invalid_config");
  EXPECT_NE(error.at("message").find("hardware.cpu.coers: unknown key, did you mean 'cores'?"), std::string::npos)
      << error.at("message");

  // A pool too small for the config's own task groups is refused too.
  std::string small = TestConfigYaml();
  small.replace(small.find("cores: 24, threads: 48"), 22, "cores: 2, threads: 2");
  Rewrite(host.config_path(), small);
  const auto too_small = Control(rpc, "reload");
  EXPECT_FALSE(too_small.at("ok").as<bool>());

  host.Send(PackTask({.id = "still", .plugin = "sleep", .input = {{"ms", 1}}}));
  const Result result = host.NextResult();
  EXPECT_EQ(result.status, "ok");
  EXPECT_EQ(result.cpu_threads, 4);  // the old cpu_task group
  const auto stats = Control(rpc, "stats");
  const auto pool = stats.at("pool").as<std::map<std::string, msgpack::object>>();
  EXPECT_EQ((pool.at("cpu_threads").as<std::map<std::string, double>>().at("total")), 48);

  Http http(host.endpoint("http"));
  const auto metrics = ParsePrometheus(http.Get("/metrics")->body);
  EXPECT_EQ(metrics.at(R"(umi_config_reloads_total{result="refused"})"), 2);
}

// Issue 15's operator: transport limits and CURVE added to a running host's
// YAML used to be reported applied while nothing changed.
TEST(ReloadE2E, TransportAndCurveChangesAreRestartNeededAndMissingKeyFilesRefused) {
  HostProcess host;
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  const std::string transport = "transport: {tasks_hwm: 10, max_message_bytes: 100000}\n";
  Rewrite(host.config_path(), TestConfigYaml() + transport +
                                  "security: {curve: {secret_key_file: missing.key, authorized_keys_file: missing.pub}}\n");
  const auto refused = Control(rpc, "reload");
  EXPECT_FALSE(refused.at("ok").as<bool>());
  const auto error = refused.at("error").as<std::map<std::string, std::string>>();
  EXPECT_NE(error.at("message").find("security.curve.secret_key_file"), std::string::npos) << error.at("message");

  Rewrite(host.config_path(), TestConfigYaml() + transport + "scheduler: {max_queued: 77}\n");
  const auto applied = Control(rpc, "reload");
  ASSERT_TRUE(applied.at("ok").as<bool>());
  EXPECT_EQ(applied.at("restart_needed").as<std::vector<std::string>>(),
            (std::vector<std::string>{"transport.tasks_hwm", "transport.max_message_bytes"}));
  EXPECT_EQ(applied.at("applied").as<std::vector<std::string>>(), std::vector<std::string>{"scheduler"})
      << "the reply says what is in force, and only that";
}

TEST(ReloadE2E, NewPluginLibrariesAreLoaded) {
  TempDir plugins;
  fs::copy_file(fs::path(UMI_TEST_PLUGIN_DIR) / "noop.so", plugins.path() / "noop.so");
  HostProcess host({.plugin_dirs = {plugins.path()}});
  host.Send(PackTask({.id = "before", .plugin = "sleep", .input = {{"ms", 1}}}));
  EXPECT_EQ(host.NextResult().error_code, "unknown_plugin");

  fs::copy_file(fs::path(UMI_TEST_PLUGIN_DIR) / "sleep.so", plugins.path() / "sleep.so");
  fs::copy_file(fs::path(UMI_TEST_BAD_PLUGIN_DIR) / "wrong_major.so", plugins.path() / "wrong_major.so");
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  const auto reply = Control(rpc, "reload");
  ASSERT_TRUE(reply.at("ok").as<bool>());
  EXPECT_EQ(reply.at("loaded").as<std::vector<std::string>>(), std::vector<std::string>{"sleep"});
  const auto refused = reply.at("refused").as<std::vector<std::string>>();
  ASSERT_EQ(refused.size(), 1u);
  EXPECT_NE(refused[0].find("wrong_major.so: built for plugin API"), std::string::npos) << refused[0];
  host.Send(PackTask({.id = "after", .plugin = "sleep", .input = {{"ms", 1}}}));
  EXPECT_EQ(host.NextResult().status, "ok");

  // The next reload tries the refused library again: refused and counted again.
  const auto again = Control(rpc, "reload");
  EXPECT_TRUE(again.at("loaded").as<std::vector<std::string>>().empty());
  EXPECT_EQ(again.at("refused").as<std::vector<std::string>>().size(), 1u);
  Http http(host.endpoint("http"));
  const auto metrics = ParsePrometheus(http.Get("/metrics")->body);
  EXPECT_EQ(metrics.at("umi_plugin_load_failures_total"), 2) << "every refusal counts";
  EXPECT_EQ(metrics.at("umi_plugins_refused"), 1) << "but one library is refused now";
  EXPECT_EQ(metrics.at("umi_plugins_loaded"), 2) << "noop, then sleep";
}

// systemd's side of Type=notify: a datagram socket named by NOTIFY_SOCKET.
class NotifySocket {
 public:
  explicit NotifySocket(const fs::path& path) : fd_(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::snprintf(address.sun_path, sizeof(address.sun_path), "%s", path.c_str());
    if (bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) throw std::runtime_error("bind");
    timeval timeout{static_cast<time_t>(kGuardTime.count()), 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  }
  ~NotifySocket() { close(fd_); }
  std::string Next() {
    char buffer[4096];
    const ssize_t n = recv(fd_, buffer, sizeof(buffer), 0);
    return n > 0 ? std::string(buffer, static_cast<size_t>(n)) : "(nothing)";
  }

 private:
  int fd_;
};

TEST(ReloadE2E, SighupReloadsAndSystemdHearsReadyReloadingStopping) {
  TempDir dir;
  NotifySocket notify(dir.path() / "notify");
  setenv("NOTIFY_SOCKET", (dir.path() / "notify").c_str(), 1);
  HostProcess host;
  unsetenv("NOTIFY_SOCKET");
  EXPECT_EQ(notify.Next().rfind("READY=1", 0), 0u);

  Rewrite(host.config_path(), ConfigWithSleep("{task_group: cpu_task, threads: 2}"));
  ASSERT_EQ(kill(host.pid(), SIGHUP), 0);
  EXPECT_EQ(notify.Next().rfind("RELOADING=1\nSTATUS=reloading\nMONOTONIC_USEC=", 0), 0u);
  EXPECT_EQ(notify.Next().rfind("READY=1", 0), 0u);  // the reload is done
  host.Send(PackTask({.id = "after", .plugin = "sleep", .input = {{"ms", 1}}}));
  EXPECT_EQ(host.NextResult().cpu_threads, 2);

  EXPECT_EQ(host.Stop(), 0);
  EXPECT_EQ(notify.Next().rfind("STOPPING=1", 0), 0u);
}

TEST(ReloadE2E, UnderAWatchdogTheLoopPingsSystemdWhileIdle) {
  TempDir dir;
  NotifySocket notify(dir.path() / "notify");
  setenv("NOTIFY_SOCKET", (dir.path() / "notify").c_str(), 1);
  setenv("WATCHDOG_USEC", "200000", 1);  // WatchdogSec=200ms: a ping every 100 ms from the loop
  HostProcess host;
  unsetenv("NOTIFY_SOCKET");
  unsetenv("WATCHDOG_USEC");
  EXPECT_EQ(notify.Next().rfind("READY=1", 0), 0u);
  // Idle (no task, no request), the loop still wakes for the watchdog.
  EXPECT_EQ(notify.Next(), "WATCHDOG=1");
  EXPECT_EQ(notify.Next(), "WATCHDOG=1");
  EXPECT_EQ(host.Stop(), 0);
}

}  // namespace
}  // namespace umi::testing
