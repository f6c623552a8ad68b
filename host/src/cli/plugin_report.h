// Reports for `umi-host plugins`: every loaded plugin (name, version, kind,
// effective requirement, task group, library path) and every refused
// library with the reason, as an aligned table or as JSON.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "runtime/plugin_registry.h"

namespace umi {

nlohmann::json RequirementJson(const ResourceRequirement& requirement);
// With `config`: each plugin's isolation and sandbox (what it is granted,
// what this kernel lacks of it), and the kernel's sandbox mechanisms.
nlohmann::json PluginsJson(const PluginRegistry& registry, const HardwareConfig& config);
std::string PluginsTable(const PluginRegistry& registry);

}  // namespace umi
