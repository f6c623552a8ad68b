// api_1_0: a plugin as API 1.0 built it, by hand in C terms: its descriptor
// ends before run_inline (added in 1.1). A 1.1 host must load it and run it
// on a worker thread. Output: {tid, pid} of the thread that ran it.
#include <sys/syscall.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include <umi/plugin_api.h>

namespace {
const UMI_HostApi* host_api = nullptr;

struct DescriptorV1_0 {  // UMI_PluginDescriptor of API 1.0, field for field
  uint32_t struct_size;
  const char* name;
  const char* version;
  const char* description;
  const char* license;
  UMI_PluginKind kind;
  UMI_Requirement requirement;
  const char* task_group;
  int32_t allow_concurrent;
};
static_assert(sizeof(DescriptorV1_0) <= offsetof(UMI_PluginDescriptor, run_inline) + sizeof(int32_t));

const DescriptorV1_0 kDescriptor = {offsetof(UMI_PluginDescriptor, run_inline),
                                    "api_1_0", "1.0.0", "built against plugin API 1.0", "MIT", UMI_PLUGIN_KIND_CPU,
                                    {0.1, 1, 0.0, 16, 0}, nullptr, 1};

// {"tid": <int>, "pid": <int>} in msgpack, both below 2^31.
void PutInt32(uint8_t*& out, int32_t value) {
  *out++ = 0xd2;
  for (int shift = 24; shift >= 0; shift -= 8) *out++ = static_cast<uint8_t>(static_cast<uint32_t>(value) >> shift);
}
}  // namespace

extern "C" {
UMI_EXPORT void UMI_PluginApiVersion(uint32_t* major, uint32_t* minor) {
  *major = 1;
  *minor = 0;
}
UMI_EXPORT const UMI_PluginDescriptor* UMI_PluginDescribe(void) {
  return reinterpret_cast<const UMI_PluginDescriptor*>(&kDescriptor);
}
UMI_EXPORT UMI_Error* UMI_PluginInitialize(const UMI_HostApi* host, const uint8_t*, size_t) {
  host_api = host;
  return nullptr;
}
UMI_EXPORT UMI_Error* UMI_PluginExecute(UMI_Context* ctx) {
  uint8_t map[32];
  uint8_t* out = map;
  *out++ = 0x82;
  *out++ = 0xa3;
  std::memcpy(out, "tid", 3);
  out += 3;
  PutInt32(out, static_cast<int32_t>(syscall(SYS_gettid)));
  *out++ = 0xa3;
  std::memcpy(out, "pid", 3);
  out += 3;
  PutInt32(out, static_cast<int32_t>(getpid()));
  host_api->ContextSetOutput(ctx, map, static_cast<size_t>(out - map));
  return nullptr;
}
UMI_EXPORT void UMI_PluginFinalize(void) {}
}
