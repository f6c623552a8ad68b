#include "transport/protocol_read.h"

#include <cmath>
#include <span>

#include "common/quantity.h"
#include "common/text.h"
#include "transport/protocol.h"

namespace umi::wire_read {
namespace {

// A msgpack output stream that appends to a string: the bytes are packed
// where they are returned, with no 8 KiB sbuffer to allocate and copy from.
struct StringStream {
  std::string& out;
  void write(const char* data, size_t size) { out.append(data, size); }
};

}  // namespace

std::string_view AsString(const msgpack::object& object) {
  return {object.via.str.ptr, object.via.str.size};
}

std::span<const msgpack::object_kv> Entries(const msgpack::object& map) {
  return {map.via.map.ptr, map.via.map.size};
}

bool IsInteger(const msgpack::object& o) {
  return o.type == msgpack::type::POSITIVE_INTEGER || o.type == msgpack::type::NEGATIVE_INTEGER;
}
bool IsNumber(const msgpack::object& o) {
  return IsInteger(o) || o.type == msgpack::type::FLOAT32 || o.type == msgpack::type::FLOAT64;
}


std::string RangeText(std::string_view key, int64_t min_value, int64_t max_value) {
  if (max_value == INT64_MAX) return "'" + std::string(key) + "' must be >= " + std::to_string(min_value);
  return "'" + std::string(key) + "' must be " + std::to_string(min_value) + ".." + std::to_string(max_value);
}

int64_t ReadInteger(const msgpack::object& value, std::string_view key, int64_t min_value, int64_t max_value) {
  if (!IsInteger(value)) throw Invalid{"'" + std::string(key) + "' must be an integer"};
  if (value.type == msgpack::type::POSITIVE_INTEGER && value.via.u64 > static_cast<uint64_t>(max_value)) {
    throw Invalid{RangeText(key, min_value, max_value) + ", got " + std::to_string(value.via.u64)};
  }
  const int64_t number = value.as<int64_t>();
  if (number < min_value || number > max_value) {
    throw Invalid{RangeText(key, min_value, max_value) + ", got " + std::to_string(number)};
  }
  return number;
}

// A finite number in [0, max_value]; a positive value too small for the
// pool's 1/10000 units is an error, not a silent zero.
double ReadAmount(const msgpack::object& value, std::string_view key, double max_value) {
  if (!IsNumber(value)) throw Invalid{"'" + std::string(key) + "' must be a number"};
  const double number = value.as<double>();
  if (!std::isfinite(number)) throw Invalid{"'" + std::string(key) + "' must be a finite number"};
  if (number < 0 || number > max_value) {
    throw Invalid{"'" + std::string(key) + "' must be 0.." + Quantity::FromDouble(max_value).ToString() + ", got " +
                  std::to_string(number)};
  }
  if (number > 0 && Quantity::FromDouble(number) == Quantity()) {
    throw Invalid{"'" + std::string(key) + "' is below the smallest unit (0.0001), got " + std::to_string(number)};
  }
  return number;
}

std::string ReadText(const msgpack::object& value, std::string_view key) {
  if (value.type != msgpack::type::STR) throw Invalid{"'" + std::string(key) + "' must be a string"};
  const std::string_view text = AsString(value);
  if (!IsValidUtf8(text)) throw Invalid{"'" + std::string(key) + "' is not valid UTF-8"};
  return std::string(text);
}

bool HasKey(const msgpack::object& map, std::string_view key) {
  for (const auto& kv : Entries(map)) {
    if (kv.key.type == msgpack::type::STR && AsString(kv.key) == key) return true;
  }
  return false;
}

RetryPolicy ReadRetry(const msgpack::object& map) {
  if (map.type != msgpack::type::MAP) throw Invalid{"'retry' must be a map"};
  RetryPolicy out;
  for (const auto& kv : Entries(map)) {
    if (kv.key.type != msgpack::type::STR) throw Invalid{"'retry' keys must be strings"};
    const std::string_view key = AsString(kv.key);
    if (key == "attempts") {
      out.attempts = static_cast<int>(ReadInteger(kv.val, "retry.attempts", 1, kMaxRetryAttempts));
    } else if (key == "backoff_ms") {
      out.backoff_ms = ReadInteger(kv.val, "retry.backoff_ms", 0, kMaxBackoffMs);
    } else if (key == "max_backoff_ms") {
      out.max_backoff_ms = ReadInteger(kv.val, "retry.max_backoff_ms", 0, kMaxBackoffMs);
    } else if (key == "on") {
      if (kv.val.type != msgpack::type::ARRAY) throw Invalid{"'retry.on' must be an array of codes"};
      out.on.clear();
      for (const msgpack::object& code : std::span(kv.val.via.array.ptr, kv.val.via.array.size)) {
        out.on.push_back(ReadText(code, "retry.on"));
      }
    } else {
      throw Invalid{"'retry." + std::string(key) + "' is not a retry setting (known: attempts, backoff_ms, "
                    "max_backoff_ms, on)"};
    }
  }
  // A backoff given without its cap raises the default cap with it.
  if (out.max_backoff_ms < out.backoff_ms && !HasKey(map, "max_backoff_ms")) out.max_backoff_ms = out.backoff_ms;
  if (const Status valid = out.Validate(); !valid.ok()) throw Invalid{valid.message()};
  return out;
}

RequirementOverride ReadResources(const msgpack::object& map) {
  if (map.type != msgpack::type::MAP) throw Invalid{"'resources' must be a map"};
  RequirementOverride out;
  for (const auto& kv : Entries(map)) {
    if (kv.key.type != msgpack::type::STR) throw Invalid{"'resources' keys must be strings"};
    const std::string_view key = AsString(kv.key);
    if (key == "cpu_cores") {
      out.cpu_cores = ReadAmount(kv.val, "resources.cpu_cores", kMaxCpus);
    } else if (key == "cpu_threads") {
      out.cpu_threads = static_cast<int>(ReadInteger(kv.val, "resources.cpu_threads", 0, kMaxCpus));
    } else if (key == "gpu_count") {
      out.gpu_count = ReadAmount(kv.val, "resources.gpu_count", kMaxGpus);
    } else if (key == "memory_mb") {
      out.memory_mb = ReadInteger(kv.val, "resources.memory_mb", 0, kMaxMemoryMb);
    } else if (key == "exclusive_gpu") {
      if (kv.val.type != msgpack::type::BOOLEAN) throw Invalid{"'resources.exclusive_gpu' must be a bool"};
      out.exclusive_gpu = kv.val.via.boolean;
    } else {
      // A requirement the host cannot account for must not be dropped silently.
      throw Invalid{"'resources." + std::string(key) +
                    "' is not a requirement (known: cpu_cores, cpu_threads, gpu_count, memory_mb, exclusive_gpu)"};
    }
  }
  ResourceRequirement probe;
  out.ApplyTo(probe);
  if (const Status valid = probe.Validate(); !valid.ok()) throw Invalid{"resources: " + valid.message()};
  return out;
}

std::string Pack(const msgpack::object& object) {
  std::string packed;
  StringStream stream{packed};
  msgpack::pack(stream, object);
  return packed;
}


Fields Gather(const msgpack::object& root) {
  Fields fields;
  for (const auto& kv : Entries(root)) {
    if (kv.key.type != msgpack::type::STR) continue;
    const std::string_view key = AsString(kv.key);
    if (key == "v") fields.v = &kv.val;
    else if (key == "id") fields.id = &kv.val;
    else if (key == "plugin") fields.plugin = &kv.val;
    else if (key == "input") fields.input = &kv.val;
    else if (key == "priority") fields.priority = &kv.val;
    else if (key == "timeout_ms") fields.timeout_ms = &kv.val;
    else if (key == "resources") fields.resources = &kv.val;
    else if (key == "retry") fields.retry = &kv.val;
    else if (key == "op") fields.op = &kv.val;
    else if (key == "flow") fields.flow = &kv.val;
    else if (key == "after") fields.after = &kv.val;
    else if (key == "step_of") fields.step_of = &kv.val;
  }
  return fields;
}


Identity ReadIdentity(const Fields& fields) {
  Identity identity;
  if (const msgpack::object* id = fields.id) {
    if (id->type != msgpack::type::STR) {
      identity.id_problem = "'id' must be a string";
    } else if (id->via.str.size == 0 || id->via.str.size > kMaxIdBytes) {
      identity.id_problem = "'id' must be 1.." + std::to_string(kMaxIdBytes) + " bytes, got " +
                            std::to_string(id->via.str.size);
    } else if (!IsValidUtf8(AsString(*id))) {
      identity.id_problem = "'id' is not valid UTF-8";
    } else {
      identity.id = std::string(AsString(*id));
    }
  }
  if (const msgpack::object* plugin = fields.plugin; plugin && plugin->type == msgpack::type::STR) {
    if (plugin->via.str.size > kMaxPluginNameBytes) {
      identity.plugin_problem = "'plugin' must be at most " + std::to_string(kMaxPluginNameBytes) + " bytes";
    } else if (!IsValidUtf8(AsString(*plugin))) {
      identity.plugin_problem = "'plugin' is not valid UTF-8";
    } else {
      identity.plugin = std::string(AsString(*plugin));
    }
  }
  return identity;
}

// A task from its fields; throws Invalid (or msgpack::type_error) when one is wrong.
TaskMessage ReadTask(const Fields& fields, const Identity& identity) {
  if (!identity.id_problem.empty()) throw Invalid{identity.id_problem};
  if (!identity.id) throw Invalid{"missing 'id'"};
  if (!fields.plugin) throw Invalid{"missing 'plugin'"};
  if (fields.plugin->type != msgpack::type::STR || fields.plugin->via.str.size == 0) {
    throw Invalid{"'plugin' must be a non-empty string"};
  }
  if (!identity.plugin_problem.empty()) throw Invalid{identity.plugin_problem};
  TaskMessage task;
  task.id = *identity.id;
  task.plugin = identity.plugin;
  if (const msgpack::object* input = fields.input) {
    if (input->type != msgpack::type::MAP) throw Invalid{"'input' must be a map"};
    task.input_msgpack = input->via.map.size == 0 ? std::string(kEmptyMap) : Pack(*input);
  } else {
    task.input_msgpack = std::string(kEmptyMap);
  }
  if (fields.priority) task.priority = ReadInteger(*fields.priority, "priority", INT64_MIN);
  if (fields.timeout_ms) task.timeout_ms = ReadInteger(*fields.timeout_ms, "timeout_ms", 0, kMaxMs);
  if (fields.resources) task.resources = ReadResources(*fields.resources);
  if (fields.retry) task.retry = ReadRetry(*fields.retry);
  if (const msgpack::object* step_of = fields.step_of) {
    if (step_of->type != msgpack::type::STR || step_of->via.str.size == 0 || step_of->via.str.size > kMaxIdBytes) {
      throw Invalid{"'step_of' must be a flow's id: a string of 1.." + std::to_string(kMaxIdBytes) + " bytes"};
    }
    task.flow = std::string(AsString(*step_of));
  }
  return task;
}

// One step: a task map without v or id, plus `after`.
FlowStep ReadFlowStep(const msgpack::object_kv& kv, const std::string& flow_id) {
  FlowStep step;
  step.name = ReadText(kv.key, "flow step name");
  const std::string where = "flow step '" + step.name + "': ";
  if (step.name.empty() || step.name.size() > kMaxStepNameBytes) {
    throw Invalid{"a flow step's name must be 1.." + std::to_string(kMaxStepNameBytes) + " bytes, got '" + step.name +
                  "'"};
  }
  if (kv.val.type != msgpack::type::MAP) throw Invalid{where + "must be a map with 'plugin'"};
  static const std::set<std::string_view> kStepKeys = {"plugin", "input", "after", "priority",
                                                       "timeout_ms", "resources", "retry"};
  for (const auto& field : Entries(kv.val)) {
    if (field.key.type != msgpack::type::STR || !kStepKeys.count(AsString(field.key))) {
      throw Invalid{where + "'" + (field.key.type == msgpack::type::STR ? std::string(AsString(field.key)) : "?") +
                    "' is not a step field (known: after, input, plugin, priority, resources, retry, timeout_ms)"};
    }
  }
  const Fields fields = Gather(kv.val);
  Identity identity = ReadIdentity(fields);
  identity.id = flow_id + "/" + step.name;
  if (identity.id->size() > kMaxIdBytes) {
    throw Invalid{where + "its id '" + *identity.id + "' is over " + std::to_string(kMaxIdBytes) + " bytes"};
  }
  try {
    step.task = ReadTask(fields, identity);
    if (fields.after) {
      if (fields.after->type != msgpack::type::ARRAY) throw Invalid{"'after' must be a list of step names"};
      for (const msgpack::object& name : std::span(fields.after->via.array.ptr, fields.after->via.array.size)) {
        step.after.push_back(ReadText(name, "after"));
      }
    }
  } catch (const Invalid& invalid) {
    throw Invalid{where + invalid.message};
  }
  if (fields.input && HasKey(*fields.input, "upstream")) {
    throw Invalid{where + "its input has 'upstream', which the flow fills with the outputs of its 'after' steps"};
  }
  step.task.flow = flow_id;
  return step;
}

FlowMessage ReadFlow(const msgpack::object& flow, const Fields& fields, const Identity& identity) {
  if (!identity.id_problem.empty()) throw Invalid{identity.id_problem};
  if (!identity.id) throw Invalid{"missing 'id' (a flow's own id)"};
  for (const auto& [key, present] : {std::pair{"plugin", fields.plugin}, {"input", fields.input},
                                     {"priority", fields.priority}, {"timeout_ms", fields.timeout_ms},
                                     {"resources", fields.resources}, {"retry", fields.retry}}) {
    if (present) throw Invalid{std::string("a flow message has no '") + key + "': each step has its own"};
  }
  if (flow.type != msgpack::type::MAP) throw Invalid{"'flow' must be a map of steps"};
  if (flow.via.map.size == 0) throw Invalid{"'flow' has no steps"};
  if (flow.via.map.size > kMaxFlowSteps) {
    throw Invalid{"'flow' has " + std::to_string(flow.via.map.size) + " steps, at most " +
                  std::to_string(kMaxFlowSteps)};
  }
  FlowMessage message;
  message.id = *identity.id;
  message.packed = Pack(flow);
  for (const auto& kv : Entries(flow)) message.steps.push_back(ReadFlowStep(kv, message.id));
  if (const Status graph = CheckFlowGraph(message); !graph.ok()) throw Invalid{graph.message()};
  return message;
}

}  // namespace umi::wire_read
