// End to end: the real umi-host binary, real sockets, real plugin .so files.
#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "support/host_process.h"
#include "support/wire.h"

namespace umi::testing {
namespace {

std::map<std::string, Result> ById(const std::vector<Result>& results) {
  std::map<std::string, Result> by_id;
  for (const Result& r : results) {
    EXPECT_TRUE(r.id.has_value());
    by_id[r.id.value_or("")] = r;
  }
  return by_id;
}

TEST(HostE2E, NoopSucceedsWithAFullResult) {
  HostProcess host;
  host.Send(PackTask({.id = "n1", .plugin = "noop"}));
  const Result r = host.NextResult();
  EXPECT_EQ(r.id, "n1");
  EXPECT_EQ(r.plugin, "noop");
  EXPECT_EQ(r.status, "ok");
  EXPECT_EQ(r.host, "test-host");
  ASSERT_NE(r.output, nullptr);
  EXPECT_EQ(r.output->type, msgpack::type::MAP);
  EXPECT_GE(r.queued_ms, 0);
  EXPECT_GE(r.run_ms, 0);
  ASSERT_TRUE(r.started_at && r.finished_at);
  EXPECT_LE(*r.started_at, *r.finished_at);
  ASSERT_TRUE(r.has_allocation);
  EXPECT_EQ(r.cpu_threads, 1);
  EXPECT_EQ(host.Stop(), 0);
}

TEST(HostE2E, UnknownPluginIsRejected) {
  HostProcess host;
  host.Send(PackTask({.id = "u1", .plugin = "no_such_plugin"}));
  const Result r = host.NextResult();
  EXPECT_EQ(r.id, "u1");
  EXPECT_EQ(r.status, "rejected");
  EXPECT_EQ(r.error_code, "unknown_plugin");
  EXPECT_NE(r.error_message.find("no_such_plugin"), std::string::npos);
  EXPECT_FALSE(r.started_at.has_value());
}

TEST(HostE2E, MalformedMessagesAreAnsweredAndTheHostKeepsServing) {
  HostProcess host;
  host.Send(std::string("\xc1\xff garbage \x00\x01", 13));  // not msgpack
  msgpack::sbuffer array;
  msgpack::pack(array, std::vector<int>{1, 2, 3});
  host.Send(std::string(array.data(), array.size()));  // msgpack, not a map
  msgpack::sbuffer no_id;
  msgpack::pack(no_id, std::map<std::string, std::string>{{"plugin", "noop"}});
  host.Send(std::string(no_id.data(), no_id.size()));  // a map without id
  host.Send(PackTask({.id = "after", .plugin = "noop"}));

  const auto results = host.Results(4);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(results[i].status, "rejected") << i;
    EXPECT_EQ(results[i].error_code, "bad_request") << i;
    EXPECT_FALSE(results[i].id.has_value()) << i;
    EXPECT_FALSE(results[i].error_message.empty()) << i;
  }
  EXPECT_NE(results[1].error_message.find("map"), std::string::npos);
  EXPECT_NE(results[2].error_message.find("id"), std::string::npos);
  EXPECT_EQ(results[3].id, "after");
  EXPECT_EQ(results[3].status, "ok");
  EXPECT_EQ(host.Stop(), 0);
}

TEST(HostE2E, SevenSleepTasksRunConcurrently) {
  HostProcess host;
  for (int i = 0; i < 7; ++i) {
    host.Send(PackTask({.id = "s" + std::to_string(i), .plugin = "sleep", .input = {{"ms", 1000}}}));
  }
  const auto results = host.Results(7);
  double latest_start = 0, earliest_finish = 1e300;
  for (const Result& r : results) {
    ASSERT_EQ(r.status, "ok") << r.error_message;
    EXPECT_EQ(r.cpu_threads, 4);  // cpu_task group
    latest_start = std::max(latest_start, *r.started_at);
    earliest_finish = std::min(earliest_finish, *r.finished_at);
  }
  // All seven were running at one instant.
  EXPECT_LT(latest_start, earliest_finish);
}

TEST(HostE2E, GpuTasksTakeTurnsWhileCpuTasksRunBesideThem) {
  HostProcess host;
  for (int i = 0; i < 3; ++i) {
    host.Send(PackTask({.id = "g" + std::to_string(i), .plugin = "gpu_sleep", .input = {{"ms", 400}}}));
  }
  for (int i = 0; i < 3; ++i) {
    host.Send(PackTask({.id = "c" + std::to_string(i), .plugin = "sleep", .input = {{"ms", 1500}}}));
  }
  auto by_id = ById(host.Results(6));
  for (const auto& [id, r] : by_id) ASSERT_EQ(r.status, "ok") << id << ": " << r.error_message;
  for (int a = 0; a < 3; ++a) {
    EXPECT_EQ(by_id["g" + std::to_string(a)].gpu_ids, std::vector<int>{0});
    for (int b = a + 1; b < 3; ++b) {
      EXPECT_FALSE(Overlap(by_id["g" + std::to_string(a)], by_id["g" + std::to_string(b)]))
          << "gpu tasks " << a << " and " << b << " overlapped";
    }
  }
  // The CPU tasks did not wait for the GPU: each overlaps the first GPU task
  // to run, and they overlap one another.
  const Result* first_gpu = &by_id["g0"];
  for (int i = 1; i < 3; ++i) {
    const Result& g = by_id["g" + std::to_string(i)];
    if (*g.started_at < *first_gpu->started_at) first_gpu = &g;
  }
  for (int i = 0; i < 3; ++i) {
    const Result& c = by_id["c" + std::to_string(i)];
    EXPECT_TRUE(Overlap(c, *first_gpu)) << "cpu task " << i;
    EXPECT_TRUE(c.gpu_ids.empty());
  }
  EXPECT_TRUE(Overlap(by_id["c0"], by_id["c1"]));
  EXPECT_TRUE(Overlap(by_id["c1"], by_id["c2"]));
}

TEST(HostE2E, InfeasibleRequirementIsRejectedAtOnceWithTheNumbers) {
  HostProcess host({.config_yaml = TestConfigYaml("allow_task_overrides: true\n")});
  host.Send(PackTask({.id = "big", .plugin = "noop", .resources = {{"cpu_threads", 1000}}}));
  const Result r = host.NextResult();
  EXPECT_EQ(r.status, "rejected");
  EXPECT_EQ(r.error_code, "infeasible");
  EXPECT_NE(r.error_message.find("cpu_threads: needs 1000, pool has 48"), std::string::npos)
      << r.error_message;
}

TEST(HostE2E, TaskResourcesAreRefusedUnlessTheConfigAllowsThem) {
  HostProcess host;
  host.Send(PackTask({.id = "r", .plugin = "noop", .resources = {{"cpu_threads", 2}}}));
  const Result r = host.NextResult();
  EXPECT_EQ(r.status, "rejected");
  EXPECT_EQ(r.error_code, "bad_request");
  EXPECT_NE(r.error_message.find("allow_task_overrides"), std::string::npos);
}

TEST(HostE2E, TaskResourcesOverrideWhenAllowed) {
  HostProcess host({.config_yaml = TestConfigYaml("allow_task_overrides: true\n")});
  host.Send(PackTask({.id = "r", .plugin = "spin", .input = {{"ms", 1}}, .resources = {{"cpu_threads", 3}}}));
  const Result r = host.NextResult();
  ASSERT_EQ(r.status, "ok") << r.error_message;
  EXPECT_EQ(r.cpu_threads, 3);
  ASSERT_NE(r.Output("threads"), nullptr);
  EXPECT_EQ(r.Output("threads")->as<int>(), 3);  // spin used every granted thread
}

TEST(HostE2E, PluginFailuresBecomeErrorResults) {
  HostProcess host;
  host.Send(PackTask({.id = "missing", .plugin = "sleep"}));                       // no "ms"
  host.Send(PackTask({.id = "negative", .plugin = "sleep", .input = {{"ms", -5}}}));  // throws
  auto by_id = ById(host.Results(2));
  EXPECT_EQ(by_id["missing"].status, "error");
  EXPECT_EQ(by_id["missing"].error_code, "bad_input");
  EXPECT_NE(by_id["missing"].error_message.find("ms"), std::string::npos);
  EXPECT_EQ(by_id["negative"].status, "error");
  EXPECT_EQ(by_id["negative"].error_code, "bad_input");
  host.Send(PackTask({.id = "fine", .plugin = "noop"}));
  EXPECT_EQ(host.NextResult().status, "ok");
}

TEST(HostE2E, TimeoutEndsATaskWithStatusTimeout) {
  HostProcess host;
  host.Send(PackTask({.id = "slow", .plugin = "sleep", .input = {{"ms", 600000}}, .timeout_ms = 50}));
  const Result r = host.NextResult();
  EXPECT_EQ(r.status, "timeout");
  EXPECT_EQ(r.error_code, "timeout");
  EXPECT_NE(r.error_message.find("timeout_ms=50"), std::string::npos) << r.error_message;
  EXPECT_EQ(r.output, nullptr);
}

TEST(HostE2E, DuplicateIdOfARunningTaskIsRejected) {
  HostProcess host;
  host.Send(PackTask({.id = "same", .plugin = "sleep", .input = {{"ms", 600000}}, .timeout_ms = 2000}));
  host.Send(PackTask({.id = "same", .plugin = "noop"}));
  // A second retry is refused too: refusing the first must not have made
  // the host forget the running task (it would then run twice).
  host.Send(PackTask({.id = "same", .plugin = "noop"}));
  for (int copy = 0; copy < 2; ++copy) {
    const Result refused = host.NextResult();
    EXPECT_EQ(refused.id, "same");
    EXPECT_EQ(refused.status, "rejected");
    EXPECT_EQ(refused.error_code, "duplicate_id");
  }
  EXPECT_EQ(host.NextResult().status, "timeout");
}

TEST(HostE2E, SigtermFinishesRunningTasksAndAnswersQueuedOnes) {
  // One CPU task at a time, so the rest queue behind the first.
  HostProcess host({.config_yaml = R"(hardware:
  cpu: {cores: 4, threads: 4, max_concurrent_tasks: 1}
  memory: {total_gb: 8}
)"});
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  rpc.Send(PackTask({.id = "running", .plugin = "sleep", .input = {{"ms", 3000}}}));
  for (int i = 0; i < 5; ++i) {
    rpc.Send(PackTask({.id = "queued" + std::to_string(i), .plugin = "sleep", .input = {{"ms", 300}}}));
  }
  // One DEALER connection is ordered: the health reply means all six were taken.
  rpc.Send(PackControl("health"));
  std::vector<Result> results;
  bool healthy = false;
  while (!healthy) {
    const std::string reply = rpc.Receive();
    const Result parsed = ParseResult(reply);
    if (!parsed.id) {  // the health reply; every task result here has an id
      healthy = true;
    } else {
      results.push_back(parsed);
    }
  }
  EXPECT_EQ(kill(host.pid(), SIGTERM), 0);
  while (results.size() < 6) results.push_back(ParseResult(rpc.Receive()));
  auto by_id = ById(results);
  EXPECT_EQ(by_id["running"].status, "ok");
  for (int i = 0; i < 5; ++i) {
    const Result& r = by_id["queued" + std::to_string(i)];
    EXPECT_EQ(r.status, "rejected");
    EXPECT_EQ(r.error_code, "shutting_down");
  }
  EXPECT_EQ(host.Stop(), 0);
}

TEST(HostE2E, BadLibrariesAreRefusedAndTheRestServe) {
  HostProcess host({.plugin_dirs = {UMI_TEST_PLUGIN_DIR, UMI_TEST_BAD_PLUGIN_DIR}});
  host.Send(PackTask({.id = "ok", .plugin = "noop"}));
  EXPECT_EQ(host.NextResult().status, "ok");
  host.Send(PackTask({.id = "bad", .plugin = "wrong_major"}));
  EXPECT_EQ(host.NextResult().error_code, "unknown_plugin");
}

TEST(HostE2E, HealthAndStatsAnswerOnRpc) {
  HostProcess host;
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  rpc.Send(PackTask({.id = "x", .plugin = "noop"}));
  EXPECT_EQ(ParseResult(rpc.Receive()).status, "ok");
  rpc.Send(PackControl("stats"));
  const std::string reply = rpc.Receive();
  const msgpack::object_handle handle = msgpack::unpack(reply.data(), reply.size());
  const auto stats = handle.get().as<std::map<std::string, msgpack::object>>();
  EXPECT_TRUE(stats.at("ok").as<bool>());
  EXPECT_EQ((stats.at("done").as<std::map<std::string, int>>().at("ok")), 1);
  EXPECT_EQ(stats.at("queued").as<int>(), 0);
  rpc.Send(PackControl("bogus"));
  const std::string unknown = rpc.Receive();
  EXPECT_NE(unknown.find("unknown_op"), std::string::npos);
}

constexpr const char* kMisspelledConfig = "hardware:\n  cpu: {cores: 4, coers: 8}\n  memory: {total_gb: 1}\n";

TEST(HostE2E, StrictConfigStopsTheHostOnAConfigError) {
  EXPECT_THROW(HostProcess({.config_yaml = kMisspelledConfig, .extra_args = {"--strict-config"}}),
               std::runtime_error);
}

TEST(HostE2E, ANamedConfigWithAnErrorStopsTheHost) {
  TempDir dir;
  const auto config = dir.Write("typo.yaml", kMisspelledConfig);
  const CommandOutput run = RunCommand({UMI_HOST_BINARY, "--config", config.string(), "--http", "off"}, true);
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_NE(run.out.find("hardware.cpu.coers: unknown key"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("--allow-fallback"), std::string::npos) << run.out;
}

TEST(HostE2E, AllowFallbackServesOnDetectedHardwareAndSaysSo) {
  HostProcess host({.config_yaml = kMisspelledConfig, .extra_args = {"--allow-fallback"}});
  host.Send(PackTask({.id = "n", .plugin = "noop"}));
  EXPECT_EQ(host.NextResult().status, "ok");
  httplib::Client http(host.endpoint("http"));
  const auto ready = http.Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_NE(ready->body.find("on detected hardware: "), std::string::npos) << ready->body;
  EXPECT_NE(ready->body.find("coers"), std::string::npos) << ready->body;
  const auto metrics = http.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("\numi_config_fallback 1\n"), std::string::npos);
  EXPECT_EQ(host.Stop(), 0);
}

TEST(HostE2E, JsonLogsAreOneObjectPerLine) {
  TempDir dir;
  const auto bad = dir.Write("bad.yaml", kMisspelledConfig);
  const CommandOutput run = RunCommand({UMI_HOST_BINARY, "--log-format", "json", "--name", "h1", "--strict-config",
                                        "--config", bad.string()},
                                       /*merge_stderr=*/true);
  EXPECT_EQ(run.exit_code, 2);
  ASSERT_FALSE(run.out.empty());
  std::istringstream lines(run.out);
  int parsed = 0;
  for (std::string line; std::getline(lines, line); ++parsed) {
    const auto entry = nlohmann::json::parse(line);  // throws, failing the test, if not JSON
    EXPECT_EQ(entry["host"], "h1");
    EXPECT_TRUE(entry["time"].is_string() && entry["time"].get<std::string>().back() == 'Z') << line;
    if (entry["level"] == "critical") {
      EXPECT_NE(entry["message"].get<std::string>().find("hardware.cpu.coers: unknown key"), std::string::npos);
    }
  }
  EXPECT_GE(parsed, 1);
}

TEST(HostE2E, CheckConfigPrintsTheSeedPool) {
  const CommandOutput run = RunCommand({UMI_HOST_BINARY, "check-config", UMI_SOURCE_DIR "/config/hardware/reference.yaml",
                                        "--plugins", UMI_TEST_PLUGIN_DIR});
  EXPECT_EQ(run.exit_code, 0) << run.out;
  for (const char* line : {"  cpu_cores             24\n", "  cpu_threads           48\n",
                           "  memory                125.26 GB x overcommit 1 = 128266 MiB\n",
                           "  gpus                  1\n", "    [0] NVIDIA GeForce RTX 4090, 24 GB\n",
                           "  cpu_task: cpu_cores=2 threads=4 memory_mb=4096 max_instances=8\n",
                           "    cpu_threads = 4  <- task_groups.cpu_task\n", "    memory_mb = 16  <- declared\n",
                           "    gpu_count = 1  <- plugins.gpu_sleep\n", "  http                  127.0.0.1:9090\n",
                           "  curve                 off (plain TCP)\n"}) {
    EXPECT_NE(run.out.find(line), std::string::npos) << "missing: " << line << "in:\n" << run.out;
  }
}

// A preflight: a valid config passes though some plugins cannot load here
// (they are warned of, by name); each plugin's max_instances is shown.
// Before: exit 1 for any refused library, and no max_instances.
TEST(HostE2E, CheckConfigPassesAValidConfigAndWarnsOfPluginsThatCannotLoad) {
  const CommandOutput run = RunCommand({UMI_HOST_BINARY, "check-config", UMI_SOURCE_DIR "/config/hardware/reference.yaml",
                                        "--plugins", UMI_TEST_PLUGIN_DIR, "--plugins", UMI_TEST_BAD_PLUGIN_DIR});
  EXPECT_EQ(run.exit_code, 0) << run.out;
  for (const char* line : {"warning: wrong_major.so will not load here: ", "    max_instances = 8  <- task_groups.cpu_task\n",
                           "    max_instances = unlimited  <- none set\n"}) {
    EXPECT_NE(run.out.find(line), std::string::npos) << "missing: " << line << "in:\n" << run.out;
  }
}

TEST(HostE2E, CheckConfigShowsIsolationAndCurve) {
  TempDir dir;
  const auto config = dir.Write("umi.yaml", TestConfigYaml("  noop: {isolation: process, processes: 3}\n") +
                                                "security: {curve: {secret_key_file: k.key, authorized_keys_file: c.pub}}\n"
                                                "http: {enabled: false}\n");
  const CommandOutput run = RunCommand({UMI_HOST_BINARY, "check-config", config.string(), "--plugins", UMI_TEST_PLUGIN_DIR});
  EXPECT_EQ(run.exit_code, 0) << run.out;
  for (const std::string& line : {std::string("  http                  off\n"),
                                  "  curve                 on, key " + (dir.path() / "k.key").string() + ", clients " +
                                      (dir.path() / "c.pub").string() + "\n",
                                  std::string("    isolation = process (3 worker(s) started ahead)\n"),
                                  std::string("    sandbox = on (exec no, network no, max_file_mb 4096; this kernel lacks:")}) {
    EXPECT_NE(run.out.find(line), std::string::npos) << "missing: " << line << "in:\n" << run.out;
  }
}

// A plugins.<name> section that matches no plugin is ignored: say so, with
// the near name, rather than run with defaults the operator did not mean.
TEST(HostE2E, CheckConfigWarnsOfAPluginSectionThatMatchesNoPlugin) {
  TempDir dir;
  const auto config = dir.Write("umi.yaml", TestConfigYaml("  sleeep: {cpu_cores: 2}\n  nothing_like_it: {}\n"));
  const CommandOutput run = RunCommand({UMI_HOST_BINARY, "check-config", config.string(), "--plugins", UMI_TEST_PLUGIN_DIR});
  EXPECT_NE(run.out.find("warning: plugins.sleeep: no loaded plugin is named 'sleeep' (did you mean 'sleep'?); "
                         "the section is ignored\n"),
            std::string::npos)
      << run.out;
  EXPECT_NE(run.out.find("warning: plugins.nothing_like_it: no loaded plugin is named 'nothing_like_it'; the section "
                         "is ignored\n"),
            std::string::npos)
      << run.out;
  EXPECT_EQ(run.out.find("plugins.sleep:"), std::string::npos) << "a section of a loaded plugin is fine";
}

TEST(HostE2E, CheckConfigFailsOnABadFileWithTheReason) {
  TempDir dir;
  const auto bad = dir.Write("bad.yaml", kMisspelledConfig);
  const CommandOutput run = RunCommand({UMI_HOST_BINARY, "check-config", bad.string()});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.out.find("hardware.cpu.coers: unknown key, did you mean 'cores'?"), std::string::npos) << run.out;
}

}  // namespace
}  // namespace umi::testing
