// umi/task.hpp: a task and its outcome as a producer sees them, and their
// msgpack form (protocol v1, docs/protocol.md), shared by the ZeroMQ client
// (umi/client.hpp) and the Redis Streams client (umi/redis_client.hpp).
// Header-only; needs msgpack-cxx and nothing else.
//
// Thread safety: plain values and free functions.
#pragma once

#include <msgpack.hpp>

#include <cstdint>
#include <map>
#include <string>

namespace umi {

// A msgpack map of integer or string values, for simple inputs.
inline std::string PackMap(const std::map<std::string, int64_t>& values) {
  msgpack::sbuffer buffer;
  msgpack::pack(buffer, values);
  return std::string(buffer.data(), buffer.size());
}

struct TaskRequest {
  std::string id;
  std::string plugin;
  std::string input = std::string("\x80", 1);  // a msgpack map
  int64_t priority = 0;
  int64_t timeout_ms = 0;
  std::string resources = {};  // a msgpack map of requirement overrides, or empty
  std::string retry = {};      // a msgpack map {attempts, backoff_ms, max_backoff_ms, on}, or empty (docs/flows.md)
};

struct TaskOutcome {
  std::string id;
  std::string plugin;
  std::string status;  // ok, error, rejected, timeout, cancelled, crashed
  std::string error_code;
  std::string error_message;
  std::string host;
  double queued_ms = 0;
  double run_ms = 0;
  int attempts = 0;
  std::string result;  // the whole result map, msgpack (empty for no_result)
};

struct EncodeOptions {
  int attempt = 1;              // informational; hosts ignore it (0: left out)
  std::string reply_to = {};    // Redis Streams: the result stream (empty: left out)
};

// The task map a host takes: v, id, plugin, input, priority, and the
// optional keys only when set.
inline std::string EncodeTask(const TaskRequest& r, const EncodeOptions& options = {}) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  packer.pack_map(5 + (options.attempt > 0 ? 1 : 0) + (r.timeout_ms > 0 ? 1 : 0) + (r.resources.empty() ? 0 : 1) +
                  (r.retry.empty() ? 0 : 1) + (options.reply_to.empty() ? 0 : 1));
  packer.pack("v").pack(1);
  packer.pack("id").pack(r.id);
  packer.pack("plugin").pack(r.plugin);
  packer.pack("input");
  buffer.write(r.input.data(), r.input.size());
  packer.pack("priority").pack(r.priority);
  if (options.attempt > 0) packer.pack("attempt").pack(options.attempt);
  if (r.timeout_ms > 0) packer.pack("timeout_ms").pack(r.timeout_ms);
  if (!r.resources.empty()) {
    packer.pack("resources");
    buffer.write(r.resources.data(), r.resources.size());
  }
  if (!r.retry.empty()) {
    packer.pack("retry");
    buffer.write(r.retry.data(), r.retry.size());
  }
  if (!options.reply_to.empty()) packer.pack("reply_to").pack(options.reply_to);
  return std::string(buffer.data(), buffer.size());
}

// Reads a result map into `outcome` (all but attempts and result). False
// when `bytes` is not a msgpack map. `has_ok` says the map has an `ok` key:
// a control reply rather than a task result.
inline bool DecodeResult(const std::string& bytes, TaskOutcome& outcome, bool& has_ok) {
  has_ok = false;
  try {
    const msgpack::object_handle handle = msgpack::unpack(bytes.data(), bytes.size());
    const msgpack::object& root = handle.get();
    if (root.type != msgpack::type::MAP) return false;
    for (uint32_t i = 0; i < root.via.map.size; ++i) {
      const msgpack::object_kv& kv = root.via.map.ptr[i];
      if (kv.key.type != msgpack::type::STR) continue;
      const std::string key = kv.key.as<std::string>();
      const bool text = kv.val.type == msgpack::type::STR;
      const bool number = kv.val.type == msgpack::type::FLOAT64 || kv.val.type == msgpack::type::FLOAT32 ||
                          kv.val.type == msgpack::type::POSITIVE_INTEGER;
      if (key == "ok") has_ok = true;
      if (key == "id" && text) outcome.id = kv.val.as<std::string>();
      if (key == "plugin" && text) outcome.plugin = kv.val.as<std::string>();
      if (key == "status" && text) outcome.status = kv.val.as<std::string>();
      if (key == "host" && text) outcome.host = kv.val.as<std::string>();
      if (key == "queued_ms" && number) outcome.queued_ms = kv.val.as<double>();
      if (key == "run_ms" && number) outcome.run_ms = kv.val.as<double>();
      if (key == "error" && kv.val.type == msgpack::type::MAP) {
        const auto error = kv.val.as<std::map<std::string, std::string>>();
        if (error.count("code")) outcome.error_code = error.at("code");
        if (error.count("message")) outcome.error_message = error.at("message");
      }
    }
  } catch (const std::exception&) {
    return false;
  }
  return true;
}

}  // namespace umi
