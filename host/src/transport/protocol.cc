#include "transport/protocol.h"

#include <sys/random.h>

#include <msgpack.hpp>
#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack
#include <xxhash.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <span>
#include <stdexcept>

#include "common/text.h"

namespace umi {
namespace {

constexpr std::string_view kEmptyMap("\x80", 1);

// A msgpack output stream that appends to a string: the bytes are packed
// where they are returned, with no 8 KiB sbuffer to allocate and copy from.
struct StringStream {
  std::string& out;
  void write(const char* data, size_t size) { out.append(data, size); }
};

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

// Thrown inside the decoder only; becomes a BadMessage.
struct Invalid {
  std::string message;
};

std::string RangeText(std::string_view key, int64_t min_value, int64_t max_value) {
  if (max_value == INT64_MAX) return "'" + std::string(key) + "' must be >= " + std::to_string(min_value);
  return "'" + std::string(key) + "' must be " + std::to_string(min_value) + ".." + std::to_string(max_value);
}

int64_t ReadInteger(const msgpack::object& value, std::string_view key, int64_t min_value,
                    int64_t max_value = INT64_MAX) {
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

Message Decode(const msgpack::object& root) {
  if (root.type != msgpack::type::MAP) {
    return BadMessage{std::nullopt, "", Status(ErrorCode::kBadRequest, "a message must be a msgpack map")};
  }
  const msgpack::object* fields[7] = {};
  enum { kV, kId, kPlugin, kInput, kPriority, kTimeout, kResources };
  const msgpack::object* op = nullptr;
  for (const auto& kv : Entries(root)) {
    if (kv.key.type != msgpack::type::STR) continue;
    const std::string_view key = AsString(kv.key);
    if (key == "v") fields[kV] = &kv.val;
    else if (key == "id") fields[kId] = &kv.val;
    else if (key == "plugin") fields[kPlugin] = &kv.val;
    else if (key == "input") fields[kInput] = &kv.val;
    else if (key == "priority") fields[kPriority] = &kv.val;
    else if (key == "timeout_ms") fields[kTimeout] = &kv.val;
    else if (key == "resources") fields[kResources] = &kv.val;
    else if (key == "op") op = &kv.val;
  }

  BadMessage bad{std::nullopt, "", Status(ErrorCode::kBadRequest, "")};
  ErrorCode bad_code = ErrorCode::kBadRequest;
  std::string id_problem;
  if (const msgpack::object* id = fields[kId]) {
    if (id->type != msgpack::type::STR) {
      id_problem = "'id' must be a string";
    } else if (id->via.str.size == 0 || id->via.str.size > kMaxIdBytes) {
      id_problem = "'id' must be 1.." + std::to_string(kMaxIdBytes) + " bytes, got " +
                   std::to_string(id->via.str.size);
    } else if (!IsValidUtf8(AsString(*id))) {
      id_problem = "'id' is not valid UTF-8";
    } else {
      bad.id = std::string(AsString(*id));
    }
  }
  std::string plugin_problem;
  if (const msgpack::object* plugin = fields[kPlugin]; plugin && plugin->type == msgpack::type::STR) {
    if (plugin->via.str.size > kMaxPluginNameBytes) {
      plugin_problem = "'plugin' must be at most " + std::to_string(kMaxPluginNameBytes) + " bytes";
    } else if (!IsValidUtf8(AsString(*plugin))) {
      plugin_problem = "'plugin' is not valid UTF-8";
    } else {
      bad.plugin = std::string(AsString(*plugin));
    }
  }

  try {
    if (const msgpack::object* v = fields[kV]) {
      const int64_t version = ReadInteger(*v, "v", INT64_MIN);
      if (version != kProtocolVersion) {
        bad_code = ErrorCode::kUnsupportedVersion;
        throw Invalid{"protocol version " + std::to_string(version) + " is not supported (this host speaks " +
                      std::to_string(kProtocolVersion) + ")"};
      }
    }
    if (op) {
      ControlRequest request{ReadText(*op, "op"), bad.id.value_or("")};
      if (fields[kId] && fields[kId]->type == msgpack::type::STR && !IsValidUtf8(AsString(*fields[kId]))) {
        throw Invalid{"'id' is not valid UTF-8"};
      }
      return request;
    }
    if (!id_problem.empty()) throw Invalid{id_problem};
    if (!bad.id) throw Invalid{"missing 'id'"};
    const msgpack::object* plugin = fields[kPlugin];
    if (!plugin) throw Invalid{"missing 'plugin'"};
    if (plugin->type != msgpack::type::STR || plugin->via.str.size == 0) {
      throw Invalid{"'plugin' must be a non-empty string"};
    }
    if (!plugin_problem.empty()) throw Invalid{plugin_problem};

    TaskMessage task;
    task.id = *bad.id;
    task.plugin = bad.plugin;
    if (const msgpack::object* input = fields[kInput]) {
      if (input->type != msgpack::type::MAP) throw Invalid{"'input' must be a map"};
      task.input_msgpack = input->via.map.size == 0 ? std::string(kEmptyMap) : Pack(*input);
    } else {
      task.input_msgpack = std::string(kEmptyMap);
    }
    if (fields[kPriority]) task.priority = ReadInteger(*fields[kPriority], "priority", INT64_MIN);
    if (fields[kTimeout]) task.timeout_ms = ReadInteger(*fields[kTimeout], "timeout_ms", 0, kMaxMs);
    if (fields[kResources]) task.resources = ReadResources(*fields[kResources]);
    return task;
  } catch (const Invalid& invalid) {
    bad.status = Status(bad_code, invalid.message);
    return bad;
  } catch (const msgpack::type_error&) {
    bad.status = Status(bad_code, "a field has the wrong type");
    return bad;
  }
}

// The top-level "id" of a map too large to decode, found without building
// it (a SAX walk: values are pointers into the bytes, nothing is copied), so
// a refusal still names its task.
std::optional<std::string> FindId(std::string_view bytes) {
  struct IdFinder : msgpack::null_visitor {
    int depth = 0;
    bool top_key = false, id_next = false;
    std::optional<std::string> id;
    bool visit_str(const char* v, uint32_t size) {
      if (top_key && depth == 1) id_next = std::string_view(v, size) == "id";
      else if (id_next && depth == 1 && !id) id = std::string(v, size);
      return true;
    }
    bool start_map(uint32_t) { ++depth; return true; }
    bool end_map() { --depth; return true; }
    bool start_array(uint32_t) { ++depth; return true; }
    bool end_array() { --depth; return true; }
    bool start_map_key() { top_key = depth == 1; return true; }
    bool end_map_key() { top_key = false; return true; }
    bool end_map_value() { if (depth == 1) id_next = false; return true; }
    void parse_error(size_t, size_t) {}
    void insufficient_bytes(size_t, size_t) {}
  } finder;
  size_t offset = 0;
  try {
    (void)msgpack::parse(bytes.data(), bytes.size(), offset, finder);
  } catch (const std::exception&) {
  }
  return finder.id;
}

}  // namespace

Message DecodeMessage(std::string_view bytes) {
  // Bounds keep a hostile message from costing more than its own size.
  const msgpack::unpack_limit limit(/*array=*/1 << 20, /*map=*/1 << 20, /*str=*/64 << 20,
                                    /*bin=*/64 << 20, /*ext=*/64 << 20, /*depth=*/64);
  // One zone per thread, cleared after each message: it keeps its first
  // chunk, so a message of ordinary size allocates nothing here.
  thread_local msgpack::zone zone;
  struct ClearAfter {
    msgpack::zone& zone;
    ~ClearAfter() { zone.clear(); }
  } clear_after{zone};
  try {
    size_t offset = 0;
    const msgpack::object root = msgpack::unpack(zone, bytes.data(), bytes.size(), offset, nullptr, nullptr, limit);
    if (root.type != msgpack::type::MAP) {
      // A few bytes all printable: someone sent a line of text (a one-byte
      // integer is printable too, so it takes a few).
      const bool text = bytes.size() >= 4 && std::all_of(bytes.begin(), bytes.begin() + std::min<size_t>(bytes.size(), 64),
                                                      [](char c) { return std::isprint(static_cast<unsigned char>(c)) ||
                                                                          std::isspace(static_cast<unsigned char>(c)); });
      return BadMessage{std::nullopt, "", Status(ErrorCode::kBadRequest,
                                                 std::string("a message must be a msgpack map") +
                                                     (text ? "; this one is plain text" : ""))};
    }
    if (offset != bytes.size()) {
      return BadMessage{std::nullopt, "", Status(ErrorCode::kBadRequest,
                        "trailing bytes after the msgpack map (" +
                            std::to_string(bytes.size() - offset) + ")")};
    }
    return Decode(root);
  } catch (const msgpack::insufficient_bytes&) {
    return BadMessage{std::nullopt, "", Status(ErrorCode::kBadRequest, "truncated msgpack")};
  } catch (const msgpack::size_overflow& e) {
    return BadMessage{FindId(bytes), "",
                      Status(ErrorCode::kBadRequest,
                             std::string("a value is over the limits (strings and binaries 64 MiB, arrays and maps "
                                         "1,048,576 entries, nesting 64 levels): ") + e.what())};
  } catch (const std::exception& e) {
    return BadMessage{std::nullopt, "", Status(ErrorCode::kBadRequest, std::string("not msgpack: ") + e.what())};
  }
}

TaskFingerprint Fingerprint(const TaskMessage& task) {
  // The secret is drawn once per process: a hash with a known key (std::hash
  // has a fixed seed) lets anyone make a second input with a task's
  // fingerprint and have the real task answered with the forgery's result.
  static const std::array<unsigned char, 192> secret = [] {
    std::array<unsigned char, 192> bytes{};
    for (size_t got = 0; got < bytes.size();) {
      const ssize_t n = getrandom(bytes.data() + got, bytes.size() - got, 0);
      if (n < 0 && errno != EINTR) throw std::runtime_error(std::string("getrandom: ") + std::strerror(errno));
      if (n > 0) got += static_cast<size_t>(n);
    }
    return bytes;
  }();
  XXH3_state_t state;
  XXH3_128bits_reset_withSecret(&state, secret.data(), secret.size());
  // Each piece after its length, so no two splits of the bytes hash alike;
  // piece by piece, so the input is not copied on the hot path.
  auto add = [&state](std::string_view piece) {
    const uint64_t size = piece.size();
    XXH3_128bits_update(&state, &size, sizeof(size));
    XXH3_128bits_update(&state, piece.data(), piece.size());
  };
  add(task.plugin);
  add(task.input_msgpack);
  if (const auto& r = task.resources) {
    // Each field tagged and fixed-width, so no two overrides share a key.
    std::string fields;
    auto field = [&fields](char tag, const auto& value) {
      if (!value) return;
      fields += tag;
      fields.append(reinterpret_cast<const char*>(&*value), sizeof(*value));
    };
    field('c', r->cpu_cores);
    field('t', r->cpu_threads);
    field('g', r->gpu_count);
    field('m', r->memory_mb);
    field('x', r->exclusive_gpu);
    add(fields);
  }
  const XXH128_hash_t hash = XXH3_128bits_digest(&state);
  return TaskFingerprint{hash.low64, hash.high64};
}

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
  const uint32_t fields = 7 + (result.id ? 1 : 0) + (result.started_at ? 1 : 0) +
                          (result.finished_at ? 1 : 0) + (result.allocation ? 1 : 0);
  packer.pack_map(fields);
  packer.pack("v").pack(kProtocolVersion);
  if (result.id) packer.pack("id").pack(*result.id);
  packer.pack("plugin").pack(result.plugin);
  packer.pack("status").pack(ToString(result.status));
  if (ok) {
    packer.pack("output");
    if (result.output_msgpack.empty()) {
      packer.pack_map(0);
    } else {
      buffer.write(result.output_msgpack.data(), result.output_msgpack.size());
    }
  } else {
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

}  // namespace umi

namespace umi {
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

std::string EncodeTaskEvent(std::string_view id, std::string_view plugin) {
  return Packed([&](auto& p) {
    p.pack_map(3);
    p.pack("v").pack(kProtocolVersion);
    p.pack("id").pack(id);
    p.pack("plugin").pack(plugin);
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
  packer.pack(key).pack(value);
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
