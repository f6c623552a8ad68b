// Fuzz target: control requests. The input is split into msgpack values
// that become the `op` and `id` of a control map, so the decoder sees
// well-framed requests whose fields have every wrong type and size.
#include <msgpack.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "transport/protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const char* bytes = reinterpret_cast<const char*>(data);
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  // Up to two values from the input; raw bytes as a string when they do
  // not parse.
  std::string fields[2];
  size_t offset = 0;
  for (std::string& field : fields) {
    const size_t start = offset;
    try {
      msgpack::unpack(bytes, size, offset, nullptr, nullptr,
                      msgpack::unpack_limit(64, 64, 1024, 1024, 1024, 8));
      field.assign(bytes + start, offset - start);
    } catch (const std::exception&) {
      msgpack::sbuffer raw;
      msgpack::pack(raw, std::string_view(bytes + start, size - start));
      field.assign(raw.data(), raw.size());
      offset = size;
    }
  }
  packer.pack_map(3);
  packer.pack("v").pack(1);
  packer.pack("op");
  buffer.write(fields[0].data(), fields[0].size());
  packer.pack("id");
  buffer.write(fields[1].empty() ? "\xc0" : fields[1].data(), fields[1].empty() ? 1 : fields[1].size());
  (void)umi::DecodeMessage(std::string_view(buffer.data(), buffer.size()));
  return 0;
}
