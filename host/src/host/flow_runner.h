// FlowRunner: the flows in progress on this host (scheduling/flow.h,
// docs/flows.md). A flow's steps run as tasks; each step's answer comes back
// here, because the runner is the ResultSink of the route every step is
// submitted with. A step whose `after` steps all ended ok is released, its
// input given `upstream` (their outputs by step name); a step that did not
// end ok has its dependents skipped (upstream_failed) while independent
// steps go on. When every step has ended, the flow has its one result:
// `ok`, or `error`/`step_failed` naming the first step that failed, or
// `cancelled`; `output.steps` holds every step's result.
//
// Step results arrive in the middle of the task flow's work (a refusal, an
// inline run, a run's end), so the runner only records them; Pump, called
// by the task flow between its own steps, submits what was released and
// answers the flows that ended. Nothing reenters the task flow.
//
// Thread safety: none; the event loop owns it.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "scheduling/flow.h"
#include "scheduling/task.h"

namespace umi {

class FlowRunner final : public ResultSink {
 public:
  explicit FlowRunner(const Clock& clock) : clock_(clock) {}

  // An admitted flow, answered later on `route`; `key` is its ledger key.
  // Its steps with no `after` are released.
  void Start(FlowMessage flow, ReplyRoute route, uint64_t key);
  // A step's answer (the runner is the route's sink): recorded.
  void Send(std::string_view body, const ReplyRoute& route, const TaskFingerprint* kept_as) override;

  // Released steps and ended flows wait for Pump.
  bool has_work() const { return !released_.empty() || !ended_.empty(); }
  // Hands each released step to `submit` (with its route back here) and
  // each ended flow's result to `answer`. When `serving` is false a
  // released step is not run: it ends skipped (shutting_down).
  using Submit = std::function<void(TaskMessage step, ReplyRoute route)>;
  using Answer = std::function<void(const TaskResult& result, const ReplyRoute& route, uint64_t key)>;
  void Pump(const Submit& submit, const Answer& answer, bool serving);

  bool has(const std::string& flow_id) const { return flows_.count(flow_id) > 0; }
  // Cancels a flow: steps not yet released end cancelled now; returns the
  // ids of its submitted steps that have not ended, for the caller to
  // cancel (their answers follow). Empty when no such flow runs here.
  std::vector<std::string> Cancel(const std::string& flow_id);
  size_t size() const { return flows_.size(); }

 private:
  struct Step {
    FlowStep spec;
    std::vector<size_t> dependents;  // steps that name this one in `after`
    size_t waiting_for = 0;          // `after` steps not yet ended ok
    enum class State { kWaiting, kSubmitted, kEnded } state = State::kWaiting;
    bool ok = false;
    std::string result;  // the step's result map, encoded (a skipped step's made here)
    std::string output;  // its output map, encoded, when ok
  };
  struct Flow {
    std::string id;
    ReplyRoute route;
    uint64_t key = 0;
    std::vector<Step> steps;
    size_t ended = 0;
    std::string first_failure;  // "step 'probe' ended error: bad_input: ..."
    bool cancelled = false;
    double started_at = 0;  // Unix seconds
    Clock::TimePoint accepted;
  };

  // Records step `index` of `flow` as ended; releases or skips what follows.
  void EndStep(Flow& flow, size_t index, bool ok);
  // Ends every step after `index` that waits on it, transitively, as skipped.
  void SkipDependents(Flow& flow, size_t index);
  void Skip(Flow& flow, size_t index, const std::string& code, const std::string& message);
  // The released step's task, with `upstream` in its input.
  TaskMessage Released(Flow& flow, size_t index);
  TaskResult FlowResult(const Flow& flow) const;

  const Clock& clock_;
  std::unordered_map<std::string, Flow> flows_;
  std::deque<std::pair<std::string, size_t>> released_;  // (flow id, step)
  std::vector<std::string> ended_;                        // flows whose every step ended
};

}  // namespace umi
