// What a flow's one result is made of, shared by a host that runs a whole
// flow itself (host/flow_runner.h) and a farm that spreads one over its
// hosts (transport/redis_flows.h), so both answer byte for byte alike: a
// step's outcome read from the result it sent, a skipped step's record, the
// flow's output (`steps`, each step's result by name) and its result.
//
// Thread safety: stateless functions.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "scheduling/task.h"

namespace umi {

struct StepOutcome {
  bool ok = false;
  std::string output;   // its output map, encoded, when ok (the next steps' `upstream`)
  std::string failure;  // when not ok: "step 'probe' ended error: bad_input: ..."
};
// `result`: the step's result as the host encoded it.
StepOutcome ReadStepOutcome(std::string_view step_name, std::string_view result);

// The record of a step that never ran: status `skipped`, with `code`
// (upstream_failed, cancelled, shutting_down) and why.
std::string SkippedStepResult(std::string_view step_id, std::string_view plugin, std::string_view flow_id,
                              std::string_view code, std::string_view message);

// `name` as a msgpack string.
std::string PackedString(std::string_view name);
// A map of values already packed, from (key as PackedString, value) pairs
// in order: a released step's `upstream` (step name -> its output).
std::string PackedMap(const std::vector<std::pair<std::string_view, std::string_view>>& pairs);
// {steps: {name: result, ...}} from (name as PackedString, result) pairs in order.
std::string FlowOutput(const std::vector<std::pair<std::string_view, std::string_view>>& steps);

struct FlowEnd {
  std::string id;
  std::string output;         // FlowOutput
  std::string first_failure;  // empty: every step ended ok
  bool cancelled = false;
  double started_at = 0;  // Unix seconds
  double finished_at = 0;
  double run_ms = 0;
};
// The flow's one result: ok, error/step_failed naming the first failure, or cancelled.
TaskResult FlowResult(const FlowEnd& end);

}  // namespace umi
