// What the CUDA runtime sees on this machine. Only compiled when the CUDA kernels are built.
#pragma once
#include <string>

namespace ivcr::cuda {

struct DeviceSummary {
  int runtime_version = 0;  // e.g. 13000
  int device_count = 0;
  std::string first_device_name;
  std::string error;  // why no device is usable, if none is
};

DeviceSummary device_summary();
bool device_available();

}  // namespace ivcr::cuda
