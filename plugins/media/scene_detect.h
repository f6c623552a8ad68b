// Scene-cut detection shared by `scenes` (CPU) and `scenes_cuda` (GPU):
// decode every video frame, scale it to a small gray image, and score each
// frame by its mean absolute luma difference from the previous one (0..1).
// A score above the threshold is a cut at that frame's time. The two plugins
// differ only in who computes the difference sum, which is an exact integer,
// so they find the same cuts.
//
//   input:  {"path", "threshold" (default 0.3), "width" (analysis width, default 160)}
//   output: {"cuts": [{"time", "score"}], "frames", "duration"}
#pragma once

#include <umi/plugin.hpp>

#include <functional>
#include <memory>
#include <vector>

#include "media_file.h"
#include "media_paths.h"

namespace umi::media {

// Analysis frames taller than this are refused: a sliver of an image scaled
// to a wide analysis width would otherwise take gigabytes.
inline constexpr int64_t kMaxAnalysisHeight = 8192;

// Sum over i of |previous[i] - current[i]|, for `size` bytes.
using DifferenceSum = std::function<uint64_t(const uint8_t* previous, const uint8_t* current, size_t size)>;

inline void DetectScenes(umi::TaskContext& task, const MediaPaths& paths, const DifferenceSum& difference) {
  const auto& in = task.input();
  const std::string path = in.Require<std::string>("path");
  const double threshold = in.Get<double>("threshold", 0.3);
  const int64_t wanted_width = in.Get<int64_t>("width", 160);
  if (wanted_width < 8 || wanted_width > 4096) throw umi::Error("bad_input", "width must be 8..4096");
  const int width = static_cast<int>(wanted_width);

  MediaFile file(paths.Readable(path), task);
  file.OpenVideo(task, task.threads());
  const double duration = file.Duration();
  const AVRational rate = file.video()->avg_frame_rate;
  const double expected_frames = rate.den && duration > 0 ? duration * av_q2d(rate) : 0;
  const int64_t start = file.video()->start_time == AV_NOPTS_VALUE ? 0 : file.video()->start_time;

  // Every frame is scaled to the size the first one set: the scores compare
  // like with like. The scaler follows each frame's own format and size,
  // which may change mid-stream (a palette frame, then a gray one).
  std::unique_ptr<SwsContext, void (*)(SwsContext*)> scaler(nullptr, &sws_freeContext);
  int height = 0;
  std::vector<uint8_t> previous, current;
  int64_t frames = 0;
  msgpack::zone& zone = task.output().zone();
  std::vector<msgpack::object> cuts;
  file.DecodeVideo(task, [&](AVFrame* frame) {
    if (frame->width <= 0 || frame->height <= 0) throw umi::Error("corrupt", path + ": a frame has no size");
    if (height == 0) {
      const int64_t scaled = static_cast<int64_t>(width) * frame->height / frame->width;
      if (scaled > kMaxAnalysisHeight) {
        throw umi::Error("bad_input", path + ": a " + std::to_string(frame->width) + "x" +
                                          std::to_string(frame->height) + " frame at width " + std::to_string(width) +
                                          " would be " + std::to_string(scaled) + " rows; the most is " +
                                          std::to_string(kMaxAnalysisHeight));
      }
      height = static_cast<int>(std::max<int64_t>(2, scaled));
      RequireFits(task, 2.0 * width * height, path + ": two " + std::to_string(width) + "x" + std::to_string(height) +
                                                   " analysis frames");
      current.resize(static_cast<size_t>(width) * height);
    }
    scaler.reset(sws_getCachedContext(scaler.release(), frame->width, frame->height,
                                      static_cast<AVPixelFormat>(frame->format), width, height, AV_PIX_FMT_GRAY8,
                                      SWS_AREA, nullptr, nullptr, nullptr));
    if (!scaler) throw umi::Error("unsupported", path + ": cannot scale this pixel format");
    uint8_t* planes[4] = {current.data(), nullptr, nullptr, nullptr};
    int strides[4] = {width, 0, 0, 0};
    sws_scale(scaler.get(), frame->data, frame->linesize, 0, frame->height, planes, strides);
    if (!previous.empty()) {
      const double score = static_cast<double>(difference(previous.data(), current.data(), current.size())) /
                           (255.0 * static_cast<double>(current.size()));
      if (score > threshold) {
        std::map<std::string, msgpack::object> cut;
        cut["time"] = msgpack::object(file.Seconds(frame->best_effort_timestamp - start), zone);
        cut["score"] = msgpack::object(score, zone);
        cuts.emplace_back(cut, zone);
      }
    }
    previous.swap(current);
    current.resize(previous.size());
    if (++frames % 25 == 0 && expected_frames > 0) task.Progress(std::min(1.0, frames / expected_frames));
    return true;
  });
  if (task.cancelled()) return;
  if (frames == 0) throw umi::Error("corrupt", path + ": no frame could be decoded");
  // A container that promises more frames than could be decoded is damaged
  // (truncated downloads are the usual case); 10% slack for edit lists.
  const int64_t promised = file.video()->nb_frames;
  if (promised > 0 && frames < promised * 9 / 10) {
    throw umi::Error("corrupt", path + ": decoded " + std::to_string(frames) + " of " + std::to_string(promised) +
                                    " frames; the file is truncated or damaged");
  }
  task.output().Set("cuts", cuts).Set("frames", frames).Set("duration", duration);
}

}  // namespace umi::media
