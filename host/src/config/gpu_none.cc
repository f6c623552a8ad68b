// GPU detection and binding for builds without CUDA.
#include "config/machine.h"

namespace umi {

std::vector<GpuDevice> DetectGpus(std::string* note) {
  *note = "built without CUDA";
  return {};
}

void BindThreadToGpu(int) {}

}  // namespace umi
