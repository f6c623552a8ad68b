// MediaPaths: where a media plugin may read and write, from its settings
// (plugins.<name>.settings in the host's YAML):
//
//   media_roots: [dir, ...]   read only files beneath these directories
//   output_root: dir          write only beneath this directory
//
// Paths are resolved (symlinks, "..", relative parts) before they are
// checked, so neither "../" nor a symlink leads out; the resolved path is
// the one opened. An output whose final component is a symlink is refused.
// Unset: no confinement (the host's own permissions apply). A refusal ends
// the task `error` with code `forbidden`.
//
// Thread safety: immutable after construction.
#pragma once

#include <umi/plugin.hpp>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace umi::media {

class MediaPaths {
 public:
  MediaPaths() = default;
  explicit MediaPaths(const umi::Settings& settings) {
    if (settings.Has("media_roots")) {
      for (const std::string& root : settings.Require<std::vector<std::string>>("media_roots")) {
        read_roots_.push_back(Directory(root, "media_roots"));
      }
    }
    if (settings.Has("output_root")) write_root_ = Directory(settings.Require<std::string>("output_root"), "output_root");
  }

  // The resolved path to open for reading.
  std::string Readable(const std::string& path) const {
    if (read_roots_.empty()) return path;
    std::error_code error;
    const std::filesystem::path real = std::filesystem::canonical(path, error);
    if (error) throw umi::Error(error == std::errc::no_such_file_or_directory ? "not_found" : "unreadable",
                                path + ": " + error.message());
    for (const auto& root : read_roots_) {
      if (Beneath(real, root)) return real.string();
    }
    throw umi::Error("forbidden", path + " is outside the plugin's media_roots");
  }

  // The resolved path to write.
  std::string Writable(const std::string& path) const {
    if (!write_root_) return path;
    const std::filesystem::path wanted(path);
    std::error_code error;
    const std::filesystem::path parent = std::filesystem::canonical(
        wanted.parent_path().empty() ? std::filesystem::path(".") : wanted.parent_path(), error);
    if (error) throw umi::Error("forbidden", path + ": its directory does not resolve: " + error.message());
    if (std::filesystem::is_symlink(std::filesystem::symlink_status(wanted, error))) {
      throw umi::Error("forbidden", path + " is a symlink; outputs are written only to plain paths");
    }
    const std::filesystem::path real = parent / wanted.filename();
    if (!Beneath(real, *write_root_)) throw umi::Error("forbidden", path + " is outside the plugin's output_root");
    return real.string();
  }

 private:
  static std::filesystem::path Directory(const std::string& dir, const char* key) {
    std::error_code error;
    std::filesystem::path real = std::filesystem::canonical(dir, error);
    if (error || !std::filesystem::is_directory(real)) {
      throw umi::Error("bad_settings", std::string(key) + ": '" + dir + "' is not a directory");
    }
    return real;
  }
  static bool Beneath(const std::filesystem::path& path, const std::filesystem::path& root) {
    return std::mismatch(root.begin(), root.end(), path.begin(), path.end()).first == root.end();
  }

  std::vector<std::filesystem::path> read_roots_;
  std::optional<std::filesystem::path> write_root_;
};

}  // namespace umi::media
