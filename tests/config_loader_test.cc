#include "config/config_loader.h"

#include <gtest/gtest.h>

#include <stdlib.h>

#include <fstream>
#include <map>

namespace umi {
namespace {

Machine TwoCoreMachine() {
  Machine m;
  m.cores = {{0, 2}, {1, 3}};
  m.memory_mb = 8192;
  m.gpu_note = "none here";
  return m;
}

EnvLookup Env(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const char* name) -> const char* {
    const auto found = vars.find(name);
    return found == vars.end() ? nullptr : found->second.c_str();
  };
}

TEST(ConfigLoader, DetectedHardwareMakesAConfig) {
  const HardwareConfig c = ConfigFromMachine(TwoCoreMachine());
  EXPECT_EQ(c.hardware.cpu.cores, 2);
  EXPECT_EQ(c.hardware.cpu.threads, 4);
  EXPECT_EQ(c.hardware.cpu.max_concurrent_tasks, 4);
  EXPECT_EQ(c.memory_capacity_mb(), 8192);
  EXPECT_EQ(c.origin, "detected");
}

TEST(ConfigLoader, EnvironmentOverridesDetection) {
  const auto c = ConfigFromEnvironment(
      Env({{"UMI_CPU_CORES", "1.5"}, {"UMI_GPU_COUNT", "2"}, {"UMI_MEMORY_MB", "1024"}}), TwoCoreMachine());
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(c->hardware.cpu.cores, 1.5);
  EXPECT_EQ(c->hardware.cpu.threads, 4);  // detected
  EXPECT_EQ(c->hardware.gpus.size(), 2u);
  EXPECT_EQ(c->memory_capacity_mb(), 1024);
  EXPECT_EQ(c->origin, "environment");
}

TEST(ConfigLoader, BadEnvironmentValuesAreNamed) {
  const auto c = ConfigFromEnvironment(Env({{"UMI_CPU_THREADS", "2.5"}, {"UMI_MEMORY_MB", "lots"}}), TwoCoreMachine());
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().find("UMI_CPU_THREADS='2.5' is not a whole number >= 1"), std::string::npos) << c.error();
  EXPECT_NE(c.error().find("UMI_MEMORY_MB='lots'"), std::string::npos) << c.error();
  EXPECT_FALSE(ConfigFromEnvironment(Env({}), TwoCoreMachine()).ok());
}

class LoadConfigTest : public ::testing::Test {
 protected:
  LoadConfigTest() {
    std::string pattern = (std::filesystem::temp_directory_path() / "umi-load-config-XXXXXX").string();
    dir_ = mkdtemp(pattern.data());
    std::ofstream(dir_ / "good.yaml") << "hardware:\n  cpu: {cores: 2}\n  memory: {total_gb: 4}\n";
    std::ofstream(dir_ / "bad.yaml") << "hardware:\n  cpu: {cores: 2, bogus: 1}\n  memory: {total_gb: 4}\n";
    std::ofstream(dir_ / "pinned.yaml") << "hardware:\n  cpu: {cores: 8, threads: 16, pinning: true}\n"
                                            "  memory: {total_gb: 4}\n";
  }
  ~LoadConfigTest() override { std::filesystem::remove_all(dir_); }
  ConfigChoice Choice(const char* file, bool strict = false, bool allow_fallback = true) {
    return {dir_ / file, {dir_}, strict, allow_fallback};
  }
  std::filesystem::path dir_;
};

TEST_F(LoadConfigTest, AGoodFileIsUsedAsIs) {
  const auto loaded = LoadConfig(Choice("good.yaml"), Env({}), TwoCoreMachine());
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded->config.origin, "file");
  EXPECT_TRUE(loaded->errors.empty());
}

TEST_F(LoadConfigTest, ABadFileFallsBackToTheEnvironmentThenDetection) {
  const auto from_env = LoadConfig(Choice("bad.yaml"), Env({{"UMI_CPU_THREADS", "3"}}), TwoCoreMachine());
  ASSERT_TRUE(from_env.ok());
  EXPECT_EQ(from_env->config.origin, "environment");
  EXPECT_EQ(from_env->config.hardware.cpu.threads, 3);
  ASSERT_EQ(from_env->errors.size(), 1u);
  EXPECT_NE(from_env->errors[0].find("bad.yaml: hardware.cpu.bogus: unknown key"), std::string::npos);
  EXPECT_NE(from_env->errors[0].find("using the UMI_* environment variables instead"), std::string::npos);

  const auto detected = LoadConfig(Choice("bad.yaml"), Env({}), TwoCoreMachine());
  ASSERT_TRUE(detected.ok());
  EXPECT_EQ(detected->config.origin, "detected");
  EXPECT_NE(detected->errors[0].find("using the detected hardware instead (4 threads, 2 cores"), std::string::npos)
      << detected->errors[0];
}

TEST_F(LoadConfigTest, ANamedFileThatFailsIsFinalUnlessFallbackIsAllowed) {
  const auto named = LoadConfig(Choice("bad.yaml", false, false), Env({}), TwoCoreMachine());
  ASSERT_FALSE(named.ok());
  EXPECT_NE(named.error().find("hardware.cpu.bogus"), std::string::npos);
  EXPECT_NE(named.error().find("named by --config; --allow-fallback"), std::string::npos) << named.error();
  const auto by_env = LoadConfig({std::nullopt, {dir_}, false, false}, Env({{"HARDWARE_CONFIG", "bad"}}),
                                 TwoCoreMachine());
  ASSERT_FALSE(by_env.ok());
  EXPECT_NE(by_env.error().find("named by HARDWARE_CONFIG"), std::string::npos) << by_env.error();
  const auto allowed = LoadConfig(Choice("bad.yaml"), Env({}), TwoCoreMachine());
  ASSERT_TRUE(allowed.ok());
  EXPECT_NE(allowed->fallback.find("hardware.cpu.bogus"), std::string::npos);
  // The default path, named by nobody, still falls back on its own.
  std::filesystem::rename(dir_ / "bad.yaml", dir_ / "default.yaml");
  const auto unnamed = LoadConfig({std::nullopt, {dir_}, false, false}, Env({}), TwoCoreMachine());
  ASSERT_TRUE(unnamed.ok());
  EXPECT_EQ(unnamed->config.origin, "detected");
  EXPECT_FALSE(unnamed->fallback.empty());
}

TEST_F(LoadConfigTest, StrictMakesAnyErrorFinal) {
  const auto loaded = LoadConfig(Choice("bad.yaml", true), Env({{"UMI_CPU_THREADS", "3"}}), TwoCoreMachine());
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.error().find("hardware.cpu.bogus"), std::string::npos);
}

TEST_F(LoadConfigTest, PinningBeyondTheMachineIsAnError) {
  const auto loaded = LoadConfig(Choice("pinned.yaml", true), Env({}), TwoCoreMachine());
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.error().find("pinning needs hardware.cpu.threads (16) <= this machine's logical CPUs (4)"),
            std::string::npos)
      << loaded.error();
}

// --strict-config on a pool larger than the machine: before, it started
// and scheduled 48 threads and a GPU on a 2-CPU box.
TEST_F(LoadConfigTest, StrictConfigRefusesAPoolLargerThanTheMachineUnlessItSaysSo) {
  std::ofstream(dir_ / "big.yaml") << "hardware:\n  cpu: {cores: 24, threads: 48}\n  memory: {total_gb: 4}\n";
  std::ofstream(dir_ / "meant.yaml") << "oversubscribe: true\n"
                                        "hardware:\n  cpu: {cores: 24, threads: 48}\n  memory: {total_gb: 4}\n";
  ConfigChoice strict = Choice("big.yaml", true);
  strict.refuse_oversubscribe = true;
  const auto refused = LoadConfig(strict, Env({}), TwoCoreMachine());
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().find("big.yaml: the pool is larger than this machine (config cpu cores 24 exceeds this "
                                 "machine's 2 physical cores, and 1 more)"),
            std::string::npos)
      << refused.error();
  EXPECT_NE(refused.error().find("oversubscribe: true"), std::string::npos) << refused.error();

  const auto lenient = LoadConfig(Choice("big.yaml", true), Env({}), TwoCoreMachine());
  ASSERT_TRUE(lenient.ok()) << "without --strict-config it is a warning";
  EXPECT_EQ(lenient->warnings.size(), 2u);

  strict.explicit_path = dir_ / "meant.yaml";
  const auto meant = LoadConfig(strict, Env({}), TwoCoreMachine());
  ASSERT_TRUE(meant.ok()) << meant.error();
  EXPECT_TRUE(meant->config.oversubscribe);
  EXPECT_TRUE(meant->warnings.empty()) << "what is meant is not warned of";
}

// `hardware: detect` takes the machine LoadConfig is given.
TEST_F(LoadConfigTest, DetectTakesTheMachine) {
  std::ofstream(dir_ / "detect.yaml") << "hardware: detect\n";
  ConfigChoice strict = Choice("detect.yaml", true);
  strict.refuse_oversubscribe = true;
  const auto loaded = LoadConfig(strict, Env({}), TwoCoreMachine());
  ASSERT_TRUE(loaded.ok()) << loaded.error();
  EXPECT_EQ(loaded->config.hardware.cpu.threads, 4);
  EXPECT_EQ(loaded->config.origin, "file");
  EXPECT_TRUE(loaded->config.hardware_detected);
  EXPECT_TRUE(loaded->warnings.empty());
}

TEST_F(LoadConfigTest, HardwareConfigEnvironmentPicksTheFile) {
  const auto loaded = LoadConfig({std::nullopt, {dir_}, true}, Env({{"HARDWARE_CONFIG", "good"}}), TwoCoreMachine());
  ASSERT_TRUE(loaded.ok()) << loaded.error();
  EXPECT_EQ(loaded->config.source, dir_ / "good.yaml");
}

TEST(ConfigLoader, WarnsWhereTheConfigExceedsTheMachine) {
  HardwareConfig c;
  c.hardware.cpu.cores = 24;
  c.hardware.cpu.threads = 48;
  c.hardware.memory.total_gb = 128;
  c.hardware.gpus = {{0, "x", 1}};
  const auto warnings = CompareWithMachine(c, TwoCoreMachine());
  ASSERT_EQ(warnings.size(), 4u);
  EXPECT_EQ(warnings[0], "config cpu cores 24 exceeds this machine's 2 physical cores");
  EXPECT_EQ(warnings[1], "config cpu threads 48 exceeds this machine's 4 logical CPUs");
  EXPECT_EQ(warnings[3], "config GPU count 1 exceeds this machine's 0 GPU(s) (none here)");
  EXPECT_TRUE(CompareWithMachine(ConfigFromMachine(TwoCoreMachine()), TwoCoreMachine()).empty());
}


TEST(ConfigLoader, ResolvePathFollowsTheSeedsRule) {
  std::string pattern = (std::filesystem::temp_directory_path() / "umi-config-resolve-XXXXXX").string();
  const std::filesystem::path dir = mkdtemp(pattern.data());
  std::ofstream(dir / "default.yaml") << "hardware:\n  cpu: {cores: 4}\n  memory: {total_gb: 2}\n";
  std::ofstream(dir / "big.yaml") << "hardware:\n  cpu: {cores: 4}\n  memory: {total_gb: 2}\n";
  EXPECT_EQ(ResolveConfigPath(std::nullopt, nullptr, {dir}).value(), dir / "default.yaml");
  EXPECT_EQ(ResolveConfigPath(std::nullopt, "big", {dir}).value(), dir / "big.yaml");
  EXPECT_EQ(ResolveConfigPath(std::filesystem::path("/x.yaml"), "big", {dir}).value(), "/x.yaml");
  const auto missing = ResolveConfigPath(std::nullopt, "nope", {dir});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().find("nope.yaml"), std::string::npos);
  EXPECT_FALSE(ResolveConfigPath(std::nullopt, "../etc/passwd", {dir}).ok());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace umi
