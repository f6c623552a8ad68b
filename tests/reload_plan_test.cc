#include "reload_plan.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

namespace umi {
namespace {

HardwareConfig Base() {
  HardwareConfig c;
  c.endpoints = {{"tasks", "tcp://127.0.0.1:5555"}};
  c.plugins["probe"].settings_msgpack = std::string("\x80", 1);
  return c;
}

TEST(ReloadPlan, NothingChangedNeedsNothing) {
  EXPECT_TRUE(PlanReload(Base(), Base(), {"probe"}).restart_needed.empty());
}

TEST(ReloadPlan, LiveKeysApplyWithoutARestart) {
  HardwareConfig next = Base();
  next.max_pending_results = 5;
  next.max_queued = 7;
  next.dedup_window_s = 1;
  next.drain_timeout_s = 2;
  next.allow_task_overrides = true;
  next.cpu_cores = 3;
  next.plugins["probe"].isolate_process = true;
  EXPECT_TRUE(PlanReload(Base(), next, {"probe"}).restart_needed.empty());
}

// The operator's case from issue 15: transport limits and CURVE turned on by
// reload used to be reported as applied.
TEST(ReloadPlan, TransportSecurityAndHttpChangesNeedARestart) {
  HardwareConfig next = Base();
  next.tasks_hwm = 10;
  next.max_message_bytes = 1024;
  next.curve_secret_key_file = "/etc/umi/host.key";
  next.curve_authorized_keys_file = "/etc/umi/clients.pub";
  next.http_listen = "0.0.0.0:9999";
  next.endpoints["rpc"] = "tcp://0.0.0.0:6000";
  next.plugins["probe"].settings_msgpack = std::string("\x81\xa1x\x01", 4);
  EXPECT_EQ(PlanReload(Base(), next, {"probe"}).restart_needed,
            (std::vector<std::string>{"transport.rpc", "transport.tasks_hwm", "transport.max_message_bytes",
                                      "security.curve", "http", "plugins.probe.settings"}));
  // Settings of a plugin that has no instance yet apply when it loads.
  EXPECT_EQ(PlanReload(Base(), next, {}).restart_needed.size(), 5u);
}

// docs/operations.md's reload table names exactly the keys the code cannot apply.
TEST(ReloadPlan, TheOperationsGuideListsEveryRestartKey) {
  std::ifstream file(UMI_SOURCE_DIR "/docs/operations.md");
  std::stringstream text;
  text << file.rdbuf();
  std::string row;
  for (std::string line; std::getline(text, line);) {
    if (line.find("restart_needed") != std::string::npos && line.rfind("| ", 0) == 0) row = line;
  }
  ASSERT_FALSE(row.empty()) << "no restart_needed row in the reload table";
  const std::string keys = row.substr(0, row.find(" | ", 2));
  size_t listed = 0;
  for (size_t at = keys.find('`'); at != std::string::npos; at = keys.find('`', keys.find('`', at + 1) + 1)) {
    ++listed;
  }
  for (const std::string& key : RestartKeys()) {
    EXPECT_NE(keys.find("`" + key + "`"), std::string::npos) << key << " is missing from the table";
  }
  EXPECT_EQ(listed, RestartKeys().size()) << "the table lists a key the code applies live: " << keys;
}

}  // namespace
}  // namespace umi
