#include "config/reload_plan.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

namespace umi {
namespace {

HardwareConfig Base() {
  HardwareConfig c;
  c.transport.endpoints = {{"tasks", "tcp://127.0.0.1:5555"}};
  c.plugins["probe"].settings_msgpack = std::string("\x80", 1);
  return c;
}

TEST(ReloadPlan, NothingChangedNeedsNothing) {
  EXPECT_TRUE(PlanReload(Base(), Base(), {"probe"}).restart_needed.empty());
}

TEST(ReloadPlan, LiveKeysApplyWithoutARestart) {
  HardwareConfig next = Base();
  next.transport.max_pending_results = 5;
  next.scheduler.max_queued = 7;
  next.dedup.window_s = 1;
  next.shutdown.drain_timeout_s = 2;
  next.allow_task_overrides = true;
  next.hardware.cpu.cores = 3;
  next.plugins["probe"].isolate_process = true;
  const ReloadPlan plan = PlanReload(Base(), next, {"probe"});
  EXPECT_TRUE(plan.restart_needed.empty());
  EXPECT_EQ(plan.applied, (std::vector<std::string>{"hardware", "allow_task_overrides", "scheduler", "shutdown", "dedup",
                                                    "plugins.probe", "transport.max_pending_results"}));
  EXPECT_FALSE(plan.check_curve_keys);
}

// Every key of every section is either applied or listed as needing a
// restart: a change is never silently dropped.
TEST(ReloadPlan, EveryKeyIsAppliedOrListed) {
  using Change = void (*)(HardwareConfig&);
  const Change changes[] = {
      [](HardwareConfig& c) { c.hardware.cpu.cores = 5; },
      [](HardwareConfig& c) { c.hardware.cpu.threads = 9; },
      [](HardwareConfig& c) { c.hardware.cpu.max_concurrent_tasks = 3; },
      [](HardwareConfig& c) { c.hardware.cpu.threads_per_core = 2; },
      [](HardwareConfig& c) { c.hardware.cpu.pinning = true; },
      [](HardwareConfig& c) { c.hardware.gpus.push_back({}); },
      [](HardwareConfig& c) { c.hardware.memory.total_gb = 7; },
      [](HardwareConfig& c) { c.hardware.memory.overcommit_ratio = 2; },
      [](HardwareConfig& c) { c.allocation.cpu = Strategy::kSpread; },
      [](HardwareConfig& c) { c.allocation.gpu = Strategy::kSpread; },
      [](HardwareConfig& c) { c.task_groups["g"].max_instances = 2; },
      [](HardwareConfig& c) { c.plugins["probe"].max_instances = 2; },
      [](HardwareConfig& c) { c.plugins["probe"].task_group = "g"; },
      [](HardwareConfig& c) { c.plugins["probe"].resources.cpu_threads = 2; },
      [](HardwareConfig& c) { c.plugins["probe"].processes = 3; },
      [](HardwareConfig& c) { c.plugins["probe"].settings_msgpack = std::string("\x81\xa1y\x02", 4); },
      [](HardwareConfig& c) { c.plugins["new"].settings_msgpack = std::string("\x80", 1); },
      [](HardwareConfig& c) { c.allow_task_overrides = true; },
      [](HardwareConfig& c) { c.oversubscribe = true; },
      [](HardwareConfig& c) { c.scheduler.max_queued = 1; },
      [](HardwareConfig& c) { c.scheduler.reserve_after_ms = 1; },
      [](HardwareConfig& c) { c.shutdown.drain_timeout_s = 1; },
      [](HardwareConfig& c) { c.transport.endpoints["results"] = ">tcp://10.0.0.1:1"; },
      [](HardwareConfig& c) { c.transport.endpoints["events"] = "tcp://0.0.0.0:1"; },
      [](HardwareConfig& c) { c.transport.max_pending_results = 1; },
      [](HardwareConfig& c) { c.transport.tasks_hwm = 1; },
      [](HardwareConfig& c) { c.transport.max_message_bytes = 1; },
      [](HardwareConfig& c) { c.transport.redis = "redis://r:6379"; },
      [](HardwareConfig& c) { c.transport.max_deliveries = 5; },
      [](HardwareConfig& c) { c.transport.prefetch = 8; },
      [](HardwareConfig& c) { c.transport.keep_results = false; },
      [](HardwareConfig& c) { c.transport.redis_password_file = "/run/secrets/redis"; },
      [](HardwareConfig& c) { c.dedup.window_s = 1; },
      [](HardwareConfig& c) { c.dedup.max_entries = 1; },
      [](HardwareConfig& c) { c.security.curve.authorized_keys_file = "/x.pub"; },
      [](HardwareConfig& c) { c.http.enabled = false; },
      [](HardwareConfig& c) { c.http.listen = "127.0.0.1:1"; },
  };
  int index = 0;
  for (const Change change : changes) {
    HardwareConfig next = Base();
    change(next);
    const ReloadPlan plan = PlanReload(Base(), next, {"probe"});
    EXPECT_EQ(plan.applied.size() + plan.restart_needed.size(), 1u) << "change #" << index;
    ++index;
  }
}

// The operator's case from issue 15: transport limits and CURVE turned on by
// reload used to be reported as applied.
TEST(ReloadPlan, TransportSecurityAndHttpChangesNeedARestart) {
  HardwareConfig next = Base();
  next.transport.tasks_hwm = 10;
  next.transport.max_message_bytes = 1024;
  next.security.curve.secret_key_file = "/etc/umi/host.key";
  next.security.curve.authorized_keys_file = "/etc/umi/clients.pub";
  next.http.listen = "0.0.0.0:9999";
  next.transport.endpoints["rpc"] = "tcp://0.0.0.0:6000";
  next.plugins["probe"].settings_msgpack = std::string("\x81\xa1x\x01", 4);
  EXPECT_EQ(PlanReload(Base(), next, {"probe"}).restart_needed,
            (std::vector<std::string>{"plugins.probe.settings", "transport.rpc", "transport.tasks_hwm",
                                      "transport.max_message_bytes", "security.curve", "http"}));
  EXPECT_TRUE(PlanReload(Base(), next, {"probe"}).applied.empty()) << "nothing of it is in force";
  EXPECT_TRUE(PlanReload(Base(), next, {"probe"}).check_curve_keys) << "the named key files are read at the reload";
  // Settings of a plugin that has no instance yet apply when it loads.
  EXPECT_EQ(PlanReload(Base(), next, {}).restart_needed.size(), 5u);
}

// The keys in the first cell of the reload table's row that mentions `marker`.
std::vector<std::string> TableRowKeys(const std::string& marker) {
  std::ifstream file(UMI_SOURCE_DIR "/docs/operations.md");
  std::stringstream text;
  text << file.rdbuf();
  std::string row;
  for (std::string line; std::getline(text, line);) {
    if (line.find(marker) != std::string::npos && line.rfind("| ", 0) == 0) row = line;
  }
  EXPECT_FALSE(row.empty()) << "no row with " << marker << " in the reload table";
  const std::string cell = row.substr(0, row.find(" | ", 2));
  std::vector<std::string> keys;
  for (size_t open = cell.find('`'); open != std::string::npos; open = cell.find('`', open)) {
    const size_t close = cell.find('`', open + 1);
    if (close == std::string::npos) break;
    keys.push_back(cell.substr(open + 1, close - open - 1));
    open = close + 1;
  }
  return keys;
}

// docs/operations.md's reload table names exactly the keys the code applies
// and the keys it cannot apply.
TEST(ReloadPlan, TheOperationsGuideListsEveryKeyAsTheCodeTreatsIt) {
  EXPECT_EQ(TableRowKeys("restart_needed"), RestartKeys());
  EXPECT_EQ(TableRowKeys("applied at once"), LiveKeys());
}

}  // namespace
}  // namespace umi
