// Text hygiene for bytes that arrive from outside (task ids, plugin names,
// plugin output) and leave in places that need valid text: JSON, the
// Prometheus exposition, log lines.
//
// Thread safety: stateless functions.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace umi {

// True when `text` is well-formed UTF-8 (no overlongs, no surrogates,
// nothing above U+10FFFF).
bool IsValidUtf8(std::string_view text);

// `text` with every ill-formed UTF-8 sequence replaced by U+FFFD.
std::string ToValidUtf8(std::string_view text);

// `text` fit for a text log: control characters and DEL as \n, \r, \t or
// \xNN, a backslash as \\, ill-formed UTF-8 bytes as \xNN, so no value can
// start a forged line or hide itself. `indent_newlines`: a newline stays one,
// followed by four spaces (a traceback reads as one), and every continuation
// line is indented, so none passes for a line of its own.
std::string EscapeForLog(std::string_view text, bool indent_newlines = false);

// The candidate nearest to `word` by edit distance when that is below 3
// (a near miss worth a "did you mean"), else empty.
// The non-empty parts of a colon-separated list (PATH, PYTHONPATH,
// UMI_PLUGIN_DIRS); none for null.
std::vector<std::string> SplitColonList(const char* list);

std::string ClosestMatch(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace umi
