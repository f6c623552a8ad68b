// The report `umi-host check-config` prints: the pool the host would
// enforce, every task group, every plugin's effective requirement with
// where each value came from, the detected machine, and warnings.
#pragma once

#include <string>
#include <vector>

#include "config/config_loader.h"
#include "config/machine.h"
#include "runtime/plugin_registry.h"

namespace umi {

std::string ConfigReport(const LoadedConfig& loaded, const Machine& machine,
                         const PluginRegistry& registry);

}  // namespace umi
