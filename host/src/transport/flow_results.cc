#include "transport/flow_results.h"

#include <msgpack.hpp>

#include <map>

#include "transport/protocol.h"

namespace umi {
namespace {

struct StringStream {
  std::string& out;
  void write(const char* data, size_t size) { out.append(data, size); }
};

// `fill(packer, bytes)`: the packer writes straight into `bytes`, so a
// value already packed can be appended between its calls.
template <typename Fill>
std::string Packed(Fill fill) {
  std::string bytes;
  StringStream stream{bytes};
  msgpack::packer<StringStream> packer(stream);
  fill(packer, bytes);
  return bytes;
}

}  // namespace

StepOutcome ReadStepOutcome(std::string_view step_name, std::string_view result) {
  StepOutcome outcome;
  std::string status, code, message;
  try {
    const msgpack::object_handle handle = msgpack::unpack(result.data(), result.size());
    const auto fields = handle.get().as<std::map<std::string, msgpack::object>>();
    status = fields.at("status").as<std::string>();
    if (const auto output = fields.find("output"); output != fields.end()) {
      outcome.output = Packed([&](auto& p, std::string&) { p.pack(output->second); });
    }
    if (const auto error = fields.find("error"); error != fields.end()) {
      const auto details = error->second.as<std::map<std::string, msgpack::object>>();
      code = details.at("code").as<std::string>();
      message = details.at("message").as<std::string>();
    }
  } catch (const std::exception& e) {  // the host's own encoding: never expected
    status = "error";
    code = "internal";
    message = std::string("unreadable step result: ") + e.what();
  }
  outcome.ok = status == "ok";
  if (outcome.ok && outcome.output.empty()) outcome.output = "\x80";  // {}
  if (!outcome.ok) {
    outcome.output.clear();
    outcome.failure = "step '" + std::string(step_name) + "' ended " + status + ": " + code + ": " + message;
  }
  return outcome;
}

std::string SkippedStepResult(std::string_view step_id, std::string_view plugin, std::string_view flow_id,
                              std::string_view code, std::string_view message) {
  return Packed([&](auto& p, std::string&) {
    p.pack_map(5);
    p.pack("id").pack(step_id);
    p.pack("plugin").pack(plugin);
    p.pack("status").pack("skipped");
    p.pack("error").pack_map(2);
    p.pack("code").pack(code);
    p.pack("message").pack(message);
    p.pack("flow").pack(flow_id);
  });
}

std::string PackedString(std::string_view name) {
  return Packed([&](auto& p, std::string&) { p.pack(name); });
}

std::string PackedMap(const std::vector<std::pair<std::string_view, std::string_view>>& pairs) {
  return Packed([&](auto& p, std::string& bytes) {
    p.pack_map(static_cast<uint32_t>(pairs.size()));
    for (const auto& [key, value] : pairs) {
      bytes += key;
      bytes += value;
    }
  });
}

std::string FlowOutput(const std::vector<std::pair<std::string_view, std::string_view>>& steps) {
  return Packed([&](auto& p, std::string& bytes) {
    p.pack_map(1);
    p.pack("steps");
    bytes += PackedMap(steps);
  });
}

TaskResult FlowResult(const FlowEnd& end) {
  TaskResult result;
  result.id = end.id;
  result.plugin = "flow";
  result.output_whatever_status = true;
  result.output_msgpack = end.output;
  if (end.cancelled) {
    result.status = TaskStatus::kCancelled;
    result.error_code = std::string(WireCode(ErrorCode::kCancelled));
    result.error_message = "the flow was cancelled by request";
  } else if (!end.first_failure.empty()) {
    result.status = TaskStatus::kError;
    result.error_code = "step_failed";
    result.error_message = end.first_failure;
  }
  result.run_ms = end.run_ms;
  result.started_at = end.started_at;
  result.finished_at = end.finished_at;
  return result;
}

}  // namespace umi
