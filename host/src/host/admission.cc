#include "host/admission.h"

namespace umi {
namespace {

// Why no plugin of that name runs here: none was loaded, or its library was refused.
std::string NotLoaded(const std::string& plugin, const std::string& refusal) {
  return refusal.empty() ? "no plugin named '" + plugin + "' is loaded"
                         : "plugin '" + plugin + "' was refused at load: " + refusal;
}

}  // namespace

StatusOr<Demand> MakeDemand(const LoadedPlugin& plugin, const TaskMessage& task,
                                         bool allow_task_overrides, const ResourcePool& pool) {
  Demand demand{plugin.requirement, plugin.task_group, plugin.name};
  if (task.resources) {
    if (!allow_task_overrides) {
      return Status(ErrorCode::kBadRequest, "'resources' given but the config does not set allow_task_overrides: true");
    }
    task.resources->ApplyTo(demand.requirement);
    if (const Status valid = demand.requirement.Validate(); !valid.ok()) return valid.Prefixed("resources");
  }
  if (Status feasible = pool.CheckFeasible(demand); !feasible.ok()) return feasible;
  return demand;
}

FlowAdmission AdmitFlow(const FlowMessage& flow, const FlowFacts& facts, const ResourcePool& pool) {
  if (!facts.serving) return Status(ErrorCode::kShuttingDown, "the host is draining and takes no new flows");
  if (facts.id_active) return Status(ErrorCode::kDuplicateId, "a flow or task with id '" + flow.id + "' is already running");
  const TaskFingerprint fingerprint = Fingerprint(flow);
  if (facts.finished) {
    if (facts.finished->fingerprint != fingerprint) {
      return Status(ErrorCode::kIdConflict,
                    "id '" + flow.id + "' belongs to an earlier flow or task with other steps; give each flow its own id");
    }
    return Retry{&facts.finished->body};
  }
  for (const FlowStep& step : flow.steps) {
    const LoadedPlugin* plugin = facts.find_plugin(step.task.plugin);
    if (!plugin && facts.served_elsewhere && facts.served_elsewhere(step.task.plugin)) continue;
    if (!plugin) {
      return Status(ErrorCode::kUnknownPlugin,
                    "flow step '" + step.name + "': " + NotLoaded(step.task.plugin, facts.plugin_refusal(step.task.plugin)) +
                        (facts.served_elsewhere ? ", and no live host of the farm offers it" : ""));
    }
    if (auto demand = MakeDemand(*plugin, step.task, facts.allow_task_overrides, pool); !demand.ok()) {
      return demand.status().Prefixed("flow step '" + step.name + "'");
    }
  }
  return AdmittedFlow{fingerprint};
}

Admission Admit(const TaskMessage& task, const AdmissionFacts& facts, const ResourcePool& pool) {
  if (!facts.serving) return Status(ErrorCode::kShuttingDown, "the host is draining and takes no new tasks");
  if (facts.id_active) return Status(ErrorCode::kDuplicateId, "a task with id '" + task.id + "' is already queued or running");
  const TaskFingerprint fingerprint = Fingerprint(task);
  if (facts.finished) {
    if (facts.finished->fingerprint != fingerprint) {
      return Status(ErrorCode::kIdConflict, "id '" + task.id +
                                                  "' belongs to an earlier task with another plugin, input or "
                                                  "resources; give each task its own id");
    }
    return Retry{&facts.finished->body};
  }
  if (!facts.plugin) {
    return Status(ErrorCode::kUnknownPlugin, NotLoaded(task.plugin, facts.plugin_refusal));
  }
  if (facts.from_rpc && facts.queued >= static_cast<size_t>(facts.max_queued)) {
    return Status(ErrorCode::kQueueFull,
                  "the queue holds scheduler.max_queued=" + std::to_string(facts.max_queued) + " tasks; retry later");
  }
  auto demand = MakeDemand(*facts.plugin, task, facts.allow_task_overrides, pool);
  if (!demand.ok()) return demand.status();
  return Admitted{std::move(demand).value(), fingerprint};
}

}  // namespace umi
