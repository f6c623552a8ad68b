// Fuzz target: YAML config loading. Any text must give a config or an error
// message, never a crash; a config that parses must build a pool.
#include <cstddef>
#include <cstdint>
#include <string>

#include "config/hardware_config.h"
#include "scheduling/resource_pool.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 64 * 1024) return 0;  // yaml-cpp recursion on megabytes of '[' is not ours to fuzz
  const std::string text(reinterpret_cast<const char*>(data), size);
  const auto config = umi::ParseHardwareConfig(text, "fuzz.yaml");
  if (config.ok()) {
    umi::ResourcePool pool(umi::PoolCapacity::FromConfig(config.value()));
    (void)pool.Usage();
  }
  return 0;
}
