// The sandbox's pure parts: the policy a plugin's workers get from its
// config, settings and declaration, and what a kernel lacks of it.
#include "runtime/sandbox.h"

#include <gtest/gtest.h>

#include <msgpack.hpp>

#include <algorithm>

#include "runtime/plugin_registry.h"

namespace umi {
namespace {

std::string Settings(const std::vector<std::string>& media_roots, const std::string& output_root) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  packer.pack_map(2);
  packer.pack("media_roots").pack(media_roots);
  packer.pack("output_root").pack(output_root);
  return std::string(buffer.data(), buffer.size());
}

bool Has(const std::vector<std::filesystem::path>& paths, const std::filesystem::path& path) {
  return std::find(paths.begin(), paths.end(), path) != paths.end();
}

TEST(SandboxPolicy, GrantsItsRootsWhatItDeclaresAndWhatTheYamlAdds) {
  LoadedPlugin plugin;
  plugin.path = "/opt/umi/plugins/probe.so";
  plugin.sandbox_needs.exec = true;
  plugin.sandbox_needs.read = {"/opt/models"};
  SandboxConfig config;
  config.network = true;
  config.read = {"/srv/extra"};
  config.write = {"/srv/out2"};
  config.max_file_mb = 8;
  const std::optional<SandboxPolicy> policy = MakeSandboxPolicy(config, Settings({"/tmp", "/no/such/dir"}, "/tmp"), plugin);
  ASSERT_TRUE(policy);
  EXPECT_TRUE(policy->exec);     // declared
  EXPECT_TRUE(policy->network);  // the YAML's
  EXPECT_TRUE(Has(policy->read, "/opt/models"));
  EXPECT_TRUE(Has(policy->read, "/srv/extra"));
  EXPECT_TRUE(Has(policy->read, "/tmp"));
  EXPECT_FALSE(Has(policy->read, "/no/such/dir")) << "a data directory not made yet grants nothing";
  EXPECT_TRUE(Has(policy->read, "/opt/umi/plugins"));
  EXPECT_TRUE(Has(policy->read, "/usr"));
  EXPECT_TRUE(Has(policy->write, "/tmp"));
  EXPECT_TRUE(Has(policy->write, "/srv/out2"));
  EXPECT_TRUE(Has(policy->devices, "/dev/null"));
  EXPECT_EQ(policy->max_file_bytes, 8 << 20);
}

TEST(SandboxPolicy, OffIsNoneAndRequiredComesFromEitherSide) {
  LoadedPlugin plugin;
  SandboxConfig off;
  off.enabled = false;
  EXPECT_FALSE(MakeSandboxPolicy(off, Settings({}, "/tmp"), plugin));
  plugin.sandbox_needs.required = true;
  EXPECT_TRUE(MakeSandboxPolicy(SandboxConfig{}, Settings({}, "/tmp"), plugin)->required);
}

TEST(SandboxPolicy, WhatAKernelLacksIsNamed) {
  SandboxPolicy policy;
  SandboxSupport none;
  EXPECT_EQ(MissingMechanisms(policy, none),
            (std::vector<std::string>{"landlock_files", "landlock_tcp", "landlock_signals", "seccomp", "network_namespace"}));
  policy.network = true;  // then it needs neither a network namespace nor TCP rules
  policy.exec = true;     // but a pid namespace
  EXPECT_EQ(MissingMechanisms(policy, none),
            (std::vector<std::string>{"landlock_files", "landlock_signals", "seccomp", "pid_namespace"}));
  SandboxSupport full{.landlock_abi = 7, .seccomp = true, .network_namespace = true, .pid_namespace = true};
  EXPECT_TRUE(MissingMechanisms(policy, full).empty());
}

}  // namespace
}  // namespace umi
