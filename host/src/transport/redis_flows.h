// A flow in a farm, spread over its hosts (docs/flows.md, "In a farm"). Its
// state is one Redis hash, umi:flow:<id>, changed only by three scripts
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
//              that did not end ok has its dependents recorded skipped. On
//              the flow's last step the entry stays pending and the script
//              returns the flow's state instead.
//   kEndFlow   that host writes the flow's one result to reply_to (and
//              umi:result:<id>), deletes the hash and acknowledges the
//              step's entry. If it dies first, the step is claimed like any
//              task, runs again, finds itself recorded and ends the flow.
//
// A step's task carries `step_of` (the flow's id): that is how the host
// that reads it knows its answer goes to kEndStep, and it survives a drain
// giving the entry back. This file builds the scripts' arguments and reads
// their answers; RedisResults sends them.
//
// Thread safety: stateless functions.
#pragma once

#include <hiredis/hiredis.h>

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

// kEndStep's reply on the flow's last step (reply_to, start time, first
// failure, fingerprint, then each step's name and result): where the
// flow's result goes, the result, encoded, and the flow's fingerprint;
// nothing for any other reply.
struct FlowAnswer {
  std::string reply_to, body;
  std::optional<TaskFingerprint> fingerprint;
};
std::optional<FlowAnswer> FlowAnswerFrom(const redisReply* reply, const std::string& flow_id,
                                         std::string_view host);

// A step's task as a stream entry holds it, with `upstream` (field `u`)
// added to its input.
std::string WithUpstream(std::string_view task, std::string_view upstream);

}  // namespace umi::redis_flows
