// Test-side protocol helpers: build task messages, read results.
#pragma once

#include <msgpack.hpp>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace umi::testing {

// A task as a msgpack map. `input` entries are integers (all the diag
// plugins need); `extra` holds raw top-level fields already packed.
struct TaskSpec {
  std::string id = {};
  std::string plugin = {};
  std::map<std::string, int64_t> input = {};
  std::map<std::string, std::string> string_input = {};
  std::optional<int64_t> priority = {};
  std::optional<int64_t> timeout_ms = {};
  std::map<std::string, double> resources = {};
  std::string reply_to = {};  // Redis Streams: the result's stream; empty: not sent
  // retry: {attempts, backoff_ms, max_backoff_ms} from `retry`, `on` from
  // `retry_on`; not sent when both are empty.
  std::map<std::string, int64_t> retry = {};
  std::vector<std::string> retry_on = {};
};

std::string PackTask(const TaskSpec& task);
std::string PackControl(const std::string& op, const std::string& id = "");

// A flow step (docs/flows.md): its input is `input` and `numbers` together.
struct FlowStepSpec {
  std::string name;
  std::map<std::string, std::string> input = {};
  std::vector<std::string> after = {};
  std::string plugin = "faulty";
  std::map<std::string, int64_t> numbers = {};
};
std::string PackFlow(const std::string& id, const std::vector<FlowStepSpec>& steps);

struct Result {
  std::optional<std::string> id;
  std::string plugin;
  std::string status;
  std::string error_code;
  std::string error_message;
  std::string host;
  double queued_ms = -1;
  double run_ms = -1;
  std::optional<double> started_at;
  std::optional<double> finished_at;
  std::optional<int64_t> attempts;
  std::string flow;  // a flow step's result or event: its flow
  std::optional<int64_t> cpu_threads;
  std::optional<double> cpu_cores;
  std::vector<int> gpu_ids;
  bool has_allocation = false;
  std::shared_ptr<msgpack::object_handle> message;  // keeps `output` alive
  const msgpack::object* output = nullptr;

  // An output field, or nullptr.
  const msgpack::object* Output(const std::string& key) const;
};

Result ParseResult(const std::string& bytes);

// Overlap of two [started_at, finished_at) intervals.
bool Overlap(const Result& a, const Result& b);

// output.steps of a flow's result, by step name.
std::map<std::string, Result> FlowSteps(const Result& flow);
// A step of the faulty plugin in echo mode: its input.upstream.<from>.input.<key>.
std::string EchoedUpstream(const Result& step, const std::string& from, const std::string& key);

}  // namespace umi::testing
