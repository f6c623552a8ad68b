#include "runtime/worker_exchange.h"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

#include <msgpack.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>
#include <stdexcept>

#include "common/log_format.h"
#include "runtime/worker_frames.h"
#include "scheduling/task.h"

namespace umi {
namespace {

using Clock = std::chrono::steady_clock;
// How late a cancellation may reach the worker: the poll's tick.
constexpr int kTickMs = 10;

enum class FrameVerdict { kMore, kAnswered };

// A progress or done frame of the running task (anything else throws).
FrameVerdict ReadTaskFrame(const ExchangeSettings& settings, UMI_Context& context, FrameType type,
                           const std::string& payload, ExchangeEnd& end) {
  const msgpack::object_handle handle = msgpack::unpack(payload.data(), payload.size());
  const auto fields = handle.get().as<std::map<std::string, msgpack::object>>();
  // A frame names its task: one from an earlier task (a thread or a forked
  // process the plugin left behind) is not this task's answer.
  if (const auto from = fields.find("task"); from != fields.end() && from->second.as<std::string>() != context.task_id) {
    if (settings.late_frame) settings.late_frame();
    spdlog::warn("plugin {}: a {} frame of task '{}' came while task '{}' ran (something the plugin left "
                 "running); dropped",
                 settings.plugin, type == kDone ? "result" : "progress", from->second.as<std::string>(),
                 context.task_id);
    return FrameVerdict::kMore;
  }
  if (type == kProgress) {
    if (context.on_progress) {
      context.on_progress(fields.at("fraction").as<double>(), fields.at("message").as<std::string>());
    }
    return FrameVerdict::kMore;
  }
  if (type != kDone) throw std::runtime_error("unexpected frame type " + std::to_string(type));
  if (fields.at("ok").as<bool>()) {
    const msgpack::object& output = fields.at("output");
    context.output_msgpack.assign(output.via.bin.ptr, output.via.bin.size);
  } else {
    end.error = MakeError(fields.at("code").as<std::string>(), fields.at("message").as<std::string>());
    if (const auto detail = fields.find("detail"); detail != fields.end() && detail->second.type == msgpack::type::STR) {
      end.error->detail = detail->second.as<std::string>().substr(0, kMaxErrorDetail);
    }
  }
  return FrameVerdict::kAnswered;
}

}  // namespace

void SendCancel(const ExchangeSettings& settings, const std::string& task_id) {
  if (WriteFrame(settings.fd, kCancel, task_id) && settings.pid > 0) kill(settings.pid, kCancelSignal);
}

std::string TaskFrame(const UMI_Context& context, const Allocation& allocation) {
  return Pack([&](auto& p) {
    p.pack_map(7);
    p.pack("id").pack(context.task_id);
    p.pack("input").pack_bin(static_cast<uint32_t>(context.input_msgpack.size()));
    p.pack_bin_body(context.input_msgpack.data(), static_cast<uint32_t>(context.input_msgpack.size()));
    p.pack("cpu_cores").pack(allocation.cpu_cores.ToDouble());
    p.pack("cpu_threads").pack(allocation.cpu_threads);
    p.pack("memory_mb").pack(allocation.memory_mb);
    p.pack("cpu_ids").pack(allocation.cpu_ids);
    p.pack("gpu_ids").pack(allocation.gpu_ids);
  });
}

bool TakeFrame(const ExchangeSettings& settings, UMI_Context& context, FrameType type, const std::string& payload,
               ExchangeEnd& end) {
  if (type == kDenied) {
    end.denied = SystemCallName(std::atoi(payload.c_str()));
    return false;  // its end follows
  }
  end.started = true;  // kStarted, or any frame that comes from a task that ran
  if (type == kStarted) return false;
  if (type == kLog) {
    LogWorkerLine(settings.plugin, context.task_id, payload);
    return false;
  }
  try {
    if (ReadTaskFrame(settings, context, type, payload, end) == FrameVerdict::kAnswered) {
      end.how = ExchangeEnd::How::kAnswered;
      return true;
    }
  } catch (const std::exception& e) {
    end.error = MakeError("crashed", std::string("the plugin's worker process sent a bad frame: ") + e.what());
    end.how = ExchangeEnd::How::kBadFrame;
    return true;
  }
  return false;
}

ExchangeEnd ExchangeTask(const ExchangeSettings& settings, UMI_Context& context, const std::string& task_frame) {
  ExchangeEnd end;
  const auto ended = [&end](ExchangeEnd::How how) {
    end.how = how;
    return std::move(end);
  };
  if (!WriteFrame(settings.fd, kTask, task_frame)) return ended(ExchangeEnd::How::kWorkerGone);
  std::optional<Clock::time_point> kill_at;
  while (true) {
    if (!kill_at && context.cancelled()) {
      kill_at = Clock::now() + settings.kill_grace;
      SendCancel(settings, context.task_id);
    }
    if (kill_at && Clock::now() >= *kill_at) {
      end.started = true;  // whatever it did, it was told to stop: no second try
      return ended(ExchangeEnd::How::kCancelIgnored);
    }
    pollfd readable{settings.fd, POLLIN, 0};
    if (poll(&readable, 1, kTickMs) <= 0) continue;
    FrameType type{};
    std::string payload;
    if (!ReadFrame(settings.fd, type, payload)) return ended(ExchangeEnd::How::kWorkerGone);
    if (TakeFrame(settings, context, type, payload, end)) return end;
  }
}

void LogWorkerLine(const std::string& plugin, const std::string& task, const std::string& payload) {
  static constexpr spdlog::level::level_enum kLevels[] = {spdlog::level::debug, spdlog::level::info,
                                                          spdlog::level::warn, spdlog::level::err};
  try {
    const msgpack::object_handle handle = msgpack::unpack(payload.data(), payload.size());
    const auto fields = handle.get().as<std::map<std::string, msgpack::object>>();
    const int level = std::clamp(fields.at("level").as<int>(), 0, 3);
    // A line names its task: one from a thread that outlived its task is that task's, not the running one's.
    const auto named = fields.find("task");
    const std::string from = named != fields.end() && named->second.type == msgpack::type::STR &&
                                     named->second.via.str.size > 0
                                 ? named->second.as<std::string>()
                                 : task;
    LogTaskScope scope(LogTaskScope::PluginLine{}, plugin, from);
    spdlog::log(kLevels[level], "{}", fields.at("message").as<std::string>());
  } catch (const std::exception& e) {
    spdlog::warn("plugin {}: its worker sent an unreadable log line: {}", plugin, e.what());
  }
}

std::string DescribeExit(int status, const std::string& denied, const SandboxPolicy* sandbox) {
  if (!denied.empty()) {
    std::string grant;
    if (denied == "socket" || denied == "socketpair") grant = " (sandbox: {network: true} grants it)";
    if (denied == "execve" || denied == "execveat" || denied == "clone" || denied == "fork" || denied == "vfork") {
      grant = " (sandbox: {exec: true} grants it)";
    }
    return "the sandbox stopped the plugin's worker process: it called " + denied + ", which the sandbox denies" + grant;
  }
  if (sandbox && WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS) {
    return "the sandbox stopped the plugin's worker process: it made a system call the sandbox denies (signal 31, SIGSYS)";
  }
  if (sandbox && WIFSIGNALED(status) && WTERMSIG(status) == SIGXFSZ) {
    return "the sandbox stopped the plugin's worker process: it wrote a file past the sandbox's max_file_mb=" +
           std::to_string(sandbox->max_file_bytes >> 20);
  }
  if (WIFSIGNALED(status)) {
    const int signal = WTERMSIG(status);
    return "the plugin's worker process died of signal " + std::to_string(signal) + " (" + strsignal(signal) + ")";
  }
  if (WIFEXITED(status)) {
    return "the plugin's worker process exited with code " + std::to_string(WEXITSTATUS(status));
  }
  return "the plugin's worker process ended";
}

bool StoppedBySandbox(int status, const std::string& denied, const SandboxPolicy* sandbox) {
  if (!sandbox) return false;
  return !denied.empty() || (WIFSIGNALED(status) && (WTERMSIG(status) == SIGSYS || WTERMSIG(status) == SIGXFSZ));
}

}  // namespace umi
