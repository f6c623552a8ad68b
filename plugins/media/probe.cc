// probe: what a media file holds, read with libavformat (what ffprobe shows).
//   input:  {"path": "..."}
//   output: {"path", "format_name", "format_long_name", "duration", "bit_rate",
//            "streams": [{"index", "codec_type", "codec_name", "profile", "width",
//            "height", "pix_fmt", "avg_frame_rate", "frame_rate", "sample_rate",
//            "channels", "language"}]}  (fields that do not apply are absent)
//   errors: not_found, unreadable, unsupported (not media FFmpeg knows),
//           corrupt (recognised but unreadable streams)
extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/pixdesc.h>
}

#include <umi/plugin.hpp>

#include <map>
#include <string>
#include <vector>

namespace {

std::string AvError(int code) {
  char text[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(code, text, sizeof(text));
  return text;
}

int Interrupted(void* opaque) { return static_cast<umi::TaskContext*>(opaque)->cancelled() ? 1 : 0; }

}  // namespace

class Probe : public umi::Plugin {
 public:
  static umi::PluginInfo Info() {
    umi::PluginInfo info;
    info.name = "probe";
    info.version = "1.0.0";
    info.description = "Container and stream properties of a media file (libavformat)";
    info.license = "LGPL-2.1-or-later (FFmpeg)";
    info.requirement = {.cpu_cores = 0.5, .cpu_threads = 1, .memory_mb = 128};
    return info;
  }

  void Process(umi::TaskContext& task) override {
    const std::string path = task.input().Require<std::string>("path");
    av_log_set_level(AV_LOG_ERROR);  // FFmpeg's chatter would go to the host's stderr
    AVFormatContext* format = avformat_alloc_context();
    if (!format) throw umi::Error("plugin_error", "out of memory");
    format->interrupt_callback = {&Interrupted, &task};
    if (const int error = avformat_open_input(&format, path.c_str(), nullptr, nullptr); error < 0) {
      // avformat_open_input frees the context on failure.
      if (error == AVERROR(ENOENT)) throw umi::Error("not_found", path + ": " + AvError(error));
      if (error == AVERROR(EACCES)) throw umi::Error("unreadable", path + ": " + AvError(error));
      throw umi::Error("unsupported", path + ": " + AvError(error));
    }
    std::unique_ptr<AVFormatContext*, void (*)(AVFormatContext**)> closer(&format, &avformat_close_input);
    if (const int error = avformat_find_stream_info(format, nullptr); error < 0) {
      if (task.cancelled()) return;
      throw umi::Error("corrupt", path + ": " + AvError(error));
    }

    msgpack::zone& zone = task.output().zone();
    std::vector<msgpack::object> streams;
    for (unsigned i = 0; i < format->nb_streams; ++i) {
      const AVStream* stream = format->streams[i];
      const AVCodecParameters* codec = stream->codecpar;
      std::map<std::string, msgpack::object> s;
      auto set = [&](const char* key, const auto& value) { s[key] = msgpack::object(value, zone); };
      set("index", static_cast<int>(i));
      if (const char* type = av_get_media_type_string(codec->codec_type)) set("codec_type", std::string(type));
      set("codec_name", std::string(avcodec_get_name(codec->codec_id)));
      if (const char* profile = avcodec_profile_name(codec->codec_id, codec->profile)) {
        set("profile", std::string(profile));
      }
      if (codec->codec_type == AVMEDIA_TYPE_VIDEO) {
        set("width", codec->width);
        set("height", codec->height);
        if (const char* pix = av_get_pix_fmt_name(static_cast<AVPixelFormat>(codec->format))) {
          set("pix_fmt", std::string(pix));
        }
        const AVRational rate = stream->avg_frame_rate.den ? stream->avg_frame_rate : stream->r_frame_rate;
        set("avg_frame_rate", std::to_string(stream->avg_frame_rate.num) + "/" + std::to_string(stream->avg_frame_rate.den));
        if (rate.den) set("frame_rate", av_q2d(rate));
      }
      if (codec->codec_type == AVMEDIA_TYPE_AUDIO) {
        set("sample_rate", codec->sample_rate);
        set("channels", codec->ch_layout.nb_channels);
      }
      if (const AVDictionaryEntry* language = av_dict_get(stream->metadata, "language", nullptr, 0)) {
        set("language", std::string(language->value));
      }
      streams.emplace_back(s, zone);
    }
    task.output()
        .Set("path", path)
        .Set("format_name", std::string(format->iformat->name))
        .Set("format_long_name", std::string(format->iformat->long_name ? format->iformat->long_name : ""))
        .Set("duration", format->duration == AV_NOPTS_VALUE ? 0.0 : static_cast<double>(format->duration) / AV_TIME_BASE)
        .Set("bit_rate", static_cast<int64_t>(format->bit_rate))
        .Set("streams", streams);
  }
};

UMI_DECLARE_PLUGIN(Probe)
