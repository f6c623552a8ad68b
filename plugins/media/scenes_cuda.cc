// scenes_cuda: scene cuts with the frame differences computed on the GPU the
// pool granted (see scene_detect.h). Same input, output and cuts as
// `scenes`. Without a usable device it fails with code no_device.
#include <cuda_runtime_api.h>

#include "scene_detect.h"

extern "C" int UmiScenesCudaDiff(const uint8_t* host_a, const uint8_t* host_b, size_t n, uint8_t** device_a,
                                 uint8_t** device_b, unsigned long long** device_sum, size_t* capacity,
                                 unsigned long long* result);
extern "C" void UmiScenesCudaFree(uint8_t* device_a, uint8_t* device_b, unsigned long long* device_sum);

namespace {

// Per-worker device buffers, reused across tasks.
struct DeviceBuffers {
  uint8_t* a = nullptr;
  uint8_t* b = nullptr;
  unsigned long long* sum = nullptr;
  size_t capacity = 0;
  ~DeviceBuffers() { UmiScenesCudaFree(a, b, sum); }
};

}  // namespace

class ScenesCuda : public umi::Plugin {
 public:
  using Instance = DeviceBuffers;

  static umi::PluginInfo Info() {
    umi::PluginInfo info;
    info.name = "scenes_cuda";
    info.version = "1.0.0";
    info.description = "Scene cuts by frame-to-frame luma difference, differences on the GPU (CUDA)";
    info.license = "LGPL-2.1-or-later (FFmpeg)";
    info.kind = umi::Kind::kGpu;
    info.requirement = {.cpu_cores = 1.0, .cpu_threads = 2, .gpu_count = 1, .memory_mb = 512, .exclusive_gpu = true};
    info.settings = umi::media::MediaPathSettings();
    return info;
  }

  explicit ScenesCuda(const umi::Settings& settings) : paths_(settings, "scenes_cuda") {}

  void Process(umi::TaskContext& task) override {
    int devices = 0;
    if (const cudaError_t error = cudaGetDeviceCount(&devices); error != cudaSuccess || devices == 0) {
      throw umi::Error("no_device", std::string("no CUDA device: ") +
                                        (error != cudaSuccess ? cudaGetErrorString(error) : "none found"));
    }
    const auto gpus = task.gpu_ids();
    if (gpus.empty()) throw umi::Error("no_device", "the pool granted no GPU");
    if (const cudaError_t error = cudaSetDevice(gpus.front()); error != cudaSuccess) {
      throw umi::Error("no_device", "GPU " + std::to_string(gpus.front()) + ": " + cudaGetErrorString(error));
    }
    DeviceBuffers& buffers = task.instance<DeviceBuffers>();
    umi::media::DetectScenes(task, paths_, [&](const uint8_t* previous, const uint8_t* current, size_t size) {
      unsigned long long sum = 0;
      if (UmiScenesCudaDiff(previous, current, size, &buffers.a, &buffers.b, &buffers.sum, &buffers.capacity, &sum)) {
        throw umi::Error("gpu_error", std::string("CUDA: ") + cudaGetErrorString(cudaGetLastError()));
      }
      return static_cast<uint64_t>(sum);
    });
  }

 private:
  umi::media::MediaPaths paths_;
};

UMI_DECLARE_PLUGIN(ScenesCuda)
