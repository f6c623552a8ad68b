// Fuzz target: any byte string through the protocol v1 decoder, and a
// result for whatever it decoded through the encoder. DecodeMessage must
// never throw, crash or allocate without bound (protocol.h).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "transport/protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace umi;
  const Message message = DecodeMessage(std::string_view(reinterpret_cast<const char*>(data), size));
  TaskResult result;
  if (const auto* task = std::get_if<TaskMessage>(&message)) {
    result.id = task->id;
    result.plugin = task->plugin;
    result.output_msgpack = task->input_msgpack;  // a msgpack map by contract
  } else if (const auto* bad = std::get_if<BadMessage>(&message)) {
    result = RejectedResult(bad->id, bad->plugin, bad->status);
  }
  (void)EncodeResult(result, "fuzz");
  return 0;
}
