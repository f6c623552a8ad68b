#include "transport/redis_flows.h"

#include <msgpack.hpp>

#include <chrono>
#include <unordered_map>

#include <umi/redis_streams.hpp>

#include "transport/flow_results.h"
#include "transport/protocol.h"

namespace umi::redis_flows {
namespace {

struct StringStream {
  std::string& out;
  void write(const char* data, size_t size) { out.append(data, size); }
};

std::string MapHeader(size_t pairs) {
  std::string bytes;
  StringStream stream{bytes};
  msgpack::packer<StringStream>(stream).pack_map(static_cast<uint32_t>(pairs));
  return bytes;
}

std::string Joined(const std::vector<size_t>& indices) {
  std::string text;
  for (const size_t index : indices) {
    if (!text.empty()) text += ',';
    text += std::to_string(index);
  }
  return text;
}

// Step `step`'s task as its stream entry holds it: the step's own fields
// (all but `after`) with v, id and step_of.
std::string StepTask(const FlowMessage& flow, const FlowStep& step, const msgpack::object& fields) {
  std::string bytes;
  StringStream stream{bytes};
  msgpack::packer<StringStream> packer(stream);
  uint32_t own = 0;
  for (uint32_t i = 0; i < fields.via.map.size; ++i) {
    const msgpack::object& key = fields.via.map.ptr[i].key;
    if (!(key.type == msgpack::type::STR && std::string_view(key.via.str.ptr, key.via.str.size) == "after")) ++own;
  }
  packer.pack_map(3 + own);
  packer.pack("v").pack(kProtocolVersion);
  packer.pack("id").pack(step.task.id);
  packer.pack("step_of").pack(flow.id);
  for (uint32_t i = 0; i < fields.via.map.size; ++i) {
    const msgpack::object_kv& kv = fields.via.map.ptr[i];
    if (kv.key.type == msgpack::type::STR && std::string_view(kv.key.via.str.ptr, kv.key.via.str.size) == "after") {
      continue;
    }
    packer.pack(kv.key).pack(kv.val);
  }
  return bytes;
}

}  // namespace

std::string FlowKey(std::string_view flow_id) { return "umi:flow:" + std::string(flow_id); }

std::vector<std::string> OpenArgs(const FlowMessage& flow, const std::string& reply_to,
                                  std::optional<TaskFingerprint> fingerprint) {
  const msgpack::object_handle handle = msgpack::unpack(flow.packed.data(), flow.packed.size());
  std::unordered_map<std::string_view, const msgpack::object*> fields_of;
  const msgpack::object& steps = handle.get();
  for (uint32_t i = 0; i < steps.via.map.size; ++i) {
    const msgpack::object_kv& kv = steps.via.map.ptr[i];
    fields_of.emplace(std::string_view(kv.key.via.str.ptr, kv.key.via.str.size), &kv.val);
  }
  std::unordered_map<std::string_view, size_t> index_of;
  for (size_t i = 0; i < flow.steps.size(); ++i) index_of.emplace(flow.steps[i].name, i);
  std::vector<std::vector<size_t>> dependents(flow.steps.size());
  for (size_t i = 0; i < flow.steps.size(); ++i) {
    for (const std::string& before : flow.steps[i].after) dependents[index_of.at(before)].push_back(i);
  }

  std::vector<std::string> fields = {"reply_to", reply_to, "n", std::to_string(flow.steps.size()), "left",
                                     std::to_string(flow.steps.size())};
  // The flow's result is put together in Lua from these (kEndStep).
  std::string head;
  {
    StringStream stream{head};
    msgpack::packer<StringStream>(stream).pack("v").pack(kProtocolVersion).pack("id").pack(flow.id).pack("plugin").pack(
        "flow");
  }
  std::string steps_header;
  {
    StringStream stream{steps_header};
    msgpack::packer<StringStream>(stream).pack_map(1).pack("steps").pack_map(static_cast<uint32_t>(flow.steps.size()));
  }
  fields.insert(fields.end(), {"head", std::move(head), "sh", std::move(steps_header)});
  if (fingerprint) fields.insert(fields.end(), {"fp", FingerprintField(*fingerprint)});
  std::vector<std::string> roots;
  for (size_t i = 0; i < flow.steps.size(); ++i) {
    const FlowStep& step = flow.steps[i];
    const std::string at = std::to_string(i);
    std::vector<size_t> after;
    std::string waits_for;
    for (const std::string& before : step.after) {
      after.push_back(index_of.at(before));
      waits_for += (waits_for.empty() ? "" : ", ") + before;
    }
    std::string task = StepTask(flow, step, *fields_of.at(step.name));
    const std::string stream = RedisTaskStream(step.task.plugin, step.task.priority);
    if (after.empty()) roots.insert(roots.end(), {stream, task});
    const std::vector<std::string> step_fields = {
        "i:" + step.name, at,
        "m:" + at,        std::move(task),
        "q:" + at,        stream,
        "a:" + at,        Joined(after),
        "n:" + at,        Joined(dependents[i]),
        "w:" + at,        std::to_string(after.size()),
        "k:" + at,        PackedString(step.name),
        "uh:" + at,       MapHeader(after.size()),
        "x:" + at,        SkippedStepResult(step.task.id, step.task.plugin, flow.id, "upstream_failed",
                                            "a step it waits for (" + waits_for + ") did not end ok"),
        "c:" + at,        SkippedStepResult(step.task.id, step.task.plugin, flow.id, "cancelled",
                                            "the flow was cancelled before the step ran"),
    };
    fields.insert(fields.end(), step_fields.begin(), step_fields.end());
  }
  std::vector<std::string> args = {std::to_string(fields.size() / 2)};
  args.reserve(1 + fields.size() + roots.size());
  std::move(fields.begin(), fields.end(), std::back_inserter(args));
  std::move(roots.begin(), roots.end(), std::back_inserter(args));
  return args;
}

std::vector<std::string> EndStepArgs(std::string_view flow_id, std::string_view step_id, std::string_view result) {
  std::string_view name = step_id;
  if (name.size() > flow_id.size() && name.substr(0, flow_id.size()) == flow_id && name[flow_id.size()] == '/') {
    name.remove_prefix(flow_id.size() + 1);
  }
  StepOutcome outcome = ReadStepOutcome(name, result);
  return {std::string(name), std::string(result), std::move(outcome.output), outcome.ok ? "1" : "0",
          std::move(outcome.failure)};
}

std::string WithUpstream(std::string_view task, std::string_view upstream) {
  const msgpack::object_handle handle = msgpack::unpack(task.data(), task.size());
  const msgpack::object& fields = handle.get();
  if (fields.type != msgpack::type::MAP) return std::string(task);  // answered bad_request when decoded
  bool has_input = false;
  for (uint32_t i = 0; i < fields.via.map.size; ++i) {
    const msgpack::object& key = fields.via.map.ptr[i].key;
    has_input |= key.type == msgpack::type::STR && std::string_view(key.via.str.ptr, key.via.str.size) == "input";
  }
  std::string bytes;
  StringStream stream{bytes};
  msgpack::packer<StringStream> packer(stream);
  packer.pack_map(fields.via.map.size + (has_input ? 0 : 1));
  for (uint32_t i = 0; i < fields.via.map.size; ++i) {
    const msgpack::object_kv& kv = fields.via.map.ptr[i];
    packer.pack(kv.key);
    if (kv.key.type == msgpack::type::STR && std::string_view(kv.key.via.str.ptr, kv.key.via.str.size) == "input" &&
        kv.val.type == msgpack::type::MAP) {
      std::string input;
      StringStream input_stream{input};
      msgpack::pack(input_stream, kv.val);
      bytes += WithPackedField(std::move(input), "upstream", upstream);
    } else {
      packer.pack(kv.val);
    }
  }
  if (!has_input) {
    packer.pack("input");
    bytes += WithPackedField(std::string("\x80", 1), "upstream", upstream);
  }
  return bytes;
}

}  // namespace umi::redis_flows
