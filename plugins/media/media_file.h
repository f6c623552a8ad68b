// MediaFile: an opened input and its best video stream's decoder, shared by
// the media plugins. Failures become umi::Error with the plugin codes:
// not_found, unreadable, unsupported (not media FFmpeg knows), corrupt.
//
// Thread safety: one per task.
#pragma once

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libswscale/swscale.h>
}

#include <umi/plugin.hpp>

#include <functional>
#include <memory>
#include <string>

namespace umi::media {

inline std::string AvError(int code) {
  char text[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(code, text, sizeof(text));
  return text;
}

class MediaFile {
 public:
  // Opens `path`; cancellation of `task` interrupts blocking I/O.
  MediaFile(const std::string& path, const umi::TaskContext& task) : path_(path) {
    av_log_set_level(AV_LOG_ERROR);  // FFmpeg's chatter would go to the host's stderr
    format_ = avformat_alloc_context();
    if (!format_) throw umi::Error("plugin_error", "out of memory");
    format_->interrupt_callback = {&Interrupted, const_cast<umi::TaskContext*>(&task)};
    if (const int error = avformat_open_input(&format_, path.c_str(), nullptr, nullptr); error < 0) {
      format_ = nullptr;  // freed by avformat_open_input
      if (error == AVERROR(ENOENT)) throw umi::Error("not_found", path + ": " + AvError(error));
      if (error == AVERROR(EACCES)) throw umi::Error("unreadable", path + ": " + AvError(error));
      throw umi::Error("unsupported", path + ": " + AvError(error));
    }
    if (const int error = avformat_find_stream_info(format_, nullptr); error < 0) {
      throw umi::Error("corrupt", path + ": " + AvError(error));
    }
  }
  ~MediaFile() {
    avcodec_free_context(&decoder_);
    avformat_close_input(&format_);
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

  // Opens the best video stream's decoder with `threads` threads.
  void OpenVideo(int threads) {
    const AVCodec* codec = nullptr;
    video_index_ = av_find_best_stream(format_, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (video_index_ < 0 || !codec) throw umi::Error("unsupported", path_ + ": no video stream FFmpeg can decode");
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
  static int Interrupted(void* opaque) { return static_cast<umi::TaskContext*>(opaque)->cancelled() ? 1 : 0; }

  std::string path_;
  AVFormatContext* format_ = nullptr;
  AVCodecContext* decoder_ = nullptr;
  int video_index_ = -1;
};

}  // namespace umi::media
