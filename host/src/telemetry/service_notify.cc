#include "telemetry/service_notify.h"

#include <time.h>

#include <cstdint>

#ifdef UMI_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

namespace umi {

void NotifyService(const std::string& state) {
#ifdef UMI_HAVE_SYSTEMD
  std::string message = state;
  if (message.rfind("RELOADING=1", 0) == 0) {
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    message += "\nMONOTONIC_USEC=" + std::to_string(now.tv_sec * 1000000LL + now.tv_nsec / 1000);
  }
  sd_notify(0, message.c_str());
#else
  (void)state;
#endif
}

std::optional<std::chrono::microseconds> WatchdogInterval() {
#ifdef UMI_HAVE_SYSTEMD
  uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) return std::chrono::microseconds(usec);
#endif
  return std::nullopt;
}

}  // namespace umi
