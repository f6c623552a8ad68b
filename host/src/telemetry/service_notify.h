// NotifyService: tells systemd (Type=notify) what the host is doing, e.g.
// "READY=1", "RELOADING=1", "STOPPING=1", through sd_notify(3).
//
// A no-op when NOTIFY_SOCKET is unset (not started by systemd) or when the
// host was built without libsystemd. RELOADING=1 gets the MONOTONIC_USEC
// field systemd 253+ expects.
//
// Thread safety: safe from any thread.
#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace umi {

void NotifyService(const std::string& state);

// The unit's WatchdogSec= when systemd watches this process (WATCHDOG_USEC
// set for this pid); none otherwise. The host then sends WATCHDOG=1 from
// its event loop at half that interval, so a loop that hangs is restarted.
std::optional<std::chrono::microseconds> WatchdogInterval();

}  // namespace umi
