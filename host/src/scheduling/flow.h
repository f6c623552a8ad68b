// A flow: several tasks sent as one message, each step starting when the
// steps it names in `after` have ended ok (docs/flows.md). FlowMessage is
// the decoded message; CheckFlowGraph is the one check that needs every
// step at once (names in `after` exist, no cycle). A step is a TaskMessage
// whose id is "<flow id>/<step>" and whose `flow` names the flow.
//
// Thread safety: value types and a pure function.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "common/status.h"
#include "scheduling/task.h"

namespace umi {

// At most this many steps in one flow, and this many bytes in a step's name.
inline constexpr size_t kMaxFlowSteps = 10000;
inline constexpr size_t kMaxStepNameBytes = 64;

struct FlowStep {
  std::string name;
  TaskMessage task;                // id "<flow id>/<name>", flow = the flow's id
  std::vector<std::string> after;  // names of steps that must end ok first
};

struct FlowMessage {
  std::string id;
  std::vector<FlowStep> steps;  // in the order of the message's map
  std::string packed;           // the `flow` map as sent: what makes a retry the same flow
};

// kBadRequest when a step names an unknown step in `after`, itself, or the
// steps form a cycle (named: "a -> b -> a").
Status CheckFlowGraph(const FlowMessage& flow);

}  // namespace umi
