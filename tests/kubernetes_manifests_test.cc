// packaging/kubernetes/ agrees with the host: the ConfigMap's YAML is a
// valid host config on Redis, the Deployment's flags are umi-host's, its
// grace period outlasts the drain, and KEDA watches the streams and the
// group the hosts use.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include "config/hardware_config.h"

namespace umi {
namespace {

const std::string kDir = UMI_SOURCE_DIR "/packaging/kubernetes/";

TEST(KubernetesManifests, AgreeWithTheHost) {
  const YAML::Node configmap = YAML::LoadFile(kDir + "configmap.yaml");
  const auto config = ParseHardwareConfig(configmap["data"]["hardware.yaml"].as<std::string>(), "configmap.yaml");
  ASSERT_TRUE(config.ok()) << config.error();
  EXPECT_EQ(config->transport.redis.rfind("redis://", 0), 0u);

  const YAML::Node deployment = YAML::LoadFile(kDir + "deployment.yaml");
  const YAML::Node pod = deployment["spec"]["template"]["spec"];
  EXPECT_GT(pod["terminationGracePeriodSeconds"].as<double>(), config->shutdown.drain_timeout_s + 5 + 10)
      << "drain, cancel grace and the result flush must fit before SIGKILL";
  const YAML::Node container = pod["containers"][0];
  std::vector<std::string> args = container["args"].as<std::vector<std::string>>();
  for (const std::string& arg : args) {
    if (arg.rfind("--", 0) != 0) continue;
    EXPECT_TRUE(arg == "--config" || arg == "--name" || arg == "--http" || arg == "--redis") << arg;
  }
  const auto name = std::find(args.begin(), args.end(), "--name");
  ASSERT_NE(name, args.end()) << "each pod needs its own consumer name";
  EXPECT_EQ(*(name + 1), "$(POD_NAME)");
  const auto config_flag = std::find(args.begin(), args.end(), "--config");
  ASSERT_NE(config_flag, args.end());
  EXPECT_EQ(*(config_flag + 1), container["volumeMounts"][0]["mountPath"].as<std::string>() + "/hardware.yaml");
  EXPECT_EQ(container["readinessProbe"]["httpGet"]["path"].as<std::string>(), "/readyz");

  const YAML::Node keda = YAML::LoadFile(kDir + "keda-scaledobject.yaml");
  EXPECT_EQ(keda["spec"]["scaleTargetRef"]["name"].as<std::string>(), deployment["metadata"]["name"].as<std::string>());
  const YAML::Node trigger = keda["spec"]["triggers"][0];
  EXPECT_EQ(trigger["type"].as<std::string>(), "redis-streams");
  EXPECT_EQ(trigger["metadata"]["consumerGroup"].as<std::string>(), "umi");
  EXPECT_EQ(trigger["metadata"]["stream"].as<std::string>().rfind("umi:tasks:", 0), 0u);
}

}  // namespace
}  // namespace umi
