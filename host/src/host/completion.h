// Completion: how a run ended, turned into the task's result. Pure: the
// loop gathers the facts (why the host stopped the task, what the plugin or
// its worker process returned) and this decides the status, in this order:
// cancelled by request, timed out, cancelled by a drain, crashed, the
// plugin's error, output that is not a msgpack map, ok.
//
// Thread safety: stateless.
#pragma once

#include <string>

#include "transport/protocol.h"

namespace umi {

struct RunOutcome {
  // What the host did to the task while it ran.
  bool cancel_requested = false;  // the `cancel` op
  bool timed_out = false;         // past timeout_ms
  bool drain_cancelled = false;   // cancelled past the drain timeout
  // What came back.
  bool crashed = false;  // its worker process died
  bool killed = false;   // its worker process was SIGKILLed after the grace period
  std::string error_code = {};  // the plugin's error; empty: none
  std::string error_message = {};
  std::string error_detail = {};  // a traceback or the like; empty: none
  std::string output_msgpack = {};
  // Timing.
  double queued_ms = 0, run_ms = 0, started_at = 0, finished_at = 0;
};

TaskResult CompleteRun(const TaskMessage& task, Allocation allocation, RunOutcome outcome);

}  // namespace umi
