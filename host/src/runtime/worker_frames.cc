#include "runtime/worker_frames.h"

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace umi {

namespace {

// One sendmsg for the header and the payload: the peer wakes once, to a
// whole frame, not to a header whose payload is still on its way.
bool SendAll(int fd, iovec* parts, size_t count) {
  while (count > 0) {
    msghdr message{};
    message.msg_iov = parts;
    message.msg_iovlen = count;
    ssize_t n = sendmsg(fd, &message, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    while (count > 0 && static_cast<size_t>(n) >= parts->iov_len) {
      n -= static_cast<ssize_t>(parts->iov_len);
      ++parts;
      --count;
    }
    if (count > 0) {
      parts->iov_base = static_cast<char*>(parts->iov_base) + n;
      parts->iov_len -= static_cast<size_t>(n);
    }
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
  iovec parts[2] = {{header, sizeof(header)}, {const_cast<char*>(payload.data()), payload.size()}};
  return SendAll(fd, parts, payload.empty() ? 1 : 2);
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
