// checksum: streaming SHA-256 (OpenSSL) and XXH3-64 (xxHash) of a file.
//   input:  {"path": "..."}
//   output: {"path", "bytes", "sha256", "xxh3"} (hex digests)
//   errors: not_found, unreadable, unsupported (a directory, FIFO or device)
#include <openssl/evp.h>
#include <xxhash.h>

#include <umi/plugin.hpp>

#include "media_paths.h"

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

namespace {

std::string Hex(const unsigned char* bytes, size_t size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex;
  for (size_t i = 0; i < size; ++i) {
    hex += kDigits[bytes[i] >> 4];
    hex += kDigits[bytes[i] & 15];
  }
  return hex;
}

}  // namespace

class Checksum : public umi::Plugin {
 public:
  static umi::PluginInfo Info() {
    umi::PluginInfo info;
    info.name = "checksum";
    info.version = "1.0.0";
    info.description = "SHA-256 and XXH3-64 of a file, streamed";
    info.license = "MIT";
    info.requirement = {.cpu_cores = 1.0, .cpu_threads = 1, .memory_mb = 64};
    info.settings = umi::media::MediaPathSettings();
    return info;
  }

  explicit Checksum(const umi::Settings& settings) : paths_(settings, "checksum") {}

  void Process(umi::TaskContext& task) override {
    const std::string path = paths_.Readable(task.input().Require<std::string>("path"));
    const umi::media::FileDescriptor file = umi::media::OpenRegular(path);
    struct stat info {};
    if (fstat(file.get(), &info) != 0) throw umi::Error("unreadable", path + ": " + std::strerror(errno));
    const auto size = static_cast<uint64_t>(info.st_size);

    std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> sha(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
    std::unique_ptr<XXH3_state_t, XXH_errorcode (*)(XXH3_state_t*)> xxh(XXH3_createState(), &XXH3_freeState);
    if (!sha || !xxh || EVP_DigestInit_ex(sha.get(), EVP_sha256(), nullptr) != 1 ||
        XXH3_64bits_reset(xxh.get()) != XXH_OK) {
      throw umi::Error("plugin_error", "cannot initialise the hash state");
    }
    std::vector<unsigned char> buffer(1 << 20);
    uint64_t done = 0;
    while (true) {
      const ssize_t n = read(file.get(), buffer.data(), buffer.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw umi::Error("unreadable", path + ": " + std::strerror(errno));
      if (n == 0) break;
      EVP_DigestUpdate(sha.get(), buffer.data(), static_cast<size_t>(n));
      XXH3_64bits_update(xxh.get(), buffer.data(), static_cast<size_t>(n));
      done += static_cast<uint64_t>(n);
      if (task.cancelled()) return;  // the host reports timeout or cancelled
      if (size > 0) task.Progress(static_cast<double>(done) / static_cast<double>(size));
    }

    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_size = 0;
    EVP_DigestFinal_ex(sha.get(), digest, &digest_size);
    XXH64_canonical_t canonical;
    XXH64_canonicalFromHash(&canonical, XXH3_64bits_digest(xxh.get()));
    task.output()
        .Set("path", path)
        .Set("bytes", done)
        .Set("sha256", Hex(digest, digest_size))
        .Set("xxh3", Hex(canonical.digest, sizeof(canonical.digest)));
  }

 private:
  umi::media::MediaPaths paths_;
};

UMI_DECLARE_PLUGIN(Checksum)
