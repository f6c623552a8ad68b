// The codec's encoding half: results, events and control replies, packed
// where they are returned (protocol.h). Decoding is in protocol.cc.
#include "transport/protocol.h"

#include <msgpack.hpp>

#include <algorithm>
#include <cmath>

#include "common/text.h"

namespace umi {
namespace {

// A msgpack output stream that appends to a string: the bytes are packed
// where they are returned, with no 8 KiB sbuffer to allocate and copy from.
struct StringStream {
  std::string& out;
  void write(const char* data, size_t size) { out.append(data, size); }
};

}  // namespace

std::string_view WireCode(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk: return "ok";
    case ErrorCode::kBadRequest: return "bad_request";
    case ErrorCode::kUnsupportedVersion: return "unsupported_version";
    case ErrorCode::kUnknownPlugin: return "unknown_plugin";
    case ErrorCode::kInfeasible: return "infeasible";
    case ErrorCode::kQueueFull: return "queue_full";
    case ErrorCode::kShuttingDown: return "shutting_down";
    case ErrorCode::kDuplicateId: return "duplicate_id";
    case ErrorCode::kIdConflict: return "id_conflict";
    case ErrorCode::kCancelled: return "cancelled";
    case ErrorCode::kTimeout: return "timeout";
    case ErrorCode::kCrashed: return "crashed";
    case ErrorCode::kMaxDeliveries: return "max_deliveries";
    case ErrorCode::kPluginError: return "plugin_error";
    case ErrorCode::kBadOutput: return "plugin_error";  // the plugin's fault: the same word as before
    case ErrorCode::kNotFound: return "not_found";
    case ErrorCode::kUnknownOp: return "unknown_op";
    case ErrorCode::kInvalidConfig: return "invalid_config";
    case ErrorCode::kIoError: return "io_error";
    case ErrorCode::kUnavailable: return "unavailable";
    case ErrorCode::kInternal: return "internal";
  }
  return "internal";
}

TaskResult EndedResult(std::optional<std::string> id, std::string plugin, TaskStatus status, const Status& why) {
  TaskResult result;
  result.id = std::move(id);
  result.plugin = std::move(plugin);
  result.status = status;
  result.error_code = std::string(WireCode(why.code()));
  result.error_message = why.message();
  return result;
}

TaskResult RejectedResult(std::optional<std::string> id, std::string plugin, const Status& why) {
  return EndedResult(std::move(id), std::move(plugin), TaskStatus::kRejected, why);
}

std::string EncodeResult(const TaskResult& result, std::string_view host) {
  std::string encoded;
  EncodeResultInto(result, host, encoded);
  return encoded;
}

void EncodeResultInto(const TaskResult& result, std::string_view host, std::string& encoded) {
  encoded.clear();
  // Enough for the fixed fields, so a small result is packed without growing.
  encoded.reserve(192 + result.output_msgpack.size() + result.error_message.size() +
                  (result.id ? result.id->size() : 0) + result.plugin.size() + host.size());
  StringStream buffer{encoded};
  msgpack::packer<StringStream> packer(buffer);
  const bool ok = result.status == TaskStatus::kOk;
  const bool output = ok || result.output_whatever_status;
  const uint32_t fields = 6 + (output ? 1 : 0) + (ok ? 0 : 1) + (result.id ? 1 : 0) + (result.started_at ? 1 : 0) +
                          (result.finished_at ? 1 : 0) + (result.allocation ? 1 : 0) + (result.attempts > 0 ? 1 : 0) +
                          (result.flow.empty() ? 0 : 1);
  packer.pack_map(fields);
  packer.pack("v").pack(kProtocolVersion);
  if (result.id) packer.pack("id").pack(*result.id);
  packer.pack("plugin").pack(result.plugin);
  packer.pack("status").pack(ToString(result.status));
  if (output) {
    packer.pack("output");
    if (result.output_msgpack.empty()) {
      packer.pack_map(0);
    } else {
      buffer.write(result.output_msgpack.data(), result.output_msgpack.size());
    }
  }
  if (!ok) {
    packer.pack("error").pack_map(result.error_detail.empty() ? 2 : 3);
    packer.pack("code").pack(result.error_code);
    // Messages quote what was sent; the result must stay valid text.
    packer.pack("message").pack(IsValidUtf8(result.error_message) ? result.error_message
                                                                   : ToValidUtf8(result.error_message));
    if (!result.error_detail.empty()) packer.pack("detail").pack(ToValidUtf8(result.error_detail));
  }
  packer.pack("host").pack(host);
  packer.pack("queued_ms").pack(result.queued_ms);
  packer.pack("run_ms").pack(result.run_ms);
  if (result.started_at) packer.pack("started_at").pack(*result.started_at);
  if (result.finished_at) packer.pack("finished_at").pack(*result.finished_at);
  if (result.attempts > 0) packer.pack("attempts").pack(result.attempts);
  if (!result.flow.empty()) packer.pack("flow").pack(result.flow);
  if (result.allocation) {
    const Allocation& a = *result.allocation;
    packer.pack("allocation").pack_map(a.cpu_ids.empty() ? 4 : 5);
    packer.pack("cpu_cores").pack(a.cpu_cores.ToDouble());
    packer.pack("cpu_threads").pack(a.cpu_threads);
    packer.pack("gpu_ids").pack(a.gpu_ids);
    packer.pack("memory_mb").pack(a.memory_mb);
    if (!a.cpu_ids.empty()) packer.pack("cpu_ids").pack(a.cpu_ids);
  }
}

namespace {

template <typename Fill>
std::string Packed(Fill fill) {
  std::string packed;
  StringStream stream{packed};
  msgpack::packer<StringStream> packer(stream);
  fill(packer);
  return packed;
}

}  // namespace

std::string EncodeTaskEvent(std::string_view id, std::string_view plugin, std::string_view flow) {
  return Packed([&](auto& p) {
    p.pack_map(flow.empty() ? 3 : 4);
    p.pack("v").pack(kProtocolVersion);
    p.pack("id").pack(id);
    p.pack("plugin").pack(plugin);
    if (!flow.empty()) p.pack("flow").pack(flow);
  });
}

std::string EncodeProgressEvent(std::string_view id, std::string_view plugin, double fraction,
                                std::string_view message) {
  return Packed([&](auto& p) {
    p.pack_map(message.empty() ? 4 : 5);
    p.pack("v").pack(kProtocolVersion);
    p.pack("id").pack(id);
    p.pack("plugin").pack(plugin);
    p.pack("progress").pack(std::isnan(fraction) ? 0.0 : std::clamp(fraction, 0.0, 1.0));
    if (!message.empty()) p.pack("message").pack(IsValidUtf8(message) ? std::string(message) : ToValidUtf8(message));
  });
}

std::string EncodeRetryEvent(std::string_view id, std::string_view plugin, int attempts, int64_t retry_in_ms,
                             std::string_view code, std::string_view message) {
  return Packed([&](auto& p) {
    p.pack_map(6);
    p.pack("v").pack(kProtocolVersion);
    p.pack("id").pack(id);
    p.pack("plugin").pack(plugin);
    p.pack("attempts").pack(attempts);
    p.pack("retry_in_ms").pack(retry_in_ms);
    p.pack("error").pack_map(2);
    p.pack("code").pack(ToValidUtf8(code));
    p.pack("message").pack(ToValidUtf8(message));
  });
}

std::string EncodeControlOk() {
  return Packed([](auto& p) {
    p.pack_map(1);
    p.pack("ok").pack(true);
  });
}

std::string EncodeControlError(const Status& why) {
  const std::string_view code = WireCode(why.code());
  const std::string& message = why.message();
  return Packed([&](auto& p) {
    p.pack_map(2);
    p.pack("ok").pack(false);
    p.pack("error").pack_map(2);
    p.pack("code").pack(code);
    p.pack("message").pack(IsValidUtf8(message) ? std::string(message) : ToValidUtf8(message));
  });
}

std::string WithStringField(std::string map, std::string_view key, std::string_view value) {
  std::string packed;
  StringStream stream{packed};
  msgpack::packer<StringStream>(stream).pack(value);
  return WithPackedField(std::move(map), key, packed);
}

std::string WithPackedField(std::string map, std::string_view key, std::string_view packed_value) {
  // The map's header says how many pairs follow: rewritten one larger.
  const auto head = static_cast<uint8_t>(map.at(0));
  size_t pairs = 0, header = 1;
  if ((head & 0xF0) == 0x80) {
    pairs = head & 0x0F;
  } else if (head == 0xDE) {
    pairs = (static_cast<uint8_t>(map.at(1)) << 8) | static_cast<uint8_t>(map.at(2));
    header = 3;
  } else if (head == 0xDF) {
    for (int i = 1; i <= 4; ++i) pairs = (pairs << 8) | static_cast<uint8_t>(map.at(static_cast<size_t>(i)));
    header = 5;
  } else {
    throw std::invalid_argument("not a msgpack map");
  }
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  packer.pack_map(static_cast<uint32_t>(pairs + 1));
  buffer.write(map.data() + header, map.size() - header);
  packer.pack(key);
  buffer.write(packed_value.data(), packed_value.size());
  return std::string(buffer.data(), buffer.size());
}

std::string EncodeHealthReply(bool draining, std::string_view host, size_t plugins) {
  return Packed([&](auto& p) {
    p.pack_map(4);
    p.pack("ok").pack(true);
    p.pack("status").pack(draining ? "draining" : "serving");
    p.pack("host").pack(host);
    p.pack("plugins").pack(plugins);
  });
}

std::string EncodeCancelReply(std::string_view state) {
  return Packed([&](auto& p) {
    p.pack_map(2);
    p.pack("ok").pack(true);
    p.pack("state").pack(state);
  });
}

std::string EncodeResultReply(std::string_view state, std::string_view stored_result) {
  std::string reply = Packed([&](auto& p) {
    p.pack_map(stored_result.empty() ? 2 : 3);
    p.pack("ok").pack(true);
    p.pack("state").pack(state);
    if (!stored_result.empty()) p.pack("result");
  });
  reply.append(stored_result);  // already a msgpack map: the value as it was sent
  return reply;
}

std::string EncodeReloadReply(const std::vector<std::string>& loaded, const std::vector<std::string>& refused,
                              const std::vector<std::string>& restart_needed, const std::vector<std::string>& applied) {
  return Packed([&](auto& p) {
    p.pack_map(5);
    p.pack("ok").pack(true);
    p.pack("loaded").pack(loaded);
    p.pack("refused").pack(refused);
    p.pack("restart_needed").pack(restart_needed);
    p.pack("applied").pack(applied);
  });
}

std::string EncodeStatsReply(nlohmann::json stats) {
  stats["ok"] = true;
  const std::vector<uint8_t> bytes = nlohmann::json::to_msgpack(stats);
  return std::string(bytes.begin(), bytes.end());
}

}  // namespace umi
