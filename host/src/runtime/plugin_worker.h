// The worker process's side of process_pool.h: `umi-host __worker --fd N
// --library PATH [--sandbox]`. With --sandbox it reads the kSandbox frame and
// enters the sandbox (sandbox.h) before anything of the plugin is loaded;
// then it loads the library, runs UMI_PluginInitialize with the kInit
// settings and serves kTask frames one at a time, each within its grant
// (CPU affinity, RLIMIT_AS), until the host closes the socket. A worker
// that is pid 1 of its own namespace kills what each task left running.
//
// Thread safety: called once, on the process's main thread.
#pragma once

#include <filesystem>

namespace umi {

// Serves tasks on `fd`; returns the exit code (it _Exits once the host
// closes the socket: the plugin's threads and globals are not its to end).
int RunPluginWorker(int fd, const std::filesystem::path& library, bool sandboxed);

}  // namespace umi
