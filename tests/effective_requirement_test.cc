#include "config/effective_requirement.h"

#include <gtest/gtest.h>

namespace umi {
namespace {

HardwareConfig Config() {
  HardwareConfig c;
  c.hardware.cpu.cores = 16;
  c.hardware.cpu.threads = 32;
  c.hardware.memory.total_gb = 64;
  TaskGroupConfig group;
  group.resources.cpu_threads = 4;
  group.resources.memory_mb = 4096;
  c.task_groups["batch"] = group;
  TaskGroupConfig other;
  other.resources.cpu_threads = 8;
  c.task_groups["other"] = other;
  return c;
}

ResourceRequirement Declared() {
  ResourceRequirement r;
  r.cpu_cores = Quantity::FromDouble(0.5);
  r.cpu_threads = 1;
  r.memory_mb = 100;
  return r;
}

TEST(EffectiveRequirement, DeclaredAloneWithoutConfig) {
  const auto e = ResolveRequirement(Config(), "p", Declared(), "");
  EXPECT_EQ(e.requirement, Declared());
  EXPECT_EQ(e.sources.at("cpu_threads"), "declared");
  EXPECT_TRUE(e.task_group.empty());
}

TEST(EffectiveRequirement, PrecedenceDeclaredThenGroupThenPluginEntry) {
  HardwareConfig c = Config();
  PluginConfig entry;
  entry.resources.memory_mb = 9000;
  c.plugins["p"] = entry;
  const auto e = ResolveRequirement(c, "p", Declared(), "batch");
  EXPECT_EQ(e.task_group, "batch");
  EXPECT_EQ(e.requirement.cpu_cores, Quantity::FromDouble(0.5));  // declared
  EXPECT_EQ(e.requirement.cpu_threads, 4);                       // group
  EXPECT_EQ(e.requirement.memory_mb, 9000);                      // plugin entry beats group
  EXPECT_EQ(e.sources.at("cpu_cores"), "declared");
  EXPECT_EQ(e.sources.at("cpu_threads"), "task_groups.batch");
  EXPECT_EQ(e.sources.at("memory_mb"), "plugins.p");
}

TEST(EffectiveRequirement, YamlTaskGroupBeatsTheDeclaredGroup) {
  HardwareConfig c = Config();
  PluginConfig entry;
  entry.task_group = "other";
  c.plugins["p"] = entry;
  const auto e = ResolveRequirement(c, "p", Declared(), "batch");
  EXPECT_EQ(e.task_group, "other");
  EXPECT_EQ(e.requirement.cpu_threads, 8);
  EXPECT_EQ(e.requirement.memory_mb, 100);  // "other" does not set memory
}

TEST(EffectiveRequirement, AnUndefinedDeclaredGroupIsDroppedWithAWarning) {
  const auto e = ResolveRequirement(Config(), "p", Declared(), "gpu_heavy");
  EXPECT_TRUE(e.task_group.empty());
  EXPECT_NE(e.warning.find("'gpu_heavy'"), std::string::npos);
  EXPECT_EQ(e.requirement, Declared());
}

}  // namespace
}  // namespace umi
