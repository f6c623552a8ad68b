#include "common/log_format.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <ctime>

#include "common/text.h"

namespace umi {
namespace {

struct TaskFields {
  const std::string* plugin = nullptr;
  const std::string* task = nullptr;
  const std::string* status = nullptr;  // with code: a line about how the task ended
  const std::string* code = nullptr;
  bool plugin_line = false;  // the plugin's own: text names it, "[plugin task] "
};
thread_local TaskFields current_task;

// ISO-8601 in UTC with microseconds: 2026-12-02T19:40:01.123456Z.
std::string IsoUtc(std::chrono::system_clock::time_point time) {
  const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(time.time_since_epoch()).count();
  const std::time_t seconds = static_cast<std::time_t>(micros / 1000000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[40];
  const size_t length = std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(text + length, sizeof(text) - length, ".%06lldZ", static_cast<long long>(micros % 1000000));
  return text;
}

// Level names as --log-level spells them (spdlog says "warning").
const char* LevelName(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace: return "trace";
    case spdlog::level::debug: return "debug";
    case spdlog::level::info: return "info";
    case spdlog::level::warn: return "warn";
    case spdlog::level::err: return "error";
    case spdlog::level::critical: return "critical";
    default: return "off";
  }
}

class JsonFormatter : public spdlog::formatter {
 public:
  explicit JsonFormatter(std::string host) : host_(JsonString(host)) {}

  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    std::string line = "{\"time\":\"" + IsoUtc(msg.time) + "\",\"level\":\"";
    line += LevelName(msg.level);
    line += "\",\"host\":" + host_;
    if (current_task.plugin) {
      line += ",\"plugin\":" + JsonString(*current_task.plugin) + ",\"task\":" + JsonString(*current_task.task);
    }
    if (current_task.status) {
      line += ",\"status\":" + JsonString(*current_task.status) + ",\"code\":" + JsonString(*current_task.code);
    }
    line += ",\"message\":" + JsonString(std::string(msg.payload.data(), msg.payload.size())) + "}\n";
    dest.append(line.data(), line.data() + line.size());
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    auto copy = std::make_unique<JsonFormatter>("");
    copy->host_ = host_;
    return copy;
  }

 private:
  std::string host_;
};

// Text lines: the message escaped (text.h), its continuation lines
// indented, so a value carrying a newline cannot forge a line of its own.
class EscapingFormatter : public spdlog::formatter {
 public:
  // Times in UTC, so a pattern's %H:%M means the same on every host.
  explicit EscapingFormatter(const std::string& pattern)
      : pattern_(pattern),
        inner_(std::make_unique<spdlog::pattern_formatter>(pattern, spdlog::pattern_time_type::utc)) {}

  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    std::string escaped =
        EscapeForLog(std::string_view(msg.payload.data(), msg.payload.size()), /*indent_newlines=*/true);
    if (current_task.plugin_line) {
      escaped = "[" + EscapeForLog(*current_task.plugin) + " " + EscapeForLog(*current_task.task) + "] " + escaped;
    }
    spdlog::details::log_msg copy = msg;
    copy.payload = spdlog::string_view_t(escaped.data(), escaped.size());
    inner_->format(copy, dest);
  }

  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<EscapingFormatter>(pattern_); }

 private:
  std::string pattern_;
  std::unique_ptr<spdlog::pattern_formatter> inner_;
};

}  // namespace

std::string JsonString(const std::string& raw) {
  const std::string text = ToValidUtf8(raw);
  std::string out = "\"";
  for (const unsigned char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char escaped[8];
          std::snprintf(escaped, sizeof(escaped), "\\u%04x", c);
          out += escaped;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

std::unique_ptr<spdlog::formatter> MakeTextFormatter(const std::string& pattern) {
  return std::make_unique<EscapingFormatter>(pattern);
}

std::unique_ptr<spdlog::formatter> MakeJsonFormatter(const std::string& host_name) {
  return std::make_unique<JsonFormatter>(host_name);
}

LogTaskScope::LogTaskScope(PluginLine, const std::string& plugin, const std::string& task) {
  current_task = {&plugin, &task, nullptr, nullptr, true};
}

LogTaskScope::LogTaskScope(const std::string& plugin, const std::string& task) {
  current_task = {&plugin, &task};
}

LogTaskScope::LogTaskScope(const std::string& plugin, const std::string& task, const std::string& status,
                           const std::string& code) {
  current_task = {&plugin, &task, &status, &code};
}

LogTaskScope::~LogTaskScope() { current_task = {}; }

void ConfigureLogging(LogFormat format, const std::string& level, const std::string& host_name) {
  auto logger = spdlog::stderr_color_mt("umi");
  if (format == LogFormat::kJson) {
    logger->set_formatter(MakeJsonFormatter(host_name));
  } else {
    logger->set_formatter(MakeTextFormatter("%Y-%m-%dT%H:%M:%S.%eZ %^%-5l%$ %v"));
  }
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(level));
}

}  // namespace umi
