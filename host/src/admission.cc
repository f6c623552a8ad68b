#include "admission.h"

namespace umi {

std::variant<Refused, Demand> MakeDemand(const LoadedPlugin& plugin, const TaskMessage& task,
                                         bool allow_task_overrides, const ResourcePool& pool) {
  Demand demand{plugin.requirement, plugin.task_group, plugin.name};
  if (task.resources) {
    if (!allow_task_overrides) {
      return Refused{"bad_request", "'resources' given but the config does not set allow_task_overrides: true"};
    }
    task.resources->ApplyTo(demand.requirement);
    if (const std::string why = demand.requirement.Validate(); !why.empty()) {
      return Refused{"bad_request", "resources: " + why};
    }
  }
  if (std::string why = pool.WhyInfeasible(demand); !why.empty()) return Refused{"infeasible", std::move(why)};
  return demand;
}

Admission Admit(const TaskMessage& task, const AdmissionFacts& facts, const ResourcePool& pool) {
  if (!facts.serving) return Refused{"shutting_down", "the host is draining and takes no new tasks"};
  if (facts.id_active) return Refused{"duplicate_id", "a task with id '" + task.id + "' is already queued or running"};
  const uint64_t fingerprint = Fingerprint(task);
  if (facts.finished) {
    if (facts.finished->fingerprint != fingerprint) {
      return Refused{"id_conflict", "id '" + task.id +
                                        "' belongs to an earlier task with another plugin, input or resources; "
                                        "give each task its own id"};
    }
    return Retry{&facts.finished->body};
  }
  if (!facts.plugin) {
    return Refused{"unknown_plugin", facts.plugin_refusal.empty()
                                         ? "no plugin named '" + task.plugin + "' is loaded"
                                         : "plugin '" + task.plugin + "' was refused at load: " + facts.plugin_refusal};
  }
  if (facts.from_rpc && facts.queued >= static_cast<size_t>(facts.max_queued)) {
    return Refused{"queue_full",
                   "the queue holds scheduler.max_queued=" + std::to_string(facts.max_queued) + " tasks; retry later"};
  }
  auto demand = MakeDemand(*facts.plugin, task, facts.allow_task_overrides, pool);
  if (auto* refused = std::get_if<Refused>(&demand)) return std::move(*refused);
  return Admitted{std::get<Demand>(std::move(demand)), fingerprint};
}

}  // namespace umi
