// MediaFile: an opened input and its best video stream's decoder, shared by
// the media plugins. Failures become umi::Error with the plugin codes:
// not_found, unreadable, unsupported (not media FFmpeg knows, or not a
// regular file, or a format that names other files), corrupt, bad_input
// (frames larger than the task's memory grant), out_of_memory.
//
// Thread safety: one per task.
#pragma once

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/avstring.h>
#include <libswscale/swscale.h>
}

#include <umi/plugin.hpp>

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "media_paths.h"

namespace umi::media {

inline std::string AvError(int code) {
  char text[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(code, text, sizeof(text));
  return text;
}

// Demuxers that open other files or URLs named inside the input (playlists,
// concat lists, manifests, image sequences, subtitle pairs, network sessions,
// scripts). They would let a file inside media_roots read one outside it.
inline constexpr const char* kReferencingDemuxers[] = {
    "hls", "applehttp", "concat", "dash", "imf", "image2", "sdp", "rtsp", "rtp", "vobsub", "avisynth", "vapoursynth",
};

// Every demuxer this FFmpeg has, less the referencing ones, comma-separated
// (avformat's `format_whitelist`).
inline const std::string& AllowedDemuxers() {
  static const std::string allowed = [] {
    std::string list;
    void* opaque = nullptr;
    while (const AVInputFormat* format = av_demuxer_iterate(&opaque)) {
      const std::string name = format->name;
      bool referencing = false;
      for (const char* banned : kReferencingDemuxers) {
        if (av_match_name(banned, format->name)) referencing = true;
      }
      if (!referencing) list += (list.empty() ? "" : ",") + name;
    }
    return list;
  }();
  return allowed;
}

// The bytes of the task's memory grant; 0: none declared.
inline int64_t MemoryBudget(const umi::TaskContext& task) { return std::max<int64_t>(0, task.memory_mb()) << 20; }

// Refuses (bad_input) a buffer of `bytes` that the task's memory grant cannot hold.
inline void RequireFits(const umi::TaskContext& task, double bytes, const std::string& what) {
  const int64_t budget = MemoryBudget(task);
  if (budget > 0 && bytes > static_cast<double>(budget)) {
    throw umi::Error("bad_input", what + " needs " + std::to_string(static_cast<int64_t>(bytes / (1 << 20))) +
                                      " MB, more than the task's memory_mb=" + std::to_string(task.memory_mb()));
  }
}

class MediaFile {
 public:
  // Opens the regular file `path` (already resolved by MediaPaths) through
  // its own descriptor: FFmpeg opens nothing by name, so neither a FIFO nor
  // a playlist entry naming another file can be read. Cancellation of `task`
  // interrupts blocking calls.
  MediaFile(const std::string& path, const umi::TaskContext& task) : path_(path), file_(OpenRegular(path)) {
    av_log_set_level(AV_LOG_ERROR);  // FFmpeg's chatter would go to the host's stderr
    format_ = avformat_alloc_context();
    auto* buffer = static_cast<unsigned char*>(av_malloc(kIoBufferBytes));
    if (buffer) io_ = avio_alloc_context(buffer, kIoBufferBytes, 0, this, &Read, nullptr, &Seek);
    if (!format_ || !io_) {
      if (!io_) av_free(buffer);
      avformat_free_context(std::exchange(format_, nullptr));
      throw umi::Error("out_of_memory", "cannot allocate the demuxer");
    }
    format_->pb = io_;
    format_->flags |= AVFMT_FLAG_CUSTOM_IO;
    format_->io_open = &RefuseOpen;
    format_->interrupt_callback = {&Interrupted, const_cast<umi::TaskContext*>(&task)};
    AVDictionary* options = nullptr;
    av_dict_set(&options, "format_whitelist", AllowedDemuxers().c_str(), 0);
    av_dict_set(&options, "protocol_whitelist", "file", 0);
    // No name: demuxers are chosen by content, never by an extension that
    // would make FFmpeg open the path itself (image2).
    const int opened = avformat_open_input(&format_, "", nullptr, &options);
    av_dict_free(&options);
    if (opened < 0) {
      format_ = nullptr;  // freed by avformat_open_input
      FreeIo();
      throw umi::Error(opened == AVERROR(ENOMEM) ? "out_of_memory" : "unsupported", path + ": " + AvError(opened));
    }
    if (const int error = avformat_find_stream_info(format_, nullptr); error < 0) {
      throw umi::Error("corrupt", path + ": " + AvError(error));
    }
  }
  ~MediaFile() {
    avcodec_free_context(&decoder_);
    avformat_close_input(&format_);
    FreeIo();
  }
  MediaFile(const MediaFile&) = delete;
  MediaFile& operator=(const MediaFile&) = delete;

  AVFormatContext* format() { return format_; }
  // The container's duration in seconds; 0 when unknown.
  double Duration() const {
    return format_->duration == AV_NOPTS_VALUE ? 0.0 : static_cast<double>(format_->duration) / AV_TIME_BASE;
  }
  AVStream* video() { return format_->streams[video_index_]; }
  AVCodecContext* decoder() { return decoder_; }

  // Opens the best video stream's decoder with `threads` threads, if the
  // task's memory grant can hold the frames it will decode.
  void OpenVideo(const umi::TaskContext& task, int threads) {
    const AVCodec* codec = nullptr;
    video_index_ = av_find_best_stream(format_, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (video_index_ < 0 || !codec) throw umi::Error("unsupported", path_ + ": no video stream FFmpeg can decode");
    const AVCodecParameters* stream = video()->codecpar;
    // Up to 8 bytes a pixel (16-bit RGBA), a frame per decoder thread and
    // two more for reference and output.
    RequireFits(task, 8.0 * stream->width * stream->height * (std::max(1, threads) + 2),
                path_ + ": decoding " + std::to_string(stream->width) + "x" + std::to_string(stream->height) + " video");
    decoder_ = avcodec_alloc_context3(codec);
    avcodec_parameters_to_context(decoder_, video()->codecpar);
    decoder_->thread_count = std::max(1, threads);
    if (const int error = avcodec_open2(decoder_, codec, nullptr); error < 0) {
      throw umi::Error("unsupported", path_ + ": cannot open the decoder: " + AvError(error));
    }
  }

  // Calls `on_frame` for every decoded video frame until it returns false,
  // the file ends or the task is cancelled.
  void DecodeVideo(const umi::TaskContext& task, const std::function<bool(AVFrame*)>& on_frame) {
    std::unique_ptr<AVPacket, void (*)(AVPacket*)> packet(av_packet_alloc(), [](AVPacket* p) { av_packet_free(&p); });
    std::unique_ptr<AVFrame, void (*)(AVFrame*)> frame(av_frame_alloc(), [](AVFrame* f) { av_frame_free(&f); });
    bool more = true;
    while (more && !task.cancelled()) {
      const int read = av_read_frame(format_, packet.get());
      if (read == AVERROR_EOF) {
        avcodec_send_packet(decoder_, nullptr);  // drain
      } else if (read < 0) {
        throw umi::Error("corrupt", path_ + ": " + AvError(read));
      } else if (packet->stream_index != video_index_) {
        av_packet_unref(packet.get());
        continue;
      } else {
        const int sent = avcodec_send_packet(decoder_, packet.get());
        av_packet_unref(packet.get());
        if (sent < 0 && sent != AVERROR(EAGAIN)) throw umi::Error("corrupt", path_ + ": " + AvError(sent));
      }
      while (more) {
        const int received = avcodec_receive_frame(decoder_, frame.get());
        if (received == AVERROR(EAGAIN)) break;
        if (received == AVERROR_EOF) return;
        if (received < 0) throw umi::Error("corrupt", path_ + ": " + AvError(received));
        more = on_frame(frame.get());
        av_frame_unref(frame.get());
      }
    }
  }

  double Seconds(int64_t pts) const {
    return pts == AV_NOPTS_VALUE ? 0.0 : static_cast<double>(pts) * av_q2d(format_->streams[video_index_]->time_base);
  }

 private:
  static constexpr int kIoBufferBytes = 64 * 1024;

  static int Interrupted(void* opaque) { return static_cast<umi::TaskContext*>(opaque)->cancelled() ? 1 : 0; }

  static int Read(void* opaque, uint8_t* buffer, int size) {
    const ssize_t n = read(static_cast<MediaFile*>(opaque)->file_.get(), buffer, static_cast<size_t>(size));
    if (n < 0) return AVERROR(errno);
    return n == 0 ? AVERROR_EOF : static_cast<int>(n);
  }

  static int64_t Seek(void* opaque, int64_t offset, int whence) {
    const int fd = static_cast<MediaFile*>(opaque)->file_.get();
    if (whence & AVSEEK_SIZE) {
      struct stat info {};
      return fstat(fd, &info) == 0 ? static_cast<int64_t>(info.st_size) : AVERROR(errno);
    }
    const off_t at = lseek(fd, offset, whence & ~AVSEEK_FORCE);
    return at < 0 ? AVERROR(errno) : static_cast<int64_t>(at);
  }

  // Nested opens (playlist entries, sidecar files) are never allowed.
  static int RefuseOpen(AVFormatContext*, AVIOContext**, const char*, int, AVDictionary**) { return AVERROR(EPERM); }

  void FreeIo() {
    if (!io_) return;
    av_freep(&io_->buffer);
    avio_context_free(&io_);
  }

  std::string path_;
  FileDescriptor file_;
  AVIOContext* io_ = nullptr;
  AVFormatContext* format_ = nullptr;
  AVCodecContext* decoder_ = nullptr;
  int video_index_ = -1;
};

}  // namespace umi::media
