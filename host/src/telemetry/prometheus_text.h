// The Prometheus text exposition of a telemetry snapshot (GET /metrics):
// the umi_* families, the pool's levels, histograms on `bounds`, and
// process_* as Prometheus' client libraries export them.
//
// Thread safety: reentrant.
#pragma once

#include <string>
#include <vector>

#include "telemetry/telemetry.h"

namespace umi {

std::string RenderPrometheus(const Telemetry::Snapshot& snapshot, const std::vector<double>& bounds);

}  // namespace umi
