#include "runtime/worker_frames.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace umi {

namespace {

bool WriteAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

bool ReadAll(int fd, char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = read(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

bool WriteFrame(int fd, FrameType type, const std::string& payload) {
  char header[5];
  header[0] = static_cast<char>(type);
  const uint32_t length = static_cast<uint32_t>(payload.size());
  std::memcpy(header + 1, &length, sizeof(length));
  return WriteAll(fd, header, sizeof(header)) && WriteAll(fd, payload.data(), payload.size());
}

bool ReadFrame(int fd, FrameType& type, std::string& payload) {
  char header[5];
  if (!ReadAll(fd, header, sizeof(header))) return false;
  type = static_cast<FrameType>(header[0]);
  uint32_t length = 0;
  std::memcpy(&length, header + 1, sizeof(length));
  if (length > kMaxFrameBytes) return false;
  payload.resize(length);
  return ReadAll(fd, payload.data(), length);
}

std::string ErrorPayload(const std::string& code, const std::string& message) {
  return Pack([&](auto& p) {
    p.pack_map(3);
    p.pack("ok").pack(false);
    p.pack("code").pack(code);
    p.pack("message").pack(message);
  });
}

}  // namespace umi
