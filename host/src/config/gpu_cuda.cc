// GPU detection and binding through the CUDA runtime (built with CUDA).
#include <cuda_runtime_api.h>

#include "config/machine.h"

namespace umi {

std::vector<GpuDevice> DetectGpus(std::string* note) {
  int count = 0;
  if (const cudaError_t error = cudaGetDeviceCount(&count); error != cudaSuccess) {
    *note = std::string("CUDA: ") + cudaGetErrorString(error);
    return {};
  }
  std::vector<GpuDevice> gpus;
  for (int id = 0; id < count; ++id) {
    cudaDeviceProp properties{};
    if (cudaGetDeviceProperties(&properties, id) != cudaSuccess) continue;
    gpus.push_back({id, properties.name, static_cast<double>(properties.totalGlobalMem) / (1 << 30)});
  }
  if (gpus.empty()) *note = "CUDA: no devices";
  return gpus;
}

void BindThreadToGpu(int gpu_id) { cudaSetDevice(gpu_id); }

}  // namespace umi
