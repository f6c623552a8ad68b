// One YAML file per class of config error, each with its exact message.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "config/hardware_config.h"

namespace umi {
namespace {

const std::filesystem::path kDir = UMI_SOURCE_DIR "/tests/configs/errors";

// file -> the message after "<path>: ".
const std::map<std::string, std::string> kExpected = {
    {"unknown_key_did_you_mean.yaml",
     "hardware.cpu.coers: unknown key, did you mean 'cores'? (expected one of: cores, "
     "max_concurrent_tasks, pinning, threads, threads_per_core) (line 4, column 5)"},
    {"bad_isolation.yaml", "plugins.probe.isolation: expected thread or process, got 'container' (line 5, column 22)"},
    {"http_listen_without_port.yaml",
     "http.listen: expected host:port, e.g. 127.0.0.1:9090 (line 5, column 11)"},
    {"histogram_buckets_not_ascending.yaml",
     "http.histogram_buckets_s[2]: bounds must be ascending: 30 comes after 60 (line 5, column 32)"},
    {"wrong_type.yaml", "hardware.cpu.cores: expected a number, got 'many' (line 3, column 12)"},
    {"zero_cores.yaml", "hardware.cpu.cores: must be a number > 0, got 0 (line 3, column 12)"},
    {"negative_memory.yaml",
     "hardware.memory.total_gb: must be a number > 0 and at most 1073741824, got -1 (line 4, column 15)"},
    {"overcommit_below_one.yaml", "hardware.memory.overcommit_ratio: must be a number 1..1000, got 0.5 (line 5, column 23)"},
    {"max_instances_zero.yaml", "task_groups.g.max_instances: must be 1..1000000, got 0 (line 6, column 20)"},
    // Each used to be narrowed or rounded silently (issue 14).
    {"max_concurrent_tasks_too_big.yaml",
     "hardware.cpu.max_concurrent_tasks: must be 1..1000000, got 4294967296 (line 4, column 27)"},
    {"threads_beyond_int.yaml", "hardware.cpu.threads: must be 1..65536, got 4294967297 (line 4, column 14)"},
    {"max_instances_beyond_int.yaml", "task_groups.g.max_instances: must be 1..1000000, got 4294967296 (line 6, column 20)"},
    {"cores_below_unit.yaml", "hardware.cpu.cores: is below the smallest unit (0.0001), got 0.00001 (line 3, column 12)"},
    {"gpu_count_below_unit.yaml", "task_groups.g.gpu_count: is below the smallest unit (0.0001), got 0.00004 (line 6, column 16)"},
    {"gpu_count_too_big.yaml", "hardware.gpu.count: must be 0..1024, got 100000000000 (line 4, column 12)"},
    {"task_group_too_big.yaml", "task_groups.big.threads: needs 64 but the pool has 48 (line 6, column 5)"},
    {"plugin_too_big.yaml", "plugins.sleep.memory_mb: needs 1000000 but the pool has 65536 (line 6, column 5)"},
    {"unknown_task_group.yaml", "plugins.sleep.task_group: no task group named 'cpu_taks' (line 6, column 17)"},
    {"fractional_gpu_above_one.yaml", "task_groups.g: gpu_count above 1 must be a whole number, got 1.5 (line 6, column 5)"},
    {"threads_exceed_threads_per_core.yaml",
     "hardware.cpu.threads: 32 threads exceed cores x threads_per_core = 16 (line 4, column 14)"},
    {"bad_strategy.yaml", "allocation.gpu: expected pack or spread, got 'fill' (line 5, column 8)"},
    {"missing_memory.yaml", "hardware.memory: missing (line 2, column 3)"},
    {"gpu_count_mismatch.yaml", "hardware.gpu.count: is 2 but devices lists 1 (line 4, column 12)"},
    {"unknown_top_level.yaml",
     "schedular: unknown key, did you mean 'scheduler'? (expected one of: allocation, allow_task_overrides, "
     "dedup, hardware, http, oversubscribe, plugin_dirs, plugins, scheduler, security, shutdown, task_groups, "
     "transport) (line 4, column 1)"},
    {"bad_prefetch.yaml", "transport.prefetch: expected auto or a number of tasks, got 'soon' (line 5, column 13)"},
    {"threads_twice.yaml", "plugins.probe.threads: give cpu_threads or its alias threads, not both (line 5, column 36)"},
    {"negative_threads.yaml", "hardware.cpu.threads: must be 1..65536, got -2 (line 4, column 14)"},
    {"sandbox_unknown_key.yaml", "plugins.probe.sandbox.netwrok: unknown key, did you mean 'network'? (expected one of: "
                                 "exec, max_file_mb, network, read, required, write) (line 5, column 41)"},
    {"retry_on_bad_input.yaml",
     "plugins.probe.retry.on: bad_input never retries (the same input fails the same way) (line 6, column 12)"},
    {"retry_unknown_key.yaml", "plugins.probe.retry.backof_ms: unknown key, did you mean 'backoff_ms'? (expected one of: "
                               "attempts, backoff_ms, max_backoff_ms, on) (line 6, column 26)"},
    {"sandbox_not_a_bool.yaml", "plugins.probe.sandbox: expected false (no sandbox) or a map {required, read, write, "
                                "exec, network, max_file_mb}, got 'none' (line 5, column 40)"},
};

TEST(ConfigErrors, EachFileGivesItsExactMessage) {
  size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kDir)) {
    const std::string name = entry.path().filename();
    if (name == "invalid_yaml.yaml") continue;  // yaml-cpp words this one
    ++files;
    const auto expected = kExpected.find(name);
    ASSERT_NE(expected, kExpected.end()) << "no expected message for " << name;
    const auto config = LoadHardwareConfig(entry.path());
    ASSERT_FALSE(config.ok()) << name;
    EXPECT_EQ(config.error(), entry.path().string() + ": " + expected->second) << name;
  }
  EXPECT_EQ(files, kExpected.size());
}

TEST(ConfigErrors, InvalidYamlNamesLineAndColumn) {
  const auto config = LoadHardwareConfig(kDir / "invalid_yaml.yaml");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.error().find("invalid YAML: yaml-cpp: error at line"), std::string::npos) << config.error();
  EXPECT_NE(config.error().find("column"), std::string::npos) << config.error();
}

}  // namespace
}  // namespace umi
