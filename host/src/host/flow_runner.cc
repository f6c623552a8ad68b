#include "host/flow_runner.h"

#include <spdlog/spdlog.h>

#include <map>
#include <unordered_map>

#include "transport/flow_results.h"
#include "transport/protocol.h"

namespace umi {
namespace {

std::string StepRoute(size_t index) { return std::to_string(index); }

}  // namespace

void FlowRunner::Start(FlowMessage message, ReplyRoute route, uint64_t key) {
  Flow flow;
  flow.id = message.id;
  flow.route = std::move(route);
  flow.key = key;
  flow.started_at = clock_.UnixSeconds();
  flow.accepted = clock_.Now();
  std::unordered_map<std::string, size_t> index;
  for (FlowStep& spec : message.steps) {
    index.emplace(spec.name, flow.steps.size());
    Step& step = flow.steps.emplace_back();
    step.spec = std::move(spec);
  }
  for (size_t i = 0; i < flow.steps.size(); ++i) {
    Step& step = flow.steps[i];
    step.waiting_for = step.spec.after.size();
    for (const std::string& before : step.spec.after) flow.steps[index.at(before)].dependents.push_back(i);
    if (step.waiting_for == 0) released_.emplace_back(flow.id, i);
  }
  flows_.emplace(flow.id, std::move(flow));
}

void FlowRunner::Send(std::string_view body, const ReplyRoute& route, const TaskFingerprint* /*kept_as*/) {
  const auto found = route.address.size() == 2 ? flows_.find(route.address[0]) : flows_.end();
  if (found == flows_.end()) return;  // the flow already ended (cancelled): a late answer
  Flow& flow = found->second;
  const size_t index = std::stoul(route.address[1]);
  Step& step = flow.steps.at(index);
  if (step.state == Step::State::kEnded) return;
  StepOutcome outcome = ReadStepOutcome(step.spec.name, body);
  step.result.assign(body);
  step.output = std::move(outcome.output);
  if (!outcome.ok && flow.first_failure.empty()) flow.first_failure = std::move(outcome.failure);
  EndStep(flow, index, outcome.ok);
}

void FlowRunner::EndStep(Flow& flow, size_t index, bool ok) {
  Step& step = flow.steps[index];
  step.state = Step::State::kEnded;
  step.ok = ok;
  ++flow.ended;
  if (ok) {
    for (const size_t dependent : step.dependents) {
      Step& next = flow.steps[dependent];
      if (--next.waiting_for == 0 && next.state == Step::State::kWaiting) released_.emplace_back(flow.id, dependent);
    }
  } else {
    SkipDependents(flow, index);
  }
  if (flow.ended == flow.steps.size()) ended_.push_back(flow.id);
}

void FlowRunner::SkipDependents(Flow& flow, size_t index) {
  const std::string why = "step '" + flow.steps[index].spec.name + "' did not end ok";
  std::vector<size_t> pending = flow.steps[index].dependents;
  while (!pending.empty()) {
    const size_t next = pending.back();
    pending.pop_back();
    if (flow.steps[next].state != Step::State::kWaiting) continue;
    Skip(flow, next, "upstream_failed", why);
    for (const size_t after_it : flow.steps[next].dependents) pending.push_back(after_it);
  }
}

void FlowRunner::Skip(Flow& flow, size_t index, const std::string& code, const std::string& message) {
  Step& step = flow.steps[index];
  step.state = Step::State::kEnded;
  if (flow.first_failure.empty()) flow.first_failure = "step '" + step.spec.name + "' skipped: " + code + ": " + message;
  step.result = SkippedStepResult(step.spec.task.id, step.spec.task.plugin, flow.id, code, message);
  ++flow.ended;
  if (flow.ended == flow.steps.size()) ended_.push_back(flow.id);
}

TaskMessage FlowRunner::Released(Flow& flow, size_t index) {
  Step& step = flow.steps[index];
  step.state = Step::State::kSubmitted;
  TaskMessage task = std::move(step.spec.task);
  step.spec.task.id = task.id;  // kept for a skipped or cancelled record
  step.spec.task.plugin = task.plugin;
  if (step.spec.after.empty()) return task;
  std::vector<std::string> names;
  std::vector<std::pair<std::string_view, std::string_view>> outputs;
  names.reserve(step.spec.after.size());
  for (const std::string& before : step.spec.after) {
    names.push_back(PackedString(before));
    for (const Step& candidate : flow.steps) {
      if (candidate.spec.name == before) outputs.emplace_back(names.back(), candidate.output);
    }
  }
  task.input_msgpack = WithPackedField(std::move(task.input_msgpack), "upstream", PackedMap(outputs));
  return task;
}

void FlowRunner::Pump(const Submit& submit, const Answer& answer, bool serving) {
  while (has_work()) {
    while (!released_.empty()) {
      const auto [flow_id, index] = released_.front();
      released_.pop_front();
      const auto found = flows_.find(flow_id);
      if (found == flows_.end() || found->second.steps[index].state != Step::State::kWaiting) continue;
      Flow& flow = found->second;
      if (!serving) {
        Skip(flow, index, "shutting_down", "the host began to drain before the step was released");
        continue;
      }
      ReplyRoute route{this, false, {flow.id, StepRoute(index)}};
      submit(Released(flow, index), std::move(route));  // its answer may come back at once (Send)
    }
    std::vector<std::string> ended;
    ended.swap(ended_);
    for (const std::string& flow_id : ended) {
      const auto found = flows_.find(flow_id);
      if (found == flows_.end()) continue;
      const Flow flow = std::move(found->second);
      flows_.erase(found);
      answer(FlowResult(flow), flow.route, flow.key);
    }
  }
}

std::vector<std::string> FlowRunner::Cancel(const std::string& flow_id) {
  std::vector<std::string> running;
  const auto found = flows_.find(flow_id);
  if (found == flows_.end()) return running;
  Flow& flow = found->second;
  flow.cancelled = true;
  for (size_t i = 0; i < flow.steps.size(); ++i) {
    Step& step = flow.steps[i];
    if (step.state == Step::State::kWaiting) Skip(flow, i, "cancelled", "the flow was cancelled before the step ran");
    if (step.state == Step::State::kSubmitted) running.push_back(step.spec.task.id);
  }
  return running;
}

TaskResult FlowRunner::FlowResult(const Flow& flow) const {
  std::vector<std::string> names;
  names.reserve(flow.steps.size());
  std::vector<std::pair<std::string_view, std::string_view>> steps;
  steps.reserve(flow.steps.size());
  for (const Step& step : flow.steps) names.push_back(PackedString(step.spec.name));
  for (size_t i = 0; i < flow.steps.size(); ++i) steps.emplace_back(names[i], flow.steps[i].result);
  FlowEnd end;
  end.id = flow.id;
  end.output = FlowOutput(steps);
  end.first_failure = flow.first_failure;
  end.cancelled = flow.cancelled;
  end.run_ms = std::chrono::duration<double, std::milli>(clock_.Now() - flow.accepted).count();
  end.started_at = flow.started_at;
  end.finished_at = clock_.UnixSeconds();
  return umi::FlowResult(end);
}

}  // namespace umi
