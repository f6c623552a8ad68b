// The plugin SDK contract, through the real host: ABI handshake, refusals,
// errors, settings, progress, grants, per-worker instances, installed SDK.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <regex>

#include "support/host_process.h"
#include "support/wire.h"

namespace umi::testing {
namespace {

std::string InspectConfig(const std::string& plugin_yaml = "") {
  return TestConfigYaml() + "  inspect:\n    settings: {greeting: hi from yaml}\n" + plugin_yaml;
}

HostProcess::Options InspectHost(const std::string& plugin_yaml = "") {
  return {.config_yaml = InspectConfig(plugin_yaml), .plugin_dirs = {UMI_TEST_INSPECT_PLUGIN_DIR}};
}

TEST(PluginSdk, PluginsCommandListsLoadedAndRefusedWithReasons) {
  TempDir dir;
  const auto config = dir.Write("c.yaml", TestConfigYaml());
  const CommandOutput run = RunCommand({UMI_HOST_BINARY, "plugins", "--json", "--config", config.string(),
                                        "--plugins", UMI_TEST_PLUGIN_DIR, "--plugins",
                                        UMI_TEST_BAD_PLUGIN_DIR});
  EXPECT_EQ(run.exit_code, 1) << "refused libraries make `plugins` exit 1";
  const auto report = nlohmann::json::parse(run.out);
  std::map<std::string, std::string> reasons;
  for (const auto& refused : report["refused"]) {
    reasons[std::filesystem::path(refused["path"].get<std::string>()).filename()] = refused["reason"];
  }
  EXPECT_EQ(reasons["wrong_major.so"],
            "built for plugin API 2.3, this host speaks 1.3 (major must match, minor must not be newer)");
  EXPECT_EQ(reasons["old_major.so"],
            "built for plugin API 0.3, this host speaks 1.3 (major must match, minor must not be newer)");
  EXPECT_EQ(reasons["newer_minor.so"],
            "built for plugin API 1.99, this host speaks 1.3 (major must match, minor must not be newer)");
  EXPECT_EQ(reasons["missing_symbols.so"],
            "missing required entry point UMI_PluginApiVersion (it exports no UMI_* entry point: did you forget "
            "UMI_DECLARE_PLUGIN, or extern \"C\"?)");
  EXPECT_EQ(reasons["throwing_init.so"], "initialize failed: plugin_error: cannot initialize");
  EXPECT_EQ(reasons["throwing_info.so"], "UMI_PluginDescribe returned no descriptor: Info() threw: no info today");
  EXPECT_NE(reasons["duplicate_noop.so"].find("plugin name 'noop' is already taken by"), std::string::npos);

  std::map<std::string, nlohmann::json> plugins;
  for (const auto& plugin : report["plugins"]) plugins[plugin["name"]] = plugin;
  size_t libraries = 0;  // every library in the plugin directory loads; the duplicate noop lost
  for (const auto& entry : std::filesystem::directory_iterator(UMI_TEST_PLUGIN_DIR)) libraries += entry.path().extension() == ".so";
  ASSERT_EQ(plugins.size(), libraries);
  EXPECT_EQ(plugins["noop"]["version"], "1.0.0");
  EXPECT_EQ(plugins["sleep"]["task_group"], "cpu_task");
  EXPECT_EQ(plugins["sleep"]["declared"]["cpu_threads"], 1);
  EXPECT_EQ(plugins["sleep"]["requirement"]["cpu_threads"], 4);  // the group's
  EXPECT_EQ(plugins["gpu_sleep"]["kind"], "gpu");
  EXPECT_EQ(plugins["noop"]["run_inline"], true);
  EXPECT_EQ(plugins["sleep"]["run_inline"], false);
}

TEST(PluginSdk, AHostServingBesideRefusedLibrariesKeepsRunning) {
  HostProcess host({.plugin_dirs = {UMI_TEST_PLUGIN_DIR, UMI_TEST_BAD_PLUGIN_DIR}});
  host.Send(PackTask({.id = "after-refusals", .plugin = "noop"}));
  EXPECT_EQ(host.NextResult().status, "ok");
  EXPECT_EQ(host.Stop(), 0);
}

TEST(PluginSdk, PluginsCommandTableExitsZeroWhenAllLoad) {
  // On the seed's pool (it has a GPU): the detected default refuses gpu_sleep on a machine without one.
  const CommandOutput run = RunCommand({UMI_HOST_BINARY, "plugins", "--config", UMI_SOURCE_DIR "/config/hardware/reference.yaml",
                                        "--plugins", UMI_TEST_PLUGIN_DIR});
  EXPECT_EQ(run.exit_code, 0);
  EXPECT_EQ(run.out.rfind("NAME", 0), 0u);
  EXPECT_TRUE(std::regex_search(run.out, std::regex("\ngpu_sleep +1\\.0\\.0 +gpu +gpu_task"))) << run.out;
}

TEST(PluginSdk, ExceptionsBecomeErrorResults) {
  HostProcess host(InspectHost());
  host.Send(PackTask({.id = "std", .plugin = "inspect", .string_input = {{"mode", "throw_std"}}}));
  const Result std_error = host.NextResult();
  EXPECT_EQ(std_error.status, "error");
  EXPECT_EQ(std_error.error_code, "plugin_error");
  EXPECT_EQ(std_error.error_message, "std exception from inspect");
  host.Send(PackTask({.id = "umi", .plugin = "inspect", .string_input = {{"mode", "throw_umi"}}}));
  const Result umi_error = host.NextResult();
  EXPECT_EQ(umi_error.status, "error");
  EXPECT_EQ(umi_error.error_code, "custom_code");
  EXPECT_EQ(umi_error.error_message, "umi error from inspect");
  EXPECT_EQ(host.Stop(), 0);
}

TEST(PluginSdk, SettingsGrantsAndGpuIdsReachThePlugin) {
  HostProcess host(InspectHost("    threads: 3\n    memory_mb: 100\n    gpu_count: 0.5\n    exclusive_gpu: false\n"));
  host.Send(PackTask({.id = "p", .plugin = "inspect"}));
  const Result r = host.NextResult();
  ASSERT_EQ(r.status, "ok") << r.error_message;
  EXPECT_EQ(r.Output("greeting")->as<std::string>(), "hi from yaml");
  EXPECT_EQ(r.Output("threads")->as<int>(), 3);
  EXPECT_EQ(r.Output("cpu_cores")->as<double>(), 0.5);
  EXPECT_EQ(r.Output("memory_mb")->as<int>(), 100);
  EXPECT_EQ(r.Output("gpu_ids")->as<std::vector<int>>(), std::vector<int>{0});
  EXPECT_EQ(r.gpu_ids, std::vector<int>{0});
}

TEST(PluginSdk, ProgressBecomesEvents) {
  HostProcess host(InspectHost());
  EventsClient events(host.context(), host.endpoint("events"));
  // PUB drops what is sent before the subscription lands: send until an
  // event shows the subscription is live.
  for (int i = 0; !events.TryNext(std::chrono::milliseconds(200)); ++i) {
    ASSERT_LT(i, 100) << "no events at all";
    host.Send(PackTask({.id = "warmup" + std::to_string(i), .plugin = "inspect"}));
    host.NextResult();
  }
  host.Send(PackTask({.id = "prog", .plugin = "inspect", .string_input = {{"mode", "progress"}}}));
  std::vector<std::pair<std::string, Result>> seen;
  while (seen.empty() || seen.back().first != "task.finished" || seen.back().second.id != "prog") {
    auto event = events.Next();
    if (event.second.id == "prog") seen.push_back(std::move(event));
  }
  std::vector<std::string> topics;
  std::vector<double> progress;
  for (const auto& [topic, body] : seen) {
    topics.push_back(topic);
    if (topic == "task.progress") {
      const msgpack::object& root = body.message->get();
      for (uint32_t i = 0; i < root.via.map.size; ++i) {
        if (root.via.map.ptr[i].key.as<std::string>() == "progress") {
          progress.push_back(root.via.map.ptr[i].val.as<double>());
        }
      }
    }
  }
  // The plugin reports 0.25, 0.5 and 1.0 back to back: the host publishes at
  // most one report per 100 ms, and always the one that says done.
  EXPECT_EQ(topics, (std::vector<std::string>{"task.queued", "task.started", "task.progress", "task.progress",
                                              "task.finished"}));
  EXPECT_EQ(progress, (std::vector<double>{0.25, 1.0}));
  EXPECT_EQ(seen.back().second.status, "ok");
}

TEST(PluginSdk, InstanceStateLivesPerWorkerAcrossTasks) {
  HostProcess host(InspectHost());
  host.Send(PackTask({.id = "a", .plugin = "inspect"}));
  const Result first = host.NextResult();
  host.Send(PackTask({.id = "b", .plugin = "inspect"}));  // the one idle worker takes it
  const Result second = host.NextResult();
  ASSERT_EQ(first.status, "ok");
  ASSERT_EQ(second.status, "ok");
  EXPECT_EQ(first.Output("instance")->as<int>(), second.Output("instance")->as<int>());
  EXPECT_EQ(first.Output("uses")->as<int>(), 1);
  EXPECT_EQ(second.Output("uses")->as<int>(), 2);
}

TEST(PluginSdk, PinningConfinesThePluginToItsGrantedCpus) {
  HostProcess host({.config_yaml = R"(hardware:
  cpu: {cores: 1, threads: 1, pinning: true}
  memory: {total_gb: 1}
plugins:
  inspect: {threads: 1}
)",
                    .plugin_dirs = {UMI_TEST_INSPECT_PLUGIN_DIR},
                    .extra_args = {"--strict-config"}});
  for (const char* id : {"first", "second"}) {
    host.Send(PackTask({.id = id, .plugin = "inspect"}));
    const Result r = host.NextResult();
    ASSERT_EQ(r.status, "ok") << r.error_message;
    const auto allocation = r.message->get().as<std::map<std::string, msgpack::object>>().at("allocation");
    const auto granted = allocation.as<std::map<std::string, msgpack::object>>().at("cpu_ids").as<std::vector<int>>();
    ASSERT_EQ(granted.size(), 1u);
    EXPECT_EQ(r.Output("cpus")->as<std::vector<int>>(), granted) << "the plugin ran outside its grant";
  }
}

TEST(SdkInstall, InstallLaysOutBinariesPluginsConfigAndTheSystemdUnit) {
  const std::filesystem::path prefix = UMI_SDK_PREFIX;
  for (const char* path : {"bin/umi-host", "bin/umi-submit", "lib/umi/plugins/noop.so", "lib/umi/plugins/probe.so",
                           "include/umi/plugin_api.h", "lib/cmake/umi/umiConfig.cmake", "etc/umi/hardware.yaml",
                           "lib/systemd/system/umi-host.service"}) {
    EXPECT_TRUE(std::filesystem::exists(prefix / path)) << path;
  }
  std::ifstream unit(prefix / "lib/systemd/system/umi-host.service");
  const std::string text((std::istreambuf_iterator<char>(unit)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("Type=notify\n"), std::string::npos);
  EXPECT_NE(text.find("ExecStart=" + (prefix / "bin/umi-host").string() + " --config " +
                      (prefix / "etc/umi/hardware.yaml").string()),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("ExecReload=/bin/kill -HUP $MAINPID"), std::string::npos);
  // The installed config is valid for the installed host.
  const CommandOutput check = RunCommand({(prefix / "bin/umi-host").string(), "check-config",
                                          (prefix / "etc/umi/hardware.yaml").string()});
  EXPECT_EQ(check.exit_code, 0) << check.out;
  if (std::filesystem::exists("/usr/bin/systemd-analyze")) {
    const CommandOutput verify = RunCommand({"/usr/bin/systemd-analyze", "verify",
                                             (prefix / "lib/systemd/system/umi-host.service").string()},
                                            /*merge_stderr=*/true);
    EXPECT_EQ(verify.exit_code, 0) << verify.out;
    EXPECT_EQ(verify.out, "");
  }
}

TEST(SdkInstall, HelloAndFileStatsRunOnTheInstalledHost) {
  const std::string prefix = UMI_SDK_PREFIX;
  ASSERT_TRUE(std::filesystem::exists(prefix + "/include/umi/plugin.hpp"));
  ASSERT_TRUE(std::filesystem::exists(prefix + "/lib/pkgconfig/umi.pc"));
  ASSERT_TRUE(std::filesystem::exists(prefix + "/share/umi/config/hardware/default.yaml"));
  TempDir data;
  const auto file = data.Write("lines.txt", "one\ntwo\nthree\n");
  HostProcess host({.config_yaml = TestConfigYaml(), .plugin_dirs = {UMI_OOT_PLUGIN_DIR},
                    .binary = prefix + "/bin/umi-host"});
  host.Send(PackTask({.id = "h", .plugin = "hello", .string_input = {{"name", "umi"}}}));
  const Result hello = host.NextResult();
  ASSERT_EQ(hello.status, "ok") << hello.error_message;
  EXPECT_EQ(hello.Output("greeting")->as<std::string>(), "hello, umi");

  host.Send(PackTask({.id = "f", .plugin = "file_stats", .string_input = {{"path", file.string()}}}));
  const Result stats = host.NextResult();
  ASSERT_EQ(stats.status, "ok") << stats.error_message;
  EXPECT_EQ(stats.Output("bytes")->as<int>(), 14);
  EXPECT_EQ(stats.Output("lines")->as<int>(), 3);

  host.Send(PackTask({.id = "m", .plugin = "file_stats", .string_input = {{"path", "/no/such/file"}}}));
  const Result missing = host.NextResult();
  EXPECT_EQ(missing.status, "error");
  EXPECT_EQ(missing.error_code, "not_found");
  EXPECT_EQ(host.Stop(), 0);
}

// run_inline (plugin API 1.1): the task runs on the host's event loop, its
// main thread, with an instance of its own that lives as long as the host;
// a worker process still runs it under `isolation: process`; a plugin built
// against API 1.0 (a shorter descriptor) loads and runs on a worker thread.
TEST(PluginSdk, RunInlinePluginsRunOnTheEventLoopAndApi10PluginsStillLoad) {
  HostProcess host({.config_yaml = TestConfigYaml(),
                    .plugin_dirs = {UMI_TEST_PLUGIN_DIR, UMI_TEST_INSPECT_PLUGIN_DIR}});
  for (int i = 0; i < 3; ++i) host.Send(PackTask({.id = "inline-" + std::to_string(i), .plugin = "thread_probe"}));
  host.Send(PackTask({.id = "old-abi", .plugin = "api_1_0"}));
  for (const Result& r : host.Results(4)) {
    ASSERT_EQ(r.status, "ok") << r.plugin << ": " << r.error_message;
    const int64_t tid = r.Output("tid")->as<int64_t>(), pid = r.Output("pid")->as<int64_t>();
    EXPECT_EQ(pid, host.pid());
    if (r.plugin == "thread_probe") {
      EXPECT_EQ(tid, pid) << "ran on the event loop, the host's main thread";
      EXPECT_EQ(r.Output("instance")->as<int>(), 1) << "one instance for the loop's thread";
    } else {
      EXPECT_NE(tid, pid) << "a 1.0 plugin cannot say run_inline: a worker thread runs it";
    }
  }
  EXPECT_EQ(host.Stop(), 0) << "the loop's instance is finalized while the plugin is still loaded";

  HostProcess isolated({.config_yaml = TestConfigYaml("  thread_probe: {isolation: process}\n"),
                        .plugin_dirs = {UMI_TEST_PLUGIN_DIR, UMI_TEST_INSPECT_PLUGIN_DIR}});
  isolated.Send(PackTask({.id = "in-a-process", .plugin = "thread_probe"}));
  const Result r = isolated.NextResult();
  ASSERT_EQ(r.status, "ok") << r.error_message;
  EXPECT_NE(r.Output("pid")->as<int64_t>(), isolated.pid()) << "isolation: process wins over run_inline";
}

// Inline tasks that had to queue (every CPU task slot taken by `sleep`)
// start in rounds of max_concurrent_tasks (8 here) once the slots free up,
// and give their grants back within the same turn of the loop, with no mail
// to wake it for the next round: the loop must take the queue again itself.
// (It once slept a heartbeat, 1 s, per round: 2,000 tasks would take 250 s
// and NextResult gives up first.)
TEST(PluginSdk, QueuedInlineTasksAllRunWithoutWaitingForAWakeUp) {
  HostProcess host({.config_yaml = TestConfigYaml(),
                    .plugin_dirs = {UMI_TEST_PLUGIN_DIR, UMI_TEST_INSPECT_PLUGIN_DIR}});
  for (int i = 0; i < 8; ++i) {
    host.Send(PackTask({.id = "slot" + std::to_string(i), .plugin = "sleep", .input = {{"ms", 300}}}));
  }
  constexpr int kTasks = 2000;
  for (int i = 0; i < kTasks; ++i) host.Send(PackTask({.id = "q" + std::to_string(i), .plugin = "thread_probe"}));
  int ok = 0, queued = 0;
  for (const Result& r : host.Results(kTasks + 8)) {
    if (r.plugin != "thread_probe") continue;
    ok += r.status == "ok";
    queued += r.queued_ms > 0;
  }
  EXPECT_EQ(ok, kTasks);
  EXPECT_GT(queued, 0) << "none waited for a slot: the test no longer covers a queue of inline tasks";
}

// GPU tasks waiting for a busy GPU do not hold back inline tasks of another
// plugin: once the host has found them blocked (here: a control request,
// which starts what fits before it is answered), those run on arrival.
TEST(PluginSdk, InlineTasksDoNotQueueBehindBlockedTasksOfOtherPlugins) {
  HostProcess host({.config_yaml = TestConfigYaml(),
                    .plugin_dirs = {UMI_TEST_PLUGIN_DIR, UMI_TEST_INSPECT_PLUGIN_DIR}});
  RpcClient rpc(host.context(), host.endpoint("rpc"));
  rpc.Send(PackTask({.id = "holder", .plugin = "gpu_sleep", .input = {{"ms", 600000}}}));
  rpc.Send(PackTask({.id = "waiting", .plugin = "gpu_sleep", .input = {{"ms", 1}}}));
  rpc.Send(PackControl("health"));
  ASSERT_FALSE(ParseResult(rpc.Receive()).id) << "no task ends before the fence";
  for (int i = 0; i < 100; ++i) rpc.Send(PackTask({.id = "p" + std::to_string(i), .plugin = "thread_probe"}));
  for (int i = 0; i < 100; ++i) {
    const Result r = ParseResult(rpc.Receive());
    ASSERT_EQ(r.status, "ok") << r.error_message;
    EXPECT_EQ(r.queued_ms, 0) << r.id.value_or("?");
  }
}

// An inline task runs and is answered while the loop handles its message,
// without passing the executor's mailbox: its progress still reaches
// watchers, between task.started and task.finished, coalesced as any other.
TEST(PluginSdk, RunInlineProgressBecomesEvents) {
  HostProcess host({.config_yaml = TestConfigYaml(),
                    .plugin_dirs = {UMI_TEST_PLUGIN_DIR, UMI_TEST_INSPECT_PLUGIN_DIR}});
  EventsClient events(host.context(), host.endpoint("events"));
  for (int i = 0; !events.TryNext(std::chrono::milliseconds(200)); ++i) {
    ASSERT_LT(i, 100) << "no events at all";
    host.Send(PackTask({.id = "warmup" + std::to_string(i), .plugin = "thread_probe"}));
    host.NextResult();
  }
  host.Send(PackTask({.id = "prog", .plugin = "thread_probe", .input = {{"progress", 1}}}));
  const Result r = host.NextResult();
  ASSERT_EQ(r.status, "ok") << r.error_message;
  EXPECT_EQ(r.Output("tid")->as<int64_t>(), host.pid()) << "ran on the event loop";
  std::vector<std::string> topics;
  while (topics.empty() || topics.back() != "task.finished") {
    auto [topic, body] = events.Next();
    if (body.id == "prog") topics.push_back(topic);
  }
  // 0.5 and 1.0 back to back: the first, then the one that says done.
  EXPECT_EQ(topics, (std::vector<std::string>{"task.queued", "task.started", "task.progress", "task.progress",
                                              "task.finished"}));
}

}  // namespace
}  // namespace umi::testing
