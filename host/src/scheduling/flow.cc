#include "scheduling/flow.h"

#include <algorithm>
#include <unordered_map>

namespace umi {
namespace {

// Depth-first search for a cycle; returns it as "a -> b -> a", or "".
std::string FindCycle(const FlowMessage& flow, const std::unordered_map<std::string, size_t>& index) {
  enum class Mark { kNew, kOnPath, kDone };
  std::vector<Mark> marks(flow.steps.size(), Mark::kNew);
  std::vector<size_t> path;
  // Iterative, so a long chain cannot overflow the stack: (step, next `after` to look at).
  std::vector<std::pair<size_t, size_t>> stack;
  for (size_t start = 0; start < flow.steps.size(); ++start) {
    if (marks[start] != Mark::kNew) continue;
    stack.push_back({start, 0});
    marks[start] = Mark::kOnPath;
    path.push_back(start);
    while (!stack.empty()) {
      auto& [step, next] = stack.back();
      const std::vector<std::string>& after = flow.steps[step].after;
      if (next == after.size()) {
        marks[step] = Mark::kDone;
        path.pop_back();
        stack.pop_back();
        continue;
      }
      const size_t before = index.at(after[next++]);
      if (marks[before] == Mark::kOnPath) {
        std::string cycle;
        for (auto at = std::find(path.begin(), path.end(), before); at != path.end(); ++at) {
          cycle += flow.steps[*at].name + " -> ";
        }
        return cycle + flow.steps[before].name;
      }
      if (marks[before] == Mark::kNew) {
        marks[before] = Mark::kOnPath;
        path.push_back(before);
        stack.push_back({before, 0});
      }
    }
  }
  return "";
}

}  // namespace

Status CheckFlowGraph(const FlowMessage& flow) {
  std::unordered_map<std::string, size_t> index;
  for (size_t i = 0; i < flow.steps.size(); ++i) index.emplace(flow.steps[i].name, i);
  for (const FlowStep& step : flow.steps) {
    for (const std::string& before : step.after) {
      if (before == step.name) {
        return Status(ErrorCode::kBadRequest, "flow step '" + step.name + "' names itself in 'after'");
      }
      if (!index.count(before)) {
        return Status(ErrorCode::kBadRequest,
                      "flow step '" + step.name + "' comes after '" + before + "', which is not a step of the flow");
      }
    }
  }
  // The cycle is found walking `after` edges, so it reads backwards; say it forwards.
  if (std::string cycle = FindCycle(flow, index); !cycle.empty()) {
    return Status(ErrorCode::kBadRequest, "flow steps form a cycle (each waits for the next): " + cycle);
  }
  return {};
}

}  // namespace umi
