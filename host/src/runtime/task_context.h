// The host's side of the plugin ABI: the UMI_Context a running task gets,
// the UMI_Error a plugin returns, and the UMI_HostApi table of callbacks.
//
// A context belongs to one task. The worker thread running the plugin
// reads input and grant and writes output; the host loop may Cancel it from
// another thread at any time. Progress goes through the on_progress
// callback, which the host sets before the plugin starts.
//
// Thread safety: Cancel, cancelled and WaitCancelled are safe from any
// thread; everything else belongs to the worker running the task.
#pragma once

#include <umi/plugin_api.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "scheduling/resource_pool.h"

struct UMI_Error {
  std::string code;
  std::string message;
  std::string detail = {};  // more for people (a Python traceback), bounded; empty: none
};

namespace umi {
// A plugin's error, owned. The host makes every UMI_Error (its HostApi's
// error_new, or itself), so whoever holds one frees it with delete.
using OwnedError = std::unique_ptr<UMI_Error>;
// A host-made error.
inline OwnedError MakeError(std::string code, std::string message) {
  return std::make_unique<UMI_Error>(UMI_Error{std::move(code), std::move(message)});
}
}  // namespace umi

struct UMI_Context {
  UMI_Context(std::string task_id, std::string plugin, std::string input_msgpack,
              const umi::Allocation& allocation);

  // Asks the plugin to stop; idempotent.
  void Cancel();
  bool cancelled() const { return cancelled_.load(std::memory_order_acquire); }
  // True if cancelled before timeout_ms passed.
  bool WaitCancelled(int64_t timeout_ms);

  const std::string task_id;
  const std::string plugin;
  const std::string input_msgpack;
  const std::vector<int32_t> gpu_ids;
  UMI_Grant grant{};
  std::string output_msgpack;
  void* instance_state = nullptr;  // this worker's UMI_InstanceInitialize result
  std::function<void(double fraction, std::string_view message)> on_progress;

 private:
  std::atomic<bool> cancelled_{false};
  std::mutex mutex_;
  // Made by the first WaitCancelled: most tasks never wait, and a condition
  // variable costs a futex round to destroy.
  std::unique_ptr<std::condition_variable> cancel_signal_;
};

namespace umi {

// The callback table handed to every plugin's UMI_PluginInitialize.
const UMI_HostApi* HostApi();

}  // namespace umi
