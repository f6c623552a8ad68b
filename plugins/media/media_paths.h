// MediaPaths: where a media plugin may read and write, from its settings
// (plugins.<name>.settings in the host's YAML):
//
//   media_roots: [dir, ...]   read only files beneath these directories
//   output_root: dir          write only beneath this directory
//
// Paths are resolved (symlinks, "..", relative parts) before they are
// checked, so neither "../" nor a symlink leads out; the resolved path is
// the one opened. An output whose final component is a symlink is refused.
// Unset: nothing is read (or written), and the refusal names the setting
// to add; `media_roots: [/]` is how a config says "anywhere". A refusal
// ends the task `error` with code `forbidden`.
//
// Only regular files are read: a FIFO, device or directory would block in
// open() or read() beyond the reach of timeout_ms and cancel, so OpenRegular
// opens without blocking and refuses anything else as `unsupported`.
//
// Thread safety: immutable after construction.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <umi/plugin.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace umi::media {

// An open file descriptor, closed on destruction.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(FileDescriptor&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  FileDescriptor& operator=(FileDescriptor&&) = delete;
  ~FileDescriptor() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

inline const char* FileKind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode) || S_ISBLK(mode)) return "a device";
  return "not a regular file";
}

// Opens `path` for reading if it is a regular file. O_NONBLOCK keeps open()
// of a FIFO from waiting for a writer; the check is on the opened
// descriptor, so a file swapped after the check is never the one read.
inline FileDescriptor OpenRegular(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    const int error = errno;
    throw umi::Error(error == ENOENT || error == ENOTDIR ? "not_found" : "unreadable", path + ": " + std::strerror(error));
  }
  FileDescriptor file(fd);
  struct stat info {};
  if (fstat(fd, &info) != 0) throw umi::Error("unreadable", path + ": " + std::strerror(errno));
  if (!S_ISREG(info.st_mode)) {
    throw umi::Error("unsupported", path + " is " + FileKind(info.st_mode) + "; only regular files are read");
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return file;
}

// The settings MediaPaths reads, for a media plugin's Info().settings.
inline std::vector<umi::SettingInfo> MediaPathSettings() {
  return {{"media_roots", "list of directories", "read only files beneath these (unset: none; [/] for anywhere)"},
          {"output_root", "directory", "write only beneath this (unset: nowhere)"}};
}

class MediaPaths {
 public:
  // `plugin`: its name, for the setting a refusal says to add.
  MediaPaths(const umi::Settings& settings, std::string plugin) : plugin_(std::move(plugin)) {
    if (settings.Has("media_roots")) {
      for (const std::string& root : settings.Require<std::vector<std::string>>("media_roots")) {
        read_roots_.push_back(Directory(root, "media_roots"));
      }
    }
    if (settings.Has("output_root")) write_root_ = Directory(settings.Require<std::string>("output_root"), "output_root");
  }

  // The resolved path to open for reading.
  std::string Readable(const std::string& path) const {
    if (read_roots_.empty()) {
      throw umi::Error("forbidden", path + ": " + plugin_ + " reads only beneath its media_roots, and none is set (add "
                                    "plugins." + plugin_ + ".settings.media_roots: [dir, ...] to the host's config; "
                                    "[/] allows every file)");
    }
    std::error_code error;
    const std::filesystem::path real = std::filesystem::canonical(path, error);
    if (error) throw umi::Error(error == std::errc::no_such_file_or_directory ? "not_found" : "unreadable",
                                path + ": " + error.message());
    for (const auto& root : read_roots_) {
      if (Beneath(real, root)) return real.string();
    }
    throw umi::Error("forbidden", path + " is outside the plugin's media_roots" + Missing(read_roots_, "media_roots"));
  }

  // The resolved path to write.
  std::string Writable(const std::string& path) const {
    if (!write_root_) {
      throw umi::Error("forbidden", path + ": " + plugin_ + " writes only beneath its output_root, and none is set (add "
                                    "plugins." + plugin_ + ".settings.output_root: dir to the host's config)");
    }
    const std::filesystem::path wanted(path);
    std::error_code error;
    const std::filesystem::path parent = std::filesystem::canonical(
        wanted.parent_path().empty() ? std::filesystem::path(".") : wanted.parent_path(), error);
    if (error) throw umi::Error("forbidden", path + ": its directory does not resolve: " + error.message());
    if (std::filesystem::is_symlink(std::filesystem::symlink_status(wanted, error))) {
      throw umi::Error("forbidden", path + " is a symlink; outputs are written only to plain paths");
    }
    const std::filesystem::path real = parent / wanted.filename();
    if (!Beneath(real, *write_root_)) {
      throw umi::Error("forbidden", path + " is outside the plugin's output_root" + Missing({*write_root_}, "output_root"));
    }
    return real.string();
  }

 private:
  // A root that does not exist (yet: a data directory made later) is kept
  // as written and named when a path is refused; one that is not a
  // directory is a bad setting.
  static std::filesystem::path Directory(const std::string& dir, const char* key) {
    std::error_code error;
    if (!std::filesystem::exists(dir, error)) return std::filesystem::absolute(dir, error).lexically_normal();
    std::filesystem::path real = std::filesystem::canonical(dir, error);
    if (error || !std::filesystem::is_directory(real)) {
      throw umi::Error("bad_settings", std::string(key) + ": '" + dir + "' is not a directory");
    }
    return real;
  }
  // " (its media_roots entry '/x' does not exist)" for each missing root.
  static std::string Missing(const std::vector<std::filesystem::path>& roots, const char* key) {
    std::string missing;
    std::error_code error;
    for (const auto& root : roots) {
      if (!std::filesystem::exists(root, error)) missing += std::string(" (its ") + key + " '" + root.string() + "' does not exist)";
    }
    return missing;
  }
  static bool Beneath(const std::filesystem::path& path, const std::filesystem::path& root) {
    return std::mismatch(root.begin(), root.end(), path.begin(), path.end()).first == root.end();
  }

  std::string plugin_;
  std::vector<std::filesystem::path> read_roots_;
  std::optional<std::filesystem::path> write_root_;
};

}  // namespace umi::media
