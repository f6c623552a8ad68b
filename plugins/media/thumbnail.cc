// thumbnail: one frame of a video, scaled keeping its aspect, as JPEG or PNG.
//   input:  {"path", "at" (seconds, default 0) | "at_fraction" (0..1 of the
//            duration), "width" (default 320), "format": "jpeg"|"png"
//            (default jpeg), "output" (default <path minus extension>.thumb.<ext>)}
//   output: {"output", "width", "height", "timestamp" (seconds of the frame)}
//   errors: not_found, unreadable, unsupported, corrupt, bad_input (also a
//           thumbnail over 8192 pixels a side or over the task's memory_mb),
//           out_of_memory
#include <umi/plugin.hpp>

#include "media_paths.h"

#include <cmath>
#include <filesystem>
#include <fstream>

#include "media_file.h"

namespace {

using FramePtr = std::unique_ptr<AVFrame, void (*)(AVFrame*)>;
FramePtr NewFrame() {
  return FramePtr(av_frame_alloc(), [](AVFrame* f) { av_frame_free(&f); });
}

}  // namespace

class Thumbnail : public umi::Plugin {
 public:
  // The widest and tallest thumbnail written.
  static constexpr int64_t kMaxSide = 8192;

  static umi::PluginInfo Info() {
    umi::PluginInfo info;
    info.name = "thumbnail";
    info.version = "1.0.0";
    info.description = "Decodes one frame at a time and writes it scaled as JPEG or PNG (libavcodec, libswscale)";
    info.license = "LGPL-2.1-or-later (FFmpeg)";
    info.requirement = {.cpu_cores = 1.0, .cpu_threads = 2, .memory_mb = 256};
    info.settings = umi::media::MediaPathSettings();
    return info;
  }

  explicit Thumbnail(const umi::Settings& settings) : paths_(settings, "thumbnail") {}

  void Process(umi::TaskContext& task) override {
    const auto& in = task.input();
    const std::string path = in.Require<std::string>("path");
    const std::string format = in.Get<std::string>("format", "jpeg");
    if (format != "jpeg" && format != "png") throw umi::Error("bad_input", "format must be jpeg or png");
    const int64_t wanted_width = in.Get<int64_t>("width", 320);
    if (wanted_width < 2 || wanted_width > kMaxSide) throw umi::Error("bad_input", "width must be 2..8192");
    const int width = static_cast<int>(wanted_width);
    const std::string output = in.Get<std::string>(
        "output", std::filesystem::path(path).replace_extension(format == "png" ? ".thumb.png" : ".thumb.jpg").string());

    umi::media::MediaFile file(paths_.Readable(path), task);
    file.OpenVideo(task, task.threads());
    double at = in.Get<double>("at", 0.0);
    if (in.Has("at_fraction")) at = in.Get<double>("at_fraction", 0.0) * file.Duration();
    if (at < 0) throw umi::Error("bad_input", "at must be >= 0");

    // Seek to the keyframe before `at`, then decode up to the frame at `at`.
    const int64_t target = static_cast<int64_t>(at / av_q2d(file.video()->time_base)) +
                           (file.video()->start_time == AV_NOPTS_VALUE ? 0 : file.video()->start_time);
    if (at > 0) av_seek_frame(file.format(), file.video()->index, target, AVSEEK_FLAG_BACKWARD);
    avcodec_flush_buffers(file.decoder());
    FramePtr chosen = NewFrame();
    bool have = false, reached = false;
    file.DecodeVideo(task, [&](AVFrame* frame) {
      av_frame_unref(chosen.get());
      av_frame_ref(chosen.get(), frame);
      have = true;
      reached = frame->best_effort_timestamp != AV_NOPTS_VALUE && frame->best_effort_timestamp >= target;
      return !reached && frame->best_effort_timestamp != AV_NOPTS_VALUE;
    });
    if (task.cancelled()) return;
    if (!have) throw umi::Error("corrupt", path + ": no frame could be decoded");
    if (!reached && at > 0) {
      if (file.Duration() > 0 && at >= file.Duration()) {
        throw umi::Error("bad_input",
                         "at=" + std::to_string(at) + " s is past the end (" + std::to_string(file.Duration()) + " s)");
      }
      throw umi::Error("corrupt", path + ": the data ends before " + std::to_string(at) + " s; truncated or damaged");
    }
    task.Progress(0.5, "decoded");

    if (chosen->width <= 0 || chosen->height <= 0) throw umi::Error("corrupt", path + ": the frame has no size");
    const double scaled_height = std::round(static_cast<double>(width) * chosen->height / chosen->width / 2.0) * 2;
    if (scaled_height > kMaxSide) {
      throw umi::Error("bad_input", path + ": a " + std::to_string(chosen->width) + "x" + std::to_string(chosen->height) +
                                        " frame at width " + std::to_string(width) + " would be " +
                                        std::to_string(static_cast<int64_t>(scaled_height)) + " pixels tall; the most is " +
                                        std::to_string(kMaxSide));
    }
    const int height = std::max(2, static_cast<int>(scaled_height));
    // The scaled frame and the encoder's copy of it, at 3 bytes a pixel.
    umi::media::RequireFits(task, 2.0 * 3 * width * height,
                            path + ": a " + std::to_string(width) + "x" + std::to_string(height) + " thumbnail");
    const AVPixelFormat pixels = format == "png" ? AV_PIX_FMT_RGB24 : AV_PIX_FMT_YUVJ420P;
    FramePtr scaled = NewFrame();
    scaled->format = pixels;
    scaled->width = width;
    scaled->height = height;
    if (av_frame_get_buffer(scaled.get(), 0) < 0) {
      throw umi::Error("out_of_memory", "cannot allocate a " + std::to_string(width) + "x" + std::to_string(height) +
                                            " frame for the thumbnail");
    }
    SwsContext* scaler = sws_getContext(chosen->width, chosen->height, static_cast<AVPixelFormat>(chosen->format),
                                        width, height, pixels, SWS_BICUBIC, nullptr, nullptr, nullptr);
    if (!scaler) throw umi::Error("unsupported", path + ": cannot scale this pixel format");
    sws_scale(scaler, chosen->data, chosen->linesize, 0, chosen->height, scaled->data, scaled->linesize);
    sws_freeContext(scaler);

    const AVCodec* codec = avcodec_find_encoder(format == "png" ? AV_CODEC_ID_PNG : AV_CODEC_ID_MJPEG);
    std::unique_ptr<AVCodecContext, void (*)(AVCodecContext*)> encoder(
        avcodec_alloc_context3(codec), [](AVCodecContext* c) { avcodec_free_context(&c); });
    encoder->width = width;
    encoder->height = height;
    encoder->pix_fmt = pixels;
    encoder->time_base = {1, 25};
    if (format == "jpeg") {
      encoder->flags |= AV_CODEC_FLAG_QSCALE;
      encoder->global_quality = FF_QP2LAMBDA * 3;
    }
    if (const int error = avcodec_open2(encoder.get(), codec, nullptr); error < 0) {
      throw umi::Error("plugin_error", "cannot open the " + format + " encoder: " + umi::media::AvError(error));
    }
    std::unique_ptr<AVPacket, void (*)(AVPacket*)> packet(av_packet_alloc(), [](AVPacket* p) { av_packet_free(&p); });
    if (avcodec_send_frame(encoder.get(), scaled.get()) < 0 || avcodec_send_frame(encoder.get(), nullptr) < 0 ||
        avcodec_receive_packet(encoder.get(), packet.get()) < 0) {
      throw umi::Error("plugin_error", "encoding the " + format + " failed");
    }
    std::ofstream out(paths_.Writable(output), std::ios::binary);
    out.write(reinterpret_cast<const char*>(packet->data), packet->size);
    if (!out) throw umi::Error("unwritable", output + ": cannot write");
    task.output()
        .Set("output", output)
        .Set("width", width)
        .Set("height", height)
        .Set("timestamp", file.Seconds(chosen->best_effort_timestamp - (file.video()->start_time == AV_NOPTS_VALUE ? 0 : file.video()->start_time)));
  }

 private:
  umi::media::MediaPaths paths_;
};

UMI_DECLARE_PLUGIN(Thumbnail)
