// GPU side of frame conversion: decoded frames already on the device (NV12 from a hardware
// decoder, or packed RGB uint8) -> resized, normalised float32 NCHW batch, in one kernel.
// Compiled only when nvcc is found (IVCR_WITH_CUDA); the CPU path is FrameConverter.
#pragma once
#include <cstddef>
#include <cstdint>

namespace ivcr::decode::cuda {

struct Normalisation {
  float mean[3] = {0, 0, 0};
  float std[3] = {1, 1, 1};
};

enum class YuvMatrix { Bt601 = 0, Bt709 = 1 };

// All pointers are device pointers; frame i starts at base + i * frame_stride (bytes).
// Output: n x 3 x out_h x out_w float32, (rgb/255 - mean) / std. Bilinear with half-pixel
// centres (align_corners=False), no antialiasing. Returns a CUDA error string or nullptr.
const char* nv12_to_batch(const uint8_t* y, const uint8_t* uv, int n, int width, int height, int y_pitch,
                          int uv_pitch, std::size_t y_frame_stride, std::size_t uv_frame_stride, float* out,
                          int out_h, int out_w, const Normalisation& norm, YuvMatrix matrix, bool full_range,
                          void* stream);

const char* rgb_to_batch(const uint8_t* rgb, int n, int width, int height, int pitch, std::size_t frame_stride,
                         float* out, int out_h, int out_w, const Normalisation& norm, void* stream);

}  // namespace ivcr::decode::cuda
