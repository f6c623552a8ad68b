#include "wire.h"

#include <sstream>
#include <stdexcept>

namespace umi::testing {
namespace {

std::string Str(const msgpack::object& o) { return std::string(o.via.str.ptr, o.via.str.size); }

const msgpack::object* Find(const msgpack::object& map, const std::string& key) {
  if (map.type != msgpack::type::MAP) return nullptr;
  for (uint32_t i = 0; i < map.via.map.size; ++i) {
    const auto& kv = map.via.map.ptr[i];
    if (kv.key.type == msgpack::type::STR && Str(kv.key) == key) return &kv.val;
  }
  return nullptr;
}

}  // namespace

std::string PackTask(const TaskSpec& task) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  packer.pack_map(4 + (task.priority ? 1 : 0) + (task.timeout_ms ? 1 : 0) +
                  (task.resources.empty() ? 0 : 1) + (task.reply_to.empty() ? 0 : 1) +
                  (task.retry.empty() && task.retry_on.empty() ? 0 : 1));
  packer.pack("v").pack(1);
  packer.pack("id").pack(task.id);
  packer.pack("plugin").pack(task.plugin);
  packer.pack("input").pack_map(static_cast<uint32_t>(task.input.size() + task.string_input.size()));
  for (const auto& [key, value] : task.input) packer.pack(key).pack(value);
  for (const auto& [key, value] : task.string_input) packer.pack(key).pack(value);
  if (task.priority) packer.pack("priority").pack(*task.priority);
  if (task.timeout_ms) packer.pack("timeout_ms").pack(*task.timeout_ms);
  if (!task.reply_to.empty()) packer.pack("reply_to").pack(task.reply_to);
  if (!task.retry.empty() || !task.retry_on.empty()) {
    packer.pack("retry").pack_map(static_cast<uint32_t>(task.retry.size() + (task.retry_on.empty() ? 0 : 1)));
    for (const auto& [key, value] : task.retry) packer.pack(key).pack(value);
    if (!task.retry_on.empty()) packer.pack("on").pack(task.retry_on);
  }
  if (!task.resources.empty()) {
    packer.pack("resources").pack_map(static_cast<uint32_t>(task.resources.size()));
    for (const auto& [key, value] : task.resources) {
      packer.pack(key);
      if (key == "cpu_cores" || key == "gpu_count") {
        packer.pack(value);
      } else if (key == "exclusive_gpu") {
        packer.pack(value != 0);
      } else {
        packer.pack(static_cast<int64_t>(value));
      }
    }
  }
  return std::string(buffer.data(), buffer.size());
}

std::string PackFlow(const std::string& id, const std::vector<FlowStepSpec>& steps) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  packer.pack_map(3);
  packer.pack("v").pack(1);
  packer.pack("id").pack(id);
  packer.pack("flow").pack_map(static_cast<uint32_t>(steps.size()));
  for (const FlowStepSpec& step : steps) {
    packer.pack(step.name).pack_map(step.after.empty() ? 2 : 3);
    packer.pack("plugin").pack(step.plugin);
    packer.pack("input").pack_map(static_cast<uint32_t>(step.input.size() + step.numbers.size()));
    for (const auto& [key, value] : step.input) packer.pack(key).pack(value);
    for (const auto& [key, value] : step.numbers) packer.pack(key).pack(value);
    if (!step.after.empty()) packer.pack("after").pack(step.after);
  }
  return std::string(buffer.data(), buffer.size());
}

std::string PackControl(const std::string& op, const std::string& id) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  packer.pack_map(id.empty() ? 1 : 2);
  packer.pack("op").pack(op);
  if (!id.empty()) packer.pack("id").pack(id);
  return std::string(buffer.data(), buffer.size());
}

const msgpack::object* Result::Output(const std::string& key) const {
  return output ? Find(*output, key) : nullptr;
}

Result ParseResult(const std::string& bytes) {
  Result result;
  result.message = std::make_shared<msgpack::object_handle>(msgpack::unpack(bytes.data(), bytes.size()));
  const msgpack::object& root = result.message->get();
  if (root.type != msgpack::type::MAP) throw std::runtime_error("result is not a map");
  if (auto* id = Find(root, "id")) result.id = Str(*id);
  if (auto* plugin = Find(root, "plugin")) result.plugin = Str(*plugin);
  if (auto* status = Find(root, "status")) result.status = Str(*status);
  if (auto* host = Find(root, "host")) result.host = Str(*host);
  if (auto* error = Find(root, "error")) {
    if (auto* code = Find(*error, "code")) result.error_code = Str(*code);
    if (auto* message = Find(*error, "message")) result.error_message = Str(*message);
  }
  if (auto* q = Find(root, "queued_ms")) result.queued_ms = q->as<double>();
  if (auto* r = Find(root, "run_ms")) result.run_ms = r->as<double>();
  if (auto* s = Find(root, "started_at")) result.started_at = s->as<double>();
  if (auto* f = Find(root, "finished_at")) result.finished_at = f->as<double>();
  if (auto* a = Find(root, "attempts")) result.attempts = a->as<int64_t>();
  if (auto* f = Find(root, "flow")) result.flow = Str(*f);
  if (auto* allocation = Find(root, "allocation")) {
    result.has_allocation = true;
    if (auto* t = Find(*allocation, "cpu_threads")) result.cpu_threads = t->as<int64_t>();
    if (auto* c = Find(*allocation, "cpu_cores")) result.cpu_cores = c->as<double>();
    if (auto* g = Find(*allocation, "gpu_ids")) result.gpu_ids = g->as<std::vector<int>>();
  }
  result.output = Find(root, "output");
  return result;
}

bool Overlap(const Result& a, const Result& b) {
  return *a.started_at < *b.finished_at && *b.started_at < *a.finished_at;
}

std::map<std::string, Result> FlowSteps(const Result& flow) {
  std::map<std::string, Result> steps;
  const msgpack::object* all = flow.Output("steps");
  if (!all) return steps;
  for (const auto& [name, result] : all->as<std::map<std::string, msgpack::object>>()) {
    std::stringstream packed;
    msgpack::pack(packed, result);
    steps[name] = ParseResult(packed.str());
  }
  return steps;
}

std::string EchoedUpstream(const Result& step, const std::string& from, const std::string& key) {
  const auto input = step.Output("input")->as<std::map<std::string, msgpack::object>>();
  const auto upstream = input.at("upstream").as<std::map<std::string, msgpack::object>>();
  const auto output = upstream.at(from).as<std::map<std::string, msgpack::object>>();
  return output.at("input").as<std::map<std::string, msgpack::object>>().at(key).as<std::string>();
}

}  // namespace umi::testing
