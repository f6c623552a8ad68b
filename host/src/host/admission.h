// Admission: what happens to a decoded task, decided without changing
// anything: refused (a Status: its code and why), answered from the dedup
// window (a retry), or admitted with its demand on the pool.
//
// The checks, in order: the host is draining (shutting_down); the id is
// queued or running (duplicate_id); the id finished within the dedup window
// (the same task: its stored result; another task: id_conflict); the plugin
// is not loaded (unknown_plugin, with why it was refused if it was); an rpc
// task past scheduler.max_queued (queue_full); the task's own resources
// (bad_request unless allowed and valid); the demand cannot fit the whole
// pool (infeasible).
//
// The loop looks things up and passes what it found (AdmissionFacts); Admit
// is pure.
//
// Thread safety: stateless.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <variant>

#include "runtime/plugin_registry.h"
#include "common/status_or.h"
#include "transport/protocol.h"
#include "scheduling/resource_pool.h"
#include "host/result_cache.h"

namespace umi {

struct AdmissionFacts {
  bool serving = true;
  bool from_rpc = false;  // rpc tasks are answered queue_full; the tasks socket is just not read
  bool id_active = false;  // a task with this id is queued or running
  const ResultCache::Entry* finished = nullptr;  // this id within the dedup window
  const LoadedPlugin* plugin = nullptr;          // null: not loaded
  std::string plugin_refusal;                    // why a library of that name was refused, if one was
  size_t queued = 0;
  int64_t max_queued = 0;
  bool allow_task_overrides = false;
};

struct Retry {
  const std::string* result;  // the stored result, byte for byte
};
struct Admitted {
  Demand demand;
  TaskFingerprint fingerprint;
};
// Refused: a Status saying which code (transport/protocol.h, WireCode) and why.
using Admission = std::variant<Status, Retry, Admitted>;

Admission Admit(const TaskMessage& task, const AdmissionFacts& facts, const ResourcePool& pool);

// A flow (scheduling/flow.h) is admitted whole or not at all: the same
// checks for the flow's id (draining, duplicate_id, its stored result or
// id_conflict), then every step's plugin must be loaded (unknown_plugin,
// naming the step) and its demand fit the whole pool (infeasible, or
// bad_request for its resources), or, in a farm, be run by another live
// host (which checks the step's demand when it takes it). Queue length does not refuse a flow: its
// steps queue as they are released.
struct FlowFacts {
  bool serving = true;
  bool id_active = false;
  const ResultCache::Entry* finished = nullptr;
  std::function<const LoadedPlugin*(const std::string&)> find_plugin;
  std::function<std::string(const std::string&)> plugin_refusal;  // why a library of that name was refused
  // A plugin not loaded here that another host of the farm runs (null: no
  // farm): its steps are checked by the host that takes them.
  std::function<bool(const std::string&)> served_elsewhere;
  bool allow_task_overrides = false;
};
struct AdmittedFlow {
  TaskFingerprint fingerprint;
};
using FlowAdmission = std::variant<Status, Retry, AdmittedFlow>;

FlowAdmission AdmitFlow(const FlowMessage& flow, const FlowFacts& facts, const ResourcePool& pool);

// The plugin's effective requirement with the task's own `resources` on top
// (also for queued tasks after a reload): a Demand, or why not.
StatusOr<Demand> MakeDemand(const LoadedPlugin& plugin, const TaskMessage& task, bool allow_task_overrides,
                            const ResourcePool& pool);

}  // namespace umi
