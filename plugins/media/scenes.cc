// scenes: scene cuts of a video, on the CPU (see scene_detect.h).
#include <cstdlib>

#include "scene_detect.h"

class Scenes : public umi::Plugin {
 public:
  static umi::PluginInfo Info() {
    umi::PluginInfo info;
    info.name = "scenes";
    info.version = "1.0.0";
    info.description = "Scene cuts by frame-to-frame luma difference (CPU)";
    info.license = "LGPL-2.1-or-later (FFmpeg)";
    info.requirement = {.cpu_cores = 1.0, .cpu_threads = 2, .memory_mb = 256};
    info.settings = umi::media::MediaPathSettings();
    return info;
  }

  explicit Scenes(const umi::Settings& settings) : paths_(settings, "scenes") {}

  void Process(umi::TaskContext& task) override {
    umi::media::DetectScenes(task, paths_, [](const uint8_t* previous, const uint8_t* current, size_t size) {
      uint64_t sum = 0;
      for (size_t i = 0; i < size; ++i) sum += static_cast<uint64_t>(std::abs(previous[i] - current[i]));
      return sum;
    });
  }

 private:
  umi::media::MediaPaths paths_;
};

UMI_DECLARE_PLUGIN(Scenes)
