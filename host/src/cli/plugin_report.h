// Reports for `umi-host plugins`: every loaded plugin (name, version, kind,
// effective requirement, task group, library path) and every refused
// library with the reason, as an aligned table or as JSON.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "runtime/plugin_registry.h"

namespace umi {

nlohmann::json RequirementJson(const ResourceRequirement& requirement);
nlohmann::json PluginsJson(const PluginRegistry& registry);
std::string PluginsTable(const PluginRegistry& registry);

}  // namespace umi
