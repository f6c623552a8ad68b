// probe: what a media file holds, read with libavformat (what ffprobe shows).
//   input:  {"path": "..."}
//   output: {"path", "format_name", "format_long_name", "duration", "bit_rate",
//            "streams": [{"index", "codec_type", "codec_name", "profile", "width",
//            "height", "pix_fmt", "avg_frame_rate", "frame_rate", "sample_rate",
//            "channels", "language"}]}  (fields that do not apply are absent)
//   errors: not_found, unreadable, unsupported (not media FFmpeg knows),
//           corrupt (recognised but unreadable streams)
extern "C" {
#include <libavutil/pixdesc.h>
}

#include <umi/plugin.hpp>

#include "media_paths.h"

#include <map>
#include <string>
#include <vector>

#include "media_file.h"

class Probe : public umi::Plugin {
 public:
  static umi::PluginInfo Info() {
    umi::PluginInfo info;
    info.name = "probe";
    info.version = "1.0.0";
    info.description = "Container and stream properties of a media file (libavformat)";
    info.license = "LGPL-2.1-or-later (FFmpeg)";
    info.requirement = {.cpu_cores = 0.5, .cpu_threads = 1, .memory_mb = 128};
    info.settings = umi::media::MediaPathSettings();
    return info;
  }

  explicit Probe(const umi::Settings& settings) : paths_(settings, "probe") {}

  void Process(umi::TaskContext& task) override {
    const std::string path = task.input().Require<std::string>("path");
    umi::media::MediaFile file(paths_.Readable(path), task);
    AVFormatContext* format = file.format();

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
        .Set("duration", file.Duration())
        .Set("bit_rate", static_cast<int64_t>(format->bit_rate))
        .Set("streams", streams);
  }

 private:
  umi::media::MediaPaths paths_;
};

UMI_DECLARE_PLUGIN(Probe)
