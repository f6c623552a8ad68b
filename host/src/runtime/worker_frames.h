// The frames between umi-host and its worker processes (process_pool.h,
// plugin_worker.h; python/umi/_worker.py speaks them too): on a socketpair,
// [type:u8][length:u32, host order][payload], the payload msgpack unless a
// type says otherwise.
//
//   host -> worker: kSandbox (before kInit, with --sandbox), kInit (the
//                   plugin's settings), kTask, kCancel (the task id)
//   worker -> host: kReady or kInitFailed (a reason), then per task
//                   kStarted, kProgress, kLog, kDone; kDenied (the number of
//                   a system call the sandbox stopped) just before it exits
//
// Progress, log and done frames name their task: one from an earlier task
// (a thread or process the plugin left behind) is not the running task's.
//
// After each kCancel the host sends the worker process kCancelSignal: the
// C++ worker reads its tasks on its main thread and has a thread read the
// socket only when told a cancel waits there. SIGURG's default action is
// to ignore it, so a worker that reads its socket another way (the Python
// one, on a reader thread) is not disturbed.
//
// Thread safety: the functions are reentrant; one writer at a time per fd.
#pragma once

#include <csignal>
#include <cstdint>
#include <string>

#include <msgpack.hpp>

namespace umi {

enum FrameType : uint8_t {
  kInit = 1, kReady, kInitFailed, kTask, kCancel, kProgress, kDone, kStarted, kLog, kSandbox, kDenied
};

inline constexpr uint32_t kMaxFrameBytes = 1u << 30;
inline constexpr int kCancelSignal = SIGURG;

// False when the peer is gone.
bool WriteFrame(int fd, FrameType type, const std::string& payload);
// False on EOF, error or an oversized frame.
bool ReadFrame(int fd, FrameType& type, std::string& payload);

// msgpack bytes from `fill(packer)`.
template <typename Fill>
std::string Pack(Fill fill) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  fill(packer);
  return std::string(buffer.data(), buffer.size());
}

// A kDone payload for a failed task.
std::string ErrorPayload(const std::string& code, const std::string& message);

}  // namespace umi
