#include "host/task_ledger.h"

#include <spdlog/spdlog.h>

#include "common/log_format.h"
#include "transport/protocol.h"

namespace umi {

TaskLedger::TaskLedger(std::string host, const Clock& clock, Telemetry& telemetry, EventSink& events,
                       Clock::Duration dedup_window, size_t dedup_max_entries)
    : host_(std::move(host)),
      clock_(clock),
      telemetry_(telemetry),
      events_(events),
      finished_(dedup_window, dedup_max_entries) {}

uint64_t TaskLedger::KeyOf(const std::string& id) const {
  const auto found = active_.find(id);
  return found == active_.end() ? 0 : found->second.key;
}

void TaskLedger::Rekey(const std::string& id, uint64_t key) {
  if (const auto found = active_.find(id); found != active_.end()) found->second.key = key;
}

void TaskLedger::Accepted(const std::string& id, uint64_t key, TaskFingerprint fingerprint) {
  if (spare_active_.empty()) {
    active_.emplace(id, Active{key, fingerprint});
    return;
  }
  // The node the last ended task left: no allocation per task.
  spare_active_.key() = id;
  spare_active_.mapped() = Active{key, fingerprint};
  auto inserted = active_.insert(std::move(spare_active_));
  if (!inserted.inserted) spare_active_ = std::move(inserted.node);  // admission never lets an active id in twice
}

std::optional<TaskFingerprint> TaskLedger::Release(const std::optional<std::string>& id) {
  std::optional<TaskFingerprint> fingerprint;
  if (id) {
    if (const auto active = active_.find(*id); active != active_.end()) {
      fingerprint = active->second.fingerprint;
      spare_active_ = active_.extract(active);
    }
  }
  return fingerprint;
}

void TaskLedger::End(const TaskResult& result, const ReplyRoute& route, uint64_t key, TaskRecord* ran) {
  Answer(result, route, key, Release(result.id), ran);
}

void TaskLedger::EndFlow(const TaskResult& result, const ReplyRoute& route) {
  Answer(result, route, 0, Release(result.id), nullptr, /*counted=*/false);
}

void TaskLedger::Refuse(const TaskResult& result, const ReplyRoute& route) { Answer(result, route, 0, std::nullopt); }

void TaskLedger::Answer(const TaskResult& result, const ReplyRoute& route, uint64_t key,
                        std::optional<TaskFingerprint> fingerprint, TaskRecord* ran, bool counted) {
  if (counted) telemetry_.TaskFinished(key, result, ran);
  if (result.status != TaskStatus::kOk && result.status != TaskStatus::kRejected) {
    const std::string id = result.id.value_or(""), status = ToString(result.status);
    LogTaskScope scope(result.plugin, id, status, result.error_code);
    spdlog::info("task '{}' ({}) ended {}: {}: {}", id, result.plugin, status, result.error_code, result.error_message);
  } else if (result.status == TaskStatus::kOk && spdlog::should_log(spdlog::level::debug)) {
    // At debug, every task's end: an operator can find any task by its id.
    const std::string id = result.id.value_or("");
    LogTaskScope scope(result.plugin, id, "ok", "");
    spdlog::debug("task '{}' ({}) ended ok: queued {:.1f} ms, ran {:.1f} ms", id, result.plugin, result.queued_ms,
                  result.run_ms);
  }
  EncodeResultInto(result, host_, encoded_);
  if (result.id && result.status != TaskStatus::kRejected) {
    if (events_.listening()) events_.Publish("task.finished", encoded_);
    finished_.Remember(*result.id, encoded_, fingerprint.value_or(TaskFingerprint{}), clock_.Now());
  }
  SendOn(route, encoded_, fingerprint ? &*fingerprint : nullptr);
}

}  // namespace umi
