// The GPU half of scenes_cuda: the absolute-difference sum of two gray frames.
#include <cuda_runtime.h>

#include <cstdint>

namespace {

__global__ void AbsDiffSum(const uint8_t* a, const uint8_t* b, size_t n, unsigned long long* sum) {
  __shared__ unsigned long long block_sum;
  if (threadIdx.x == 0) block_sum = 0;
  __syncthreads();
  unsigned long long local = 0;
  for (size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += static_cast<size_t>(blockDim.x) * gridDim.x) {
    const int d = static_cast<int>(a[i]) - static_cast<int>(b[i]);
    local += static_cast<unsigned long long>(d < 0 ? -d : d);
  }
  atomicAdd(&block_sum, local);
  __syncthreads();
  if (threadIdx.x == 0) atomicAdd(sum, block_sum);
}

}  // namespace

// Device buffers live as long as the worker's instance; sizes grow as needed.
extern "C" int UmiScenesCudaDiff(const uint8_t* host_a, const uint8_t* host_b, size_t n, uint8_t** device_a,
                                 uint8_t** device_b, unsigned long long** device_sum, size_t* capacity,
                                 unsigned long long* result) {
  if (*capacity < n) {
    cudaFree(*device_a);
    cudaFree(*device_b);
    if (cudaMalloc(device_a, n) != cudaSuccess || cudaMalloc(device_b, n) != cudaSuccess) return 1;
    *capacity = n;
  }
  if (!*device_sum && cudaMalloc(device_sum, sizeof(unsigned long long)) != cudaSuccess) return 1;
  if (cudaMemcpy(*device_a, host_a, n, cudaMemcpyHostToDevice) != cudaSuccess ||
      cudaMemcpy(*device_b, host_b, n, cudaMemcpyHostToDevice) != cudaSuccess ||
      cudaMemset(*device_sum, 0, sizeof(unsigned long long)) != cudaSuccess) {
    return 1;
  }
  AbsDiffSum<<<64, 256>>>(*device_a, *device_b, n, *device_sum);
  if (cudaMemcpy(result, *device_sum, sizeof(unsigned long long), cudaMemcpyDeviceToHost) != cudaSuccess) return 1;
  return 0;
}

extern "C" void UmiScenesCudaFree(uint8_t* device_a, uint8_t* device_b, unsigned long long* device_sum) {
  cudaFree(device_a);
  cudaFree(device_b);
  cudaFree(device_sum);
}
