#include "transport/curve_auth.h"

#include <sys/stat.h>

#include <spdlog/spdlog.h>
#include <zmq_addon.hpp>

#include <fstream>
#include <sstream>

namespace umi {
namespace {

bool IsZ85Key(const std::string& text) {
  uint8_t decoded[32];
  return text.size() == 40 && zmq_z85_decode(decoded, text.c_str()) != nullptr;
}

}  // namespace

StatusOr<CurveKeyPair> ReadCurveKeyPair(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) return Status(ErrorCode::kIoError, file.string() + ": cannot read the key file");
  CurveKeyPair keys;
  for (std::string line; std::getline(in, line);) {
    std::istringstream words(line);
    std::string kind, key;
    words >> kind >> key;
    if (kind == "public") keys.public_z85 = key;
    if (kind == "secret") keys.secret_z85 = key;
  }
  if (!IsZ85Key(keys.public_z85) || !IsZ85Key(keys.secret_z85)) {
    return Status(ErrorCode::kIoError, file.string() +
                                         ": expected lines 'public <40 Z85 chars>' and 'secret <40 Z85 chars>' "
                                         "(make one with umi-host keygen)");
  }
  return keys;
}

StatusOr<std::set<std::string>> ReadCurvePublicKeys(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) return Status(ErrorCode::kIoError, file.string() + ": cannot read the public key file");
  std::set<std::string> keys;
  int number = 0;
  for (std::string line; std::getline(in, line);) {
    ++number;
    std::istringstream words(line);
    std::string key;
    words >> key;
    if (key.empty() || key[0] == '#') continue;
    if (!IsZ85Key(key)) {
      return Status(ErrorCode::kIoError, file.string() + ":" + std::to_string(number) +
                                                    ": not a Z85 public key (40 characters)");
    }
    keys.insert(key);
  }
  return keys;
}

Status WriteCurveKeyPair(const std::string& prefix, CurveKeyPair* written) {
  char public_key[41], secret_key[41];
  if (zmq_curve_keypair(public_key, secret_key) != 0) {
    return Status(ErrorCode::kUnavailable, std::string("cannot make a CURVE key pair: ") + zmq_strerror(zmq_errno()) +
                                               " (libzmq built without libsodium?)");
  }
  const std::string key_file = prefix + ".key", pub_file = prefix + ".pub";
  const mode_t old_mask = umask(077);
  std::ofstream key(key_file, std::ios::trunc);
  umask(old_mask);
  key << "public " << public_key << "\nsecret " << secret_key << "\n";
  std::ofstream pub(pub_file, std::ios::trunc);
  pub << public_key << "\n";
  if (!key || !pub) return Status(ErrorCode::kIoError, "cannot write " + key_file + " and " + pub_file);
  if (written) *written = {public_key, secret_key};
  return {};
}

ZapHandler::ZapHandler(zmq::context_t& context, std::set<std::string> authorized_z85)
    : socket_(context, zmq::socket_type::rep), authorized_(std::move(authorized_z85)) {
  socket_.set(zmq::sockopt::linger, 0);
  socket_.bind("inproc://zeromq.zap.01");
  thread_ = std::thread([this] { Serve(); });
}

ZapHandler::~ZapHandler() {
  stop_ = true;
  thread_.join();
}

void ZapHandler::Serve() {
  while (!stop_) {
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
    // The tick bounds how long the destructor waits.
    if (zmq::poll(&item, 1, std::chrono::milliseconds(100)) == 0) continue;
    std::vector<zmq::message_t> request;
    if (!zmq::recv_multipart(socket_, std::back_inserter(request), zmq::recv_flags::dontwait)) continue;
    // version, request id, domain, address, identity, mechanism, credentials...
    std::string status = "400", text = "unknown client key";
    std::string client;
    if (request.size() >= 7 && request[5].to_string() == "CURVE" && request[6].size() == 32) {
      char z85[41];
      zmq_z85_encode(z85, static_cast<const uint8_t*>(request[6].data()), 32);
      client = z85;
      if (authorized_.count(client)) status = "200", text = "OK";
    } else if (request.size() >= 6) {
      text = "mechanism " + request[5].to_string() + " is not allowed";
    }
    if (status != "200") {
      ++refused_;
      spdlog::warn("refused a connection from {}: {}{}", request.size() > 3 ? request[3].to_string() : "?", text,
                   client.empty() ? "" : " " + client);
    }
    const std::string version = "1.0", request_id = request.size() > 1 ? request[1].to_string() : "";
    std::array<zmq::const_buffer, 6> reply = {zmq::buffer(version), zmq::buffer(request_id), zmq::buffer(status),
                                               zmq::buffer(text),    zmq::buffer(client),     zmq::const_buffer()};
    zmq::send_multipart(socket_, reply);
  }
}

}  // namespace umi
