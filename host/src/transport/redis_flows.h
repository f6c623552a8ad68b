// A flow in a farm, spread over its hosts (docs/flows.md, "In a farm"). Its
// state is one Redis hash, umi:flow:<id>, changed only by two scripts
// (redis_scripts.h), each one atomic step fenced on the stream entry its
// caller holds:
//
//   kOpenFlow  the host that read the flow's entry writes the hash (each
//              step's task, stream, `after` and dependents), adds the steps
//              that wait for nothing to their plugins' streams and
//              acknowledges the flow's entry.
//   kEndStep   the host that ran a step records its result; a step whose
//              `after` steps have now all ended ok goes onto its stream
//              with field `u`: the `upstream` map, put together in Lua from
//              bytes the hosts packed (no msgpack is decoded there); a step
//              that did not end ok has its dependents recorded skipped. The
//              host that ends the flow's last step writes the flow's one
//              result in the same step (and umi:result:<id>) and deletes
//              the hash.
//
// A step's task carries `step_of` (the flow's id): that is how the host
// that reads it knows its answer goes to kEndStep, and it survives a drain
// giving the entry back. This file builds the scripts' arguments and reads
// their answers; RedisResults sends them.
//
// Thread safety: stateless functions.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/fingerprint.h"
#include "scheduling/flow.h"

namespace umi::redis_flows {

std::string FlowKey(std::string_view flow_id);

// kOpenFlow's arguments after (group, consumer, entry, started key);
// `fingerprint`: the flow's, kept with its result (hash field fp).
std::vector<std::string> OpenArgs(const FlowMessage& flow, const std::string& reply_to,
                                  std::optional<TaskFingerprint> fingerprint = std::nullopt);

// The step `step_id` of flow `flow_id` ended with `result`: kEndStep's
// arguments after (group, consumer, entry, started key).
std::vector<std::string> EndStepArgs(std::string_view flow_id, std::string_view step_id, std::string_view result);

// A step's task as a stream entry holds it, with `upstream` (field `u`)
// added to its input.
std::string WithUpstream(std::string_view task, std::string_view upstream);

}  // namespace umi::redis_flows
