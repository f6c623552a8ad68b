// The JSON views of a telemetry snapshot: the stats (GET /api/stats, the
// rpc `stats` op, the dashboard) and the recent tasks (GET
// /api/tasks/recent, the dashboard's timeline).
//
// Thread safety: reentrant.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "telemetry/telemetry.h"

namespace umi {

nlohmann::json RenderStats(const Telemetry::Snapshot& snapshot);
std::string RenderRecent(const Telemetry::Snapshot& snapshot, const std::vector<TaskRecord>& records);

}  // namespace umi
