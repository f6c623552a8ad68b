// file_stats: {"path": "..."} -> {"bytes", "lines", "entropy_bits", "threads"}
//
// Reads the file in chunks on every thread the pool granted, reports
// progress per chunk, stops when cancelled, and maps failures to stable
// error codes (not_found, unreadable). YAML settings:
//   plugins: {file_stats: {settings: {chunk_kb: 1024}}}
#include <umi/plugin.hpp>

#include <array>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

namespace {

using Histogram = std::array<uint64_t, 256>;

// Per-worker scratch space, reused across the tasks that worker runs.
struct Scratch {
  std::vector<std::vector<char>> buffers;
};

}  // namespace

class FileStats : public umi::Plugin {
 public:
  using Instance = Scratch;

  static umi::PluginInfo Info() {
    umi::PluginInfo info;
    info.name = "file_stats";
    info.version = "1.0.0";
    info.description = "Byte count, line count and byte entropy of a file, multi-threaded";
    info.license = "MIT";
    info.requirement = {.cpu_cores = 1.0, .cpu_threads = 2, .memory_mb = 64};
    return info;
  }

  explicit FileStats(const umi::Settings& settings)
      : chunk_bytes_(settings.Get<int64_t>("chunk_kb", 1024) * 1024) {
    if (chunk_bytes_ <= 0) throw umi::Error("bad_settings", "chunk_kb must be positive");
  }

  void Process(umi::TaskContext& task) override {
    const std::filesystem::path path = task.input().Require<std::string>("path");
    std::error_code error;
    const auto size = std::filesystem::file_size(path, error);
    if (error) throw umi::Error("not_found", path.string() + ": " + error.message());

    const int64_t chunks = (static_cast<int64_t>(size) + chunk_bytes_ - 1) / chunk_bytes_;
    const int threads = std::max(1, std::min<int>(task.threads(), static_cast<int>(std::max<int64_t>(chunks, 1))));
    Scratch& scratch = task.instance<Scratch>();
    scratch.buffers.resize(static_cast<size_t>(threads));

    std::atomic<int64_t> next_chunk{0}, done_chunks{0};
    std::vector<Histogram> histograms(static_cast<size_t>(threads), Histogram{});
    std::atomic<bool> unreadable{false};
    std::mutex progress_mutex;

    auto work = [&](int worker) {
      std::ifstream file(path, std::ios::binary);
      if (!file) return void(unreadable = true);
      std::vector<char>& buffer = scratch.buffers[static_cast<size_t>(worker)];
      buffer.resize(static_cast<size_t>(chunk_bytes_));
      for (int64_t chunk; (chunk = next_chunk++) < chunks && !task.cancelled();) {
        file.seekg(chunk * chunk_bytes_);
        file.read(buffer.data(), chunk_bytes_);
        for (std::streamsize i = 0; i < file.gcount(); ++i) {
          ++histograms[static_cast<size_t>(worker)][static_cast<unsigned char>(buffer[static_cast<size_t>(i)])];
        }
        file.clear();
        const int64_t done = ++done_chunks;
        std::lock_guard lock(progress_mutex);
        task.Progress(static_cast<double>(done) / static_cast<double>(chunks));
      }
    };
    std::vector<std::jthread> helpers;
    for (int worker = 1; worker < threads; ++worker) helpers.emplace_back(work, worker);
    work(0);
    helpers.clear();
    if (unreadable) throw umi::Error("unreadable", path.string() + ": cannot open for reading");
    if (task.cancelled()) return;  // the host reports timeout or cancelled

    Histogram total{};
    for (const Histogram& h : histograms) {
      for (size_t b = 0; b < total.size(); ++b) total[b] += h[b];
    }
    double entropy = 0;
    for (uint64_t count : total) {
      if (count == 0) continue;
      const double p = static_cast<double>(count) / static_cast<double>(size);
      entropy -= p * std::log2(p);
    }
    task.output()
        .Set("bytes", static_cast<uint64_t>(size))
        .Set("lines", total['\n'])
        .Set("entropy_bits", entropy)
        .Set("threads", threads);
  }

 private:
  int64_t chunk_bytes_;
};

UMI_DECLARE_PLUGIN(FileStats)
