// The codec's decoding half: bytes to a task, a control request or a
// refusal with its Status (protocol.h); fingerprints. Encoding is in
// protocol_encode.cc.
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

// A message's known top-level fields (null: absent); other keys are ignored.
struct Fields {
  const msgpack::object *v = nullptr, *id = nullptr, *plugin = nullptr, *input = nullptr, *priority = nullptr,
                        *timeout_ms = nullptr, *resources = nullptr, *retry = nullptr, *op = nullptr;
};

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
  }
  return fields;
}

// The id and plugin as far as they can be read, so that even a refusal
// names its task; what is wrong with each, if anything.
struct Identity {
  std::optional<std::string> id;
  std::string plugin;
  std::string id_problem, plugin_problem;
};

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
  return task;
}

Message Decode(const msgpack::object& root) {
  if (root.type != msgpack::type::MAP) {
    return BadMessage{std::nullopt, "", Status(ErrorCode::kBadRequest, "a message must be a msgpack map")};
  }
  const Fields fields = Gather(root);
  const Identity identity = ReadIdentity(fields);
  ErrorCode bad_code = ErrorCode::kBadRequest;
  try {
    if (fields.v) {
      const int64_t version = ReadInteger(*fields.v, "v", INT64_MIN);
      if (version != kProtocolVersion) {
        bad_code = ErrorCode::kUnsupportedVersion;
        throw Invalid{"protocol version " + std::to_string(version) + " is not supported (this host speaks " +
                      std::to_string(kProtocolVersion) + ")"};
      }
    }
    if (fields.op) {
      ControlRequest request{ReadText(*fields.op, "op"), identity.id.value_or("")};
      if (fields.id && fields.id->type == msgpack::type::STR && !IsValidUtf8(AsString(*fields.id))) {
        throw Invalid{"'id' is not valid UTF-8"};
      }
      return request;
    }
    return ReadTask(fields, identity);
  } catch (const Invalid& invalid) {
    return BadMessage{identity.id, identity.plugin, Status(bad_code, invalid.message)};
  } catch (const msgpack::type_error&) {
    return BadMessage{identity.id, identity.plugin, Status(bad_code, "a field has the wrong type")};
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

}  // namespace umi
