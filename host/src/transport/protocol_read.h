// The protocol codec's field readers (protocol.cc, protocol_read.cc): each
// reads one field of a message, checks its type and range, and throws
// Invalid with the message a producer reads in its rejected/bad_request
// result. Internal to the codec: nothing outside transport/protocol*.cc
// includes this.
//
// Thread safety: stateless functions.
#pragma once

#include <msgpack.hpp>

#include <cstdint>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>

#include "scheduling/flow.h"
#include "scheduling/task.h"

namespace umi::wire_read {

inline constexpr std::string_view kEmptyMap("\x80", 1);

// Thrown inside the decoder only; becomes a BadMessage.
struct Invalid {
  std::string message;
};

std::string_view AsString(const msgpack::object& object);
std::span<const msgpack::object_kv> Entries(const msgpack::object& map);
bool HasKey(const msgpack::object& map, std::string_view key);
// An integer in [min_value, max_value], named `key` in the error.
int64_t ReadInteger(const msgpack::object& value, std::string_view key, int64_t min_value,
                    int64_t max_value = INT64_MAX);
// A valid UTF-8 string.
std::string ReadText(const msgpack::object& value, std::string_view key);
// `object` packed again, as bytes.
std::string Pack(const msgpack::object& object);

// A message's known top-level fields (null: absent); other keys are ignored.
struct Fields {
  const msgpack::object *v = nullptr, *id = nullptr, *plugin = nullptr, *input = nullptr, *priority = nullptr,
                        *timeout_ms = nullptr, *resources = nullptr, *retry = nullptr, *op = nullptr,
                        *flow = nullptr, *after = nullptr, *step_of = nullptr;
};
Fields Gather(const msgpack::object& map);

// The id and plugin as far as they can be read, so that even a refusal
// names its task; what is wrong with each, if anything.
struct Identity {
  std::optional<std::string> id;
  std::string plugin;
  std::string id_problem, plugin_problem;
};
Identity ReadIdentity(const Fields& fields);

// A task from its fields (protocol v1, "Task").
TaskMessage ReadTask(const Fields& fields, const Identity& identity);
// A flow (`flow`, a map of steps) with its graph checked (scheduling/flow.h).
FlowMessage ReadFlow(const msgpack::object& flow, const Fields& fields, const Identity& identity);

}  // namespace umi::wire_read
