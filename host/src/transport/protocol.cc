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
#include "transport/protocol_read.h"

namespace umi {
namespace {

using namespace wire_read;  // the codec's own field readers

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
    if (fields.flow) return ReadFlow(*fields.flow, fields, identity);
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

TaskFields PeekTaskFields(std::string_view bytes) {
  // One zone per thread, cleared after each peek, as DecodeMessage does: a
  // zone per call costs an 8 KiB allocation per task.
  thread_local msgpack::zone zone;
  TaskFields fields;
  try {
    const msgpack::object root = msgpack::unpack(zone, bytes.data(), bytes.size());
    for (uint32_t i = 0; root.type == msgpack::type::MAP && i < root.via.map.size; ++i) {
      const auto& kv = root.via.map.ptr[i];
      if (kv.key.type != msgpack::type::STR || kv.val.type != msgpack::type::STR) continue;
      const std::string_view key(kv.key.via.str.ptr, kv.key.via.str.size);
      std::optional<std::string>* field = key == "id"         ? &fields.id
                                          : key == "plugin"   ? &fields.plugin
                                          : key == "reply_to" ? &fields.reply_to
                                          : key == "step_of"  ? &fields.step_of
                                                              : nullptr;
      if (field) field->emplace(kv.val.via.str.ptr, kv.val.via.str.size);
    }
  } catch (const std::exception&) {
  }
  zone.clear();
  return fields;
}

// The secret is drawn once per process (a farm's hosts then share one):
// a hash with a known key (std::hash has a fixed seed) lets anyone make a
// second input with a task's fingerprint and have the real task answered
// with the forgery's result.
std::array<unsigned char, kFingerprintSecretBytes>& FingerprintSecret() {
  static std::array<unsigned char, kFingerprintSecretBytes> secret = [] {
    std::array<unsigned char, kFingerprintSecretBytes> bytes{};
    for (size_t got = 0; got < bytes.size();) {
      const ssize_t n = getrandom(bytes.data() + got, bytes.size() - got, 0);
      if (n < 0 && errno != EINTR) throw std::runtime_error(std::string("getrandom: ") + std::strerror(errno));
      if (n > 0) got += static_cast<size_t>(n);
    }
    return bytes;
  }();
  return secret;
}

std::string FingerprintKey() {
  const auto& secret = FingerprintSecret();
  return std::string(reinterpret_cast<const char*>(secret.data()), secret.size());
}

bool UseFingerprintKey(std::string_view key) {
  if (key.size() != kFingerprintSecretBytes) return false;
  std::copy(key.begin(), key.end(), FingerprintSecret().begin());
  return true;
}

namespace {

constexpr std::string_view kFingerprintField = "fingerprint";
constexpr size_t kFingerprintBytes = sizeof(TaskFingerprint::low) + sizeof(TaskFingerprint::high);
// What WithFingerprint appends after the map's pairs: the key (fixstr), a
// bin 8 header and the 16 bytes.
constexpr size_t kFingerprintTail = 1 + kFingerprintField.size() + 2 + kFingerprintBytes;

}  // namespace

namespace {

std::string PackedFingerprint(const TaskFingerprint& fingerprint) {
  std::string packed = {static_cast<char>(0xc4), static_cast<char>(kFingerprintBytes)};
  packed.append(reinterpret_cast<const char*>(&fingerprint.low), sizeof(fingerprint.low));
  packed.append(reinterpret_cast<const char*>(&fingerprint.high), sizeof(fingerprint.high));
  return packed;
}

}  // namespace

std::string WithFingerprint(std::string result, const TaskFingerprint& fingerprint) {
  return WithPackedField(std::move(result), kFingerprintField, PackedFingerprint(fingerprint));
}

std::string FingerprintField(const TaskFingerprint& fingerprint) {
  std::string field = {static_cast<char>(0xa0 | kFingerprintField.size())};
  field.append(kFingerprintField);
  return field + PackedFingerprint(fingerprint);
}

std::optional<std::pair<std::string, TaskFingerprint>> SplitFingerprint(std::string_view kept) {
  if (kept.size() < kFingerprintTail + 1) return std::nullopt;
  const std::string_view tail = kept.substr(kept.size() - kFingerprintTail);
  if (static_cast<uint8_t>(tail[0]) != (0xa0 | kFingerprintField.size()) ||
      tail.substr(1, kFingerprintField.size()) != kFingerprintField ||
      static_cast<uint8_t>(tail[1 + kFingerprintField.size()]) != 0xc4 ||
      static_cast<uint8_t>(tail[2 + kFingerprintField.size()]) != kFingerprintBytes) {
    return std::nullopt;
  }
  // The map's header, one pair fewer, written as the encoder writes it.
  const auto head = static_cast<uint8_t>(kept[0]);
  size_t pairs = 0, header = 1;
  if ((head & 0xF0) == 0x80) {
    pairs = head & 0x0F;
  } else if (head == 0xDE && kept.size() > 3) {
    pairs = (static_cast<uint8_t>(kept[1]) << 8) | static_cast<uint8_t>(kept[2]);
    header = 3;
  } else {
    return std::nullopt;  // results never have 65,536 fields
  }
  if (pairs == 0) return std::nullopt;
  msgpack::sbuffer result;
  msgpack::packer<msgpack::sbuffer>(result).pack_map(static_cast<uint32_t>(pairs - 1));
  result.write(kept.data() + header, kept.size() - header - kFingerprintTail);
  TaskFingerprint fingerprint;
  std::memcpy(&fingerprint.low, tail.data() + tail.size() - kFingerprintBytes, sizeof(fingerprint.low));
  std::memcpy(&fingerprint.high, tail.data() + tail.size() - sizeof(fingerprint.high), sizeof(fingerprint.high));
  return std::make_pair(std::string(result.data(), result.size()), fingerprint);
}

TaskFingerprint Fingerprint(const FlowMessage& flow) {
  const auto& secret = FingerprintSecret();
  const XXH128_hash_t hash = XXH3_128bits_withSecret(flow.packed.data(), flow.packed.size(), secret.data(), secret.size());
  return TaskFingerprint{hash.low64, hash.high64};
}

TaskFingerprint Fingerprint(const TaskMessage& task) {
  const auto& secret = FingerprintSecret();
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
