#include <cuda_runtime.h>

#include "decode/frames_to_batch_cuda.h"

namespace ivcr::decode::cuda {

namespace {

struct Params {
  float mean[3], inv_std[3];
};

__device__ __forceinline__ float source_coord(int o, float scale, int limit) {
  float s = (o + 0.5f) * scale - 0.5f;
  return fminf(fmaxf(s, 0.0f), float(limit - 1));
}

// Bilinear sample of one channel of an interleaved plane (channels per pixel = step).
__device__ __forceinline__ float bilinear(const uint8_t* plane, int pitch, int step, int w, int h, float x, float y) {
  const int x0 = int(x), y0 = int(y);
  const int x1 = min(x0 + 1, w - 1), y1 = min(y0 + 1, h - 1);
  const float fx = x - x0, fy = y - y0;
  const uint8_t* r0 = plane + size_t(y0) * pitch;
  const uint8_t* r1 = plane + size_t(y1) * pitch;
  const float top = r0[x0 * step] * (1 - fx) + r0[x1 * step] * fx;
  const float bot = r1[x0 * step] * (1 - fx) + r1[x1 * step] * fx;
  return top * (1 - fy) + bot * fy;
}

__global__ void rgb_kernel(const uint8_t* rgb, int w, int h, int pitch, size_t stride, float* out, int oh, int ow,
                           Params p) {
  const int x = blockIdx.x * blockDim.x + threadIdx.x;
  const int y = blockIdx.y * blockDim.y + threadIdx.y;
  const int f = blockIdx.z;
  if (x >= ow || y >= oh) return;
  const uint8_t* src = rgb + size_t(f) * stride;
  const float sx = source_coord(x, float(w) / ow, w);
  const float sy = source_coord(y, float(h) / oh, h);
  const size_t plane = size_t(oh) * ow;
  float* o = out + size_t(f) * 3 * plane + size_t(y) * ow + x;
  for (int c = 0; c < 3; ++c) {
    const float v = bilinear(src + c, pitch, 3, w, h, sx, sy);
    o[c * plane] = (v * (1.0f / 255.0f) - p.mean[c]) * p.inv_std[c];
  }
}

__global__ void nv12_kernel(const uint8_t* yp, const uint8_t* uvp, int w, int h, int ypitch, int uvpitch,
                            size_t ystride, size_t uvstride, float* out, int oh, int ow, Params p, float ky,
                            float y_off, float kc, float rv, float gu, float gv, float bu) {
  const int x = blockIdx.x * blockDim.x + threadIdx.x;
  const int y = blockIdx.y * blockDim.y + threadIdx.y;
  const int f = blockIdx.z;
  if (x >= ow || y >= oh) return;
  const uint8_t* Y = yp + size_t(f) * ystride;
  const uint8_t* UV = uvp + size_t(f) * uvstride;
  const float sx = source_coord(x, float(w) / ow, w);
  const float sy = source_coord(y, float(h) / oh, h);
  const int cw = (w + 1) / 2, ch = (h + 1) / 2;
  // 4:2:0 chroma is left-sited horizontally and centred vertically (MPEG-2/H.264 default).
  const float cx = fminf(fmaxf(sx * 0.5f, 0.0f), float(cw - 1));
  const float cy = fminf(fmaxf((sy + 0.5f) * 0.5f - 0.5f, 0.0f), float(ch - 1));
  const float luma = (bilinear(Y, ypitch, 1, w, h, sx, sy) - y_off) * ky;
  const float u = (bilinear(UV, uvpitch, 2, cw, ch, cx, cy) - 128.0f) * kc;
  const float v = (bilinear(UV + 1, uvpitch, 2, cw, ch, cx, cy) - 128.0f) * kc;
  const float rgb[3] = {luma + rv * v, luma - gu * u - gv * v, luma + bu * u};
  const size_t plane = size_t(oh) * ow;
  float* o = out + size_t(f) * 3 * plane + size_t(y) * ow + x;
  for (int c = 0; c < 3; ++c) {
    const float val = fminf(fmaxf(rgb[c], 0.0f), 255.0f);
    o[c * plane] = (val * (1.0f / 255.0f) - p.mean[c]) * p.inv_std[c];
  }
}

Params make_params(const Normalisation& n) {
  Params p;
  for (int c = 0; c < 3; ++c) {
    p.mean[c] = n.mean[c];
    p.inv_std[c] = 1.0f / n.std[c];
  }
  return p;
}

const char* launch_check() {
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

}  // namespace

const char* rgb_to_batch(const uint8_t* rgb, int n, int width, int height, int pitch, std::size_t frame_stride,
                         float* out, int out_h, int out_w, const Normalisation& norm, void* stream) {
  if (n <= 0 || out_h <= 0 || out_w <= 0) return nullptr;
  const dim3 block(32, 8);
  const dim3 grid((out_w + block.x - 1) / block.x, (out_h + block.y - 1) / block.y, n);
  rgb_kernel<<<grid, block, 0, static_cast<cudaStream_t>(stream)>>>(rgb, width, height, pitch, frame_stride, out,
                                                                  out_h, out_w, make_params(norm));
  return launch_check();
}

const char* nv12_to_batch(const uint8_t* y, const uint8_t* uv, int n, int width, int height, int y_pitch,
                          int uv_pitch, std::size_t y_frame_stride, std::size_t uv_frame_stride, float* out,
                          int out_h, int out_w, const Normalisation& norm, YuvMatrix matrix, bool full_range,
                          void* stream) {
  if (n <= 0 || out_h <= 0 || out_w <= 0) return nullptr;
  // Y'CbCr -> R'G'B' coefficients (Kr, Kb): BT.601 (0.299, 0.114), BT.709 (0.2126, 0.0722).
  const float kr = matrix == YuvMatrix::Bt709 ? 0.2126f : 0.299f;
  const float kb = matrix == YuvMatrix::Bt709 ? 0.0722f : 0.114f;
  const float kg = 1.0f - kr - kb;
  const float rv = 2.0f * (1.0f - kr), bu = 2.0f * (1.0f - kb);
  const float gu = bu * kb / kg, gv = rv * kr / kg;
  const float ky = full_range ? 1.0f : 255.0f / 219.0f;
  const float y_off = full_range ? 0.0f : 16.0f;
  const float kc = full_range ? 1.0f : 255.0f / 224.0f;
  const dim3 block(32, 8);
  const dim3 grid((out_w + block.x - 1) / block.x, (out_h + block.y - 1) / block.y, n);
  nv12_kernel<<<grid, block, 0, static_cast<cudaStream_t>(stream)>>>(
      y, uv, width, height, y_pitch, uv_pitch, y_frame_stride, uv_frame_stride, out, out_h, out_w, make_params(norm),
      ky, y_off, kc, rv, gu, gv, bu);
  return launch_check();
}

}  // namespace ivcr::decode::cuda
