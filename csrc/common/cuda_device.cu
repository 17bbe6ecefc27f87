#include "common/cuda_device.h"

#include <cuda_runtime.h>

namespace ivcr::cuda {

DeviceSummary device_summary() {
  DeviceSummary s;
  cudaRuntimeGetVersion(&s.runtime_version);
  cudaError_t err = cudaGetDeviceCount(&s.device_count);
  if (err != cudaSuccess) {
    s.device_count = 0;
    s.error = cudaGetErrorString(err);
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return s;
  }
  if (s.device_count > 0) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) s.first_device_name = prop.name;
  }
  return s;
}

bool device_available() {
  static const bool ok = device_summary().device_count > 0;
  return ok;
}

}  // namespace ivcr::cuda
