// A reload's new config version: PlanVersion builds and checks it with
// nothing changed; only Install puts it in force, in one step.
#include "runtime/plugin_registry.h"

#include <gtest/gtest.h>

namespace umi {
namespace {

UMI_Error* Noop(UMI_Context*) { return nullptr; }

HardwareConfig FourCores() {
  HardwareConfig config;
  config.hardware.cpu.cores = 4;
  config.hardware.cpu.threads = 4;
  return config;
}

class PluginRegistryVersion : public ::testing::Test {
 protected:
  void SetUp() override {
    auto plugin = std::make_unique<LoadedPlugin>();
    plugin->name = "encode";
    plugin->declared.cpu_cores = Quantity::Whole(1);
    plugin->declared.cpu_threads = 1;
    plugin->execute = &Noop;
    ASSERT_TRUE(registry_.Register(std::move(plugin)).ok());
  }
  const LoadedPlugin& encode() const { return *registry_.Find("encode"); }

  PluginRegistry registry_{FourCores()};
};

TEST_F(PluginRegistryVersion, APlannedVersionChangesNothingUntilInstalled) {
  HardwareConfig next = FourCores();
  next.plugins["encode"].resources.cpu_cores = 2.0;
  next.scheduler.max_queued = 7;
  StatusOr<PluginRegistry::ConfigVersion> version = registry_.PlanVersion(next);
  ASSERT_TRUE(version.ok()) << version.error();
  EXPECT_EQ(encode().requirement.cpu_cores, Quantity::Whole(1)) << "phase one changes nothing";
  EXPECT_NE(registry_.config().scheduler.max_queued, 7);
  registry_.Install(std::move(version).value());
  EXPECT_EQ(encode().requirement.cpu_cores, Quantity::Whole(2));
  EXPECT_EQ(encode().requirement_sources.at("cpu_cores"), "plugins.encode");
  EXPECT_EQ(registry_.config().scheduler.max_queued, 7);
}

TEST_F(PluginRegistryVersion, AVersionAPluginCouldNeverRunUnderIsRefusedWithTheReason) {
  HardwareConfig next = FourCores();
  next.plugins["encode"].resources.cpu_cores = 8.0;  // more than the pool has
  StatusOr<PluginRegistry::ConfigVersion> version = registry_.PlanVersion(next);
  ASSERT_FALSE(version.ok());
  EXPECT_EQ(version.status().code(), ErrorCode::kInvalidConfig);
  EXPECT_NE(version.error().find("encode could never run on the new pool"), std::string::npos) << version.error();
  EXPECT_EQ(encode().requirement.cpu_cores, Quantity::Whole(1));
}

}  // namespace
}  // namespace umi
