// Python plugins: a file `<name>.py` in a plugin directory is a plugin named
// `<name>` (docs/python.md). The host never runs Python itself: it imports
// the file once in a short-lived interpreter to read its descriptor
// (REQUIREMENT, VERSION, TASK_GROUP, the docstring), and runs its tasks in
// worker processes of that interpreter (`python3 -m umi._worker`, the
// Python side of process_pool's frame protocol), one task at a time per
// process, so the GIL never serialises two tasks and a crash costs one task.
//
// Why a stub interpreter and not CPython embedded in umi-host: the host
// stays free of libpython (one binary for every user, no GIL or
// interpreter state in the scheduler's process), a plugin gets a plain
// python3 (its venv, site-packages, sys.executable) and isolation comes
// from the process boundary the C++ plugins already use.
//
// The interpreter is $UMI_PYTHON (default `python3` on PATH); the `umi`
// package it imports is <prefix>/share/umi/python (prepended to
// PYTHONPATH). Files whose name starts with `_` are helper modules, not
// plugins.
//
// Thread safety: the functions are reentrant.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "common/status.h"

namespace umi {

struct LoadedPlugin;

// True for a file the registry treats as a Python plugin.
bool IsPythonPluginFile(const std::filesystem::path& path);

// Imports `file` in a fresh interpreter and fills `plugin`'s name, version,
// description, license, declared requirement and task group. kUnavailable
// with the reason (an import error with its line, no execute(), a bad
// REQUIREMENT, no interpreter) when it cannot be a plugin.
Status DescribePythonPlugin(const std::filesystem::path& file, LoadedPlugin& plugin);

// The command line and environment of a worker process for `plugin`
// (serving on fd 3, its code on fd kPythonSourceFd). The environment is the
// host's, with PYTHONPATH extended and OMP/OpenBLAS/MKL thread counts set to
// the plugin's cpu_threads before the interpreter starts.
std::vector<std::string> PythonWorkerArgv(const LoadedPlugin& plugin);

// A worker reads the plugin's code from this descriptor, not from the file:
// the code the host described and loaded, so a file changed on disk changes
// nothing until a restart (a reload says restart_needed, and means it).
inline constexpr int kPythonSourceFd = 4;
// A sealed-size memory file holding `source`, for kPythonSourceFd; -1 with
// errno set when it cannot be made.
int PythonSourceFd(const std::string& source);
std::vector<std::string> PythonWorkerEnvironment(const LoadedPlugin& plugin);
// What a sandboxed worker must read to run (sandbox.h): the interpreter's
// prefix (and a venv's), the `umi` package, PYTHONPATH.
std::vector<std::filesystem::path> PythonReadPaths();

}  // namespace umi
