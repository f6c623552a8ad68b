#include "runtime/task_context.h"

#include <spdlog/spdlog.h>

#include "common/log_format.h"

#include <algorithm>
#include <chrono>
#include <cstring>

UMI_Context::UMI_Context(std::string task_id_in, std::string plugin_in, std::string input,
                         const umi::Allocation& allocation)
    : task_id(std::move(task_id_in)),
      plugin(std::move(plugin_in)),
      input_msgpack(std::move(input)),
      gpu_ids(allocation.gpu_ids.begin(), allocation.gpu_ids.end()) {
  grant.struct_size = sizeof(UMI_Grant);
  grant.cpu_cores = allocation.cpu_cores.ToDouble();
  grant.cpu_threads = allocation.cpu_threads;
  grant.memory_mb = allocation.memory_mb;
  grant.gpu_ids = gpu_ids.data();
  grant.gpu_id_count = static_cast<int32_t>(gpu_ids.size());
}

void UMI_Context::Cancel() {
  std::lock_guard lock(mutex_);
  cancelled_.store(true, std::memory_order_release);
  if (cancel_signal_) cancel_signal_->notify_all();
}

bool UMI_Context::WaitCancelled(int64_t timeout_ms) {
  // Beyond this a deadline in nanoseconds would overflow: wait for the cancel alone.
  constexpr int64_t kWaitForeverMs = int64_t{100} * 365 * 24 * 3600 * 1000;
  std::unique_lock lock(mutex_);
  if (!cancel_signal_) cancel_signal_ = std::make_unique<std::condition_variable>();
  if (timeout_ms >= kWaitForeverMs) {
    cancel_signal_->wait(lock, [this] { return cancelled(); });
    return true;
  }
  return cancel_signal_->wait_for(lock, std::chrono::milliseconds(std::max<int64_t>(timeout_ms, 0)),
                                 [this] { return cancelled(); });
}

namespace umi {
namespace {

void ContextInput(const UMI_Context* ctx, const uint8_t** data, size_t* size) {
  *data = reinterpret_cast<const uint8_t*>(ctx->input_msgpack.data());
  *size = ctx->input_msgpack.size();
}

void ContextGrant(const UMI_Context* ctx, UMI_Grant* grant) {
  // Copy no more than the caller's struct holds: older plugins pass smaller ones.
  const uint32_t size = std::min<uint32_t>(grant->struct_size, sizeof(UMI_Grant));
  std::memcpy(grant, &ctx->grant, size);
  grant->struct_size = size;
}

int ContextIsCancelled(const UMI_Context* ctx) { return ctx->cancelled() ? 1 : 0; }

int ContextWaitCancelled(const UMI_Context* ctx, int64_t timeout_ms) {
  return const_cast<UMI_Context*>(ctx)->WaitCancelled(timeout_ms) ? 1 : 0;
}

void ContextSetOutput(UMI_Context* ctx, const uint8_t* data, size_t size) {
  ctx->output_msgpack.assign(reinterpret_cast<const char*>(data), size);
}

void ContextReportProgress(UMI_Context* ctx, double fraction, const char* message) {
  if (ctx->on_progress) ctx->on_progress(fraction, message ? message : "");
}

void ContextLog(const UMI_Context* ctx, UMI_LogLevel level, const char* message) {
  static constexpr spdlog::level::level_enum kLevels[] = {spdlog::level::debug, spdlog::level::info,
                                                          spdlog::level::warn, spdlog::level::err};
  const auto spd_level = (level >= UMI_LOG_DEBUG && level <= UMI_LOG_ERROR) ? kLevels[level]
                                                                           : spdlog::level::info;
  // Text lines name the plugin and task inline; JSON lines carry them as fields.
  LogTaskScope scope(LogTaskScope::PluginLine{}, ctx->plugin, ctx->task_id);
  spdlog::log(spd_level, "{}", message ? message : "");
}

UMI_Error* ErrorNew(const char* code, const char* message) {
  return new UMI_Error{code && *code ? code : "plugin_error", message ? message : ""};
}

void* ContextInstanceState(const UMI_Context* ctx) { return ctx->instance_state; }

}  // namespace

const UMI_HostApi* HostApi() {
  static const UMI_HostApi table = {
      sizeof(UMI_HostApi), ContextInput,     ContextGrant,          ContextIsCancelled,
      ContextWaitCancelled, ContextSetOutput, ContextReportProgress, ContextLog,
      ErrorNew,            ContextInstanceState,
  };
  return &table;
}

}  // namespace umi
