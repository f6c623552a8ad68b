// ZeroMQ CURVE for the host's sockets: key files, `umi-host keygen`, and a
// ZAP handler (RFC 27) that admits only listed client public keys.
//
// With `security.curve` configured, every host socket is a CURVE server:
// traffic is encrypted and a client must present a key listed in
// authorized_keys_file. Others fail the handshake and get nothing through;
// each refusal is logged and counted.
//
// Key file (keygen's PREFIX.key, mode 0600): "public <z85>\nsecret <z85>\n".
// Public key file (PREFIX.pub) and authorized_keys_file: one Z85 key per
// line; blank lines and '#' comments are ignored.
//
// Thread safety: the ZapHandler runs its own thread on the host's ZeroMQ
// context; construct it before binding, destroy it before the context.
#pragma once

#include <zmq.hpp>

#include <atomic>
#include <filesystem>
#include <set>
#include <string>
#include <thread>

#include "common/status_or.h"

namespace umi {

struct CurveKeyPair {
  std::string public_z85;
  std::string secret_z85;
};

StatusOr<CurveKeyPair> ReadCurveKeyPair(const std::filesystem::path& file);
StatusOr<std::set<std::string>> ReadCurvePublicKeys(const std::filesystem::path& file);
// Writes PREFIX.key (0600) and PREFIX.pub.
Status WriteCurveKeyPair(const std::string& prefix, CurveKeyPair* written = nullptr);

class ZapHandler {
 public:
  ZapHandler(zmq::context_t& context, std::set<std::string> authorized_z85);
  ~ZapHandler();
  uint64_t refused() const { return refused_.load(); }

 private:
  void Serve();

  zmq::socket_t socket_;
  std::set<std::string> authorized_;  // Z85 public keys
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> refused_{0};
  std::thread thread_;
};

}  // namespace umi
