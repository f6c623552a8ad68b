// Checks that flow tests share, on one host and across a farm.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <string>

#include "support/wire.h"

namespace umi::testing {

// A diamond's result (probe; thumb and scenes after it; report after both):
// ok, with four ok steps of `flow_id`, each started after the steps it
// waits for ended. Returns the steps by name (empty when it was not ok).
inline std::map<std::string, Result> ExpectDiamondInOrder(const Result& flow, const std::string& flow_id) {
  EXPECT_EQ(flow.status, "ok") << flow.error_message;
  EXPECT_EQ(flow.id, flow_id);
  EXPECT_EQ(flow.plugin, "flow");
  std::map<std::string, Result> steps = FlowSteps(flow);
  EXPECT_EQ(steps.size(), 4u);
  if (steps.size() != 4u) return {};
  for (const auto& [name, step] : steps) {
    EXPECT_EQ(step.status, "ok") << name;
    EXPECT_EQ(step.id, flow_id + "/" + name);
    EXPECT_EQ(step.flow, flow_id);
  }
  EXPECT_LE(*steps["probe"].finished_at, *steps["thumb"].started_at);
  EXPECT_LE(*steps["probe"].finished_at, *steps["scenes"].started_at);
  EXPECT_LE(*steps["thumb"].finished_at, *steps["report"].started_at);
  EXPECT_LE(*steps["scenes"].finished_at, *steps["report"].started_at);
  return steps;
}

}  // namespace umi::testing
