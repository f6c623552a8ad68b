// Log output: the human-friendly text pattern, or one JSON object per line
// (--log-format json): {"time", "level", "host", "plugin", "task", "status",
// "code", "message"}: "plugin" and "task" when the line is about a task (its
// plugin's own lines, how it ended, its timeout), "status" and "code" when it
// says how a task ended.
//
// Thread safety: ConfigureLogging runs once at start; LogTaskScope is per
// thread (it marks the lines the current thread logs for one task).
#pragma once

#include <memory>
#include <string>

namespace spdlog {
class formatter;
}

namespace umi {

enum class LogFormat { kText, kJson };

// The text format's formatter: `pattern` with the message escaped (text.h).
std::unique_ptr<spdlog::formatter> MakeTextFormatter(const std::string& pattern);

void ConfigureLogging(LogFormat format, const std::string& level, const std::string& host_name);

// While alive, lines logged by this thread carry `plugin` and `task` (and
// `status` and `code`). The strings must outlive the scope.
class LogTaskScope {
 public:
  // A plugin's own line: a text line starts "[plugin task] "; a JSON line
  // has them as fields only.
  struct PluginLine {};
  LogTaskScope(PluginLine, const std::string& plugin, const std::string& task);
  LogTaskScope(const std::string& plugin, const std::string& task);
  LogTaskScope(const std::string& plugin, const std::string& task, const std::string& status, const std::string& code);
  ~LogTaskScope();
  LogTaskScope(const LogTaskScope&) = delete;
  LogTaskScope& operator=(const LogTaskScope&) = delete;
};

// The formatter behind --log-format json.
std::unique_ptr<spdlog::formatter> MakeJsonFormatter(const std::string& host_name);

// The JSON text of `text` (quoted, escaped).
std::string JsonString(const std::string& text);

}  // namespace umi
