#include "config/hardware_config.h"
#include "config/machine.h"

#include <gtest/gtest.h>

#include <stdlib.h>

#include <fstream>
#include <msgpack.hpp>

namespace umi {
namespace {

StatusOr<HardwareConfig> Parse(const std::string& yaml) { return ParseHardwareConfig(yaml, "t.yaml"); }

constexpr const char* kMinimal = "hardware:\n  cpu: {cores: 4}\n  memory: {total_gb: 2}\n";

TEST(HardwareConfig, TheSeedsReferenceMachineLoads) {
  const auto config = LoadHardwareConfig(UMI_SOURCE_DIR "/config/hardware/reference.yaml");
  ASSERT_TRUE(config.ok()) << config.error();
  EXPECT_EQ(config->hardware.cpu.cores, 24);
  EXPECT_EQ(config->hardware.cpu.threads, 48);
  EXPECT_EQ(config->hardware.cpu.max_concurrent_tasks, 8);
  ASSERT_EQ(config->hardware.gpus.size(), 1u);
  EXPECT_EQ(config->hardware.gpus[0].model, "NVIDIA GeForce RTX 4090");
  EXPECT_EQ(config->memory_capacity_mb(), static_cast<int64_t>(125.26 * 1024));
  const TaskGroupConfig& cpu_task = config->task_groups.at("cpu_task");
  EXPECT_EQ(cpu_task.resources.cpu_threads, 4);
  EXPECT_EQ(cpu_task.resources.memory_mb, 4096);
  EXPECT_EQ(cpu_task.max_instances, 8);
  EXPECT_EQ(cpu_task.resources.cpu_cores, 2.0);
  EXPECT_EQ(config->plugins.at("sleep").task_group, "cpu_task");
  EXPECT_TRUE(config->oversubscribe) << "it simulates the seed's machine anywhere";
}

// The installed default is the machine the host runs on: before, it was
// the seed's 24-core RTX 4090 machine on every host.
TEST(HardwareConfig, TheShippedDefaultIsTheDetectedMachine) {
  Machine machine;
  machine.cores = {{0, 1}, {2, 3}, {4, 5}};
  machine.memory_mb = 8192;
  machine.gpus = {GpuDevice{0, "Test GPU", 16}};
  const auto config = LoadHardwareConfig(UMI_SOURCE_DIR "/config/hardware/default.yaml", &machine);
  ASSERT_TRUE(config.ok()) << config.error();
  EXPECT_TRUE(config->hardware_detected);
  EXPECT_EQ(config->hardware.cpu.cores, 3);
  EXPECT_EQ(config->hardware.cpu.threads, 6);
  EXPECT_EQ(config->hardware.cpu.max_concurrent_tasks, 6);
  EXPECT_EQ(config->memory_capacity_mb(), 8192);
  ASSERT_EQ(config->hardware.gpus.size(), 1u);
  EXPECT_EQ(config->hardware.gpus[0].model, "Test GPU");
  EXPECT_FALSE(config->oversubscribe);
  EXPECT_TRUE(config->plugins.at("probe").isolate_process);
}

TEST(HardwareConfig, HardwareIsDetectOrAMap) {
  const auto config = Parse("hardware: detected\n");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.error().find("hardware: expected detect or a map (cpu, gpu, memory), got 'detected'"),
            std::string::npos)
      << config.error();
}

TEST(HardwareConfig, DefaultsFillWhatIsOptional) {
  const auto config = Parse(kMinimal);
  ASSERT_TRUE(config.ok()) << config.error();
  EXPECT_EQ(config->hardware.cpu.threads, 4);
  EXPECT_EQ(config->hardware.cpu.max_concurrent_tasks, 4);
  EXPECT_TRUE(config->hardware.gpus.empty());
  EXPECT_EQ(config->hardware.memory.overcommit_ratio, 1.0);
  EXPECT_FALSE(config->allow_task_overrides);
}

TEST(HardwareConfig, OvercommitScalesMemoryCapacity) {
  const auto config = Parse("hardware:\n  cpu: {cores: 4}\n  memory: {total_gb: 2, overcommit_ratio: 1.5}\n");
  ASSERT_TRUE(config.ok()) << config.error();
  EXPECT_EQ(config->memory_capacity_mb(), 3072);
}

TEST(HardwareConfig, UnknownKeyIsNamedWithItsLine) {
  const auto config = Parse("hardware:\n  cpu: {cores: 4}\n  memory: {total_gb: 2}\n  disk: {}\n");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.error().find("t.yaml: hardware.disk: unknown key"), std::string::npos) << config.error();
  EXPECT_NE(config.error().find("line 4"), std::string::npos) << config.error();
}

TEST(HardwareConfig, WrongTypeIsNamed) {
  const auto config = Parse("hardware:\n  cpu: {cores: many}\n  memory: {total_gb: 2}\n");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.error().find("hardware.cpu.cores: expected a number, got 'many'"), std::string::npos)
      << config.error();
}

TEST(HardwareConfig, MissingSectionsAreNamed) {
  EXPECT_NE(Parse("hardware:\n  memory: {total_gb: 2}\n").error().find("hardware.cpu: missing"),
            std::string::npos);
  EXPECT_NE(Parse("task_groups: {}\n").error().find("hardware: missing"), std::string::npos);
  EXPECT_NE(Parse("- a list\n").error().find("top level must be a map"), std::string::npos);
  EXPECT_NE(Parse("hardware: {cpu: [\n").error().find("invalid YAML"), std::string::npos);
}

TEST(HardwareConfig, UnknownTaskGroupReferenceIsRefused) {
  const auto config = Parse(std::string(kMinimal) + "plugins:\n  sleep: {task_group: nope}\n");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.error().find("plugins.sleep.task_group: no task group named 'nope'"), std::string::npos)
      << config.error();
}

TEST(HardwareConfig, TaskGroupLargerThanThePoolIsRefused) {
  const auto config = Parse(std::string(kMinimal) + "task_groups:\n  huge: {threads: 64}\n");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.error().find("task_groups.huge.threads: needs 64 but the pool has 4"), std::string::npos)
      << config.error();
}

TEST(HardwareConfig, FractionalGpuAboveOneIsRefused) {
  const auto config = Parse(std::string(kMinimal) + "task_groups:\n  g: {gpu_count: 1.5}\n");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.error().find("whole number"), std::string::npos) << config.error();
}

TEST(HardwareConfig, PluginSettingsBecomeAMsgpackMap) {
  const auto config = Parse(std::string(kMinimal) + "plugins:\n  p: {settings: {quality: 90, name: x}}\n");
  ASSERT_TRUE(config.ok()) << config.error();
  const std::string& packed = config->plugins.at("p").settings_msgpack;
  const auto handle = msgpack::unpack(packed.data(), packed.size());
  const auto settings = handle.get().as<std::map<std::string, msgpack::object>>();
  EXPECT_EQ(settings.at("quality").as<int>(), 90);
  EXPECT_EQ(settings.at("name").as<std::string>(), "x");
}

// cpu_threads, as the SDK and the protocol spell it; threads, the alias.
TEST(HardwareConfig, CpuThreadsAndItsAliasThreadsMeanTheSame) {
  const std::string pool = "hardware:\n  cpu: {cores: 4, threads: 8}\n  memory: {total_gb: 8}\n";
  const auto canonical = Parse(pool + "plugins:\n  probe: {cpu_threads: 3}\n");
  const auto alias = Parse(pool + "plugins:\n  probe: {threads: 3}\n");
  ASSERT_TRUE(canonical.ok()) << canonical.error();
  ASSERT_TRUE(alias.ok()) << alias.error();
  EXPECT_EQ(canonical->plugins.at("probe").resources.cpu_threads, 3);
  EXPECT_EQ(alias->plugins.at("probe").resources.cpu_threads, 3);
  const auto too_many = Parse(pool + "task_groups:\n  g: {cpu_threads: 9}\n");
  ASSERT_FALSE(too_many.ok());
  EXPECT_NE(too_many.error().find("task_groups.g.cpu_threads: needs 9 but the pool has 8"), std::string::npos)
      << too_many.error();
}

}  // namespace
}  // namespace umi
