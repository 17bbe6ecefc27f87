// Python face of the GPU frame conversion (csrc/decode/frames_to_batch.cu): host numpy in/out
// for tests and simple use, and raw device pointers (e.g. torch tensors' data_ptr) for pipelines
// that keep frames on the GPU.
#include <cuda_runtime.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "common/cuda_device.h"
#include "decode/frames_to_batch_cuda.h"

namespace py = pybind11;
namespace dc = ivcr::decode::cuda;

namespace {

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

void check_launch(const char* err) {
  if (err) throw std::runtime_error(std::string("frame conversion kernel failed: ") + err);
}

// Device memory freed on scope exit.
struct DeviceBuffer {
  void* p = nullptr;
  explicit DeviceBuffer(std::size_t bytes) { check(cudaMalloc(&p, bytes ? bytes : 1), "cudaMalloc"); }
  ~DeviceBuffer() { cudaFree(p); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

dc::Normalisation make_norm(const std::array<float, 3>& mean, const std::array<float, 3>& std) {
  dc::Normalisation n;
  for (int c = 0; c < 3; ++c) {
    if (std[c] == 0.0f) throw py::value_error("std must be non-zero");
    n.mean[c] = mean[c];
    n.std[c] = std[c];
  }
  return n;
}

void require_device() {
  if (!ivcr::cuda::device_available()) throw std::runtime_error("no CUDA device available");
}


void check_u8(const py::array& a, const char* name) {
  if (a.dtype().kind() != 'u' || a.itemsize() != 1) throw py::type_error(std::string(name) + " must be uint8");
  if (!(a.flags() & py::array::c_style)) throw py::value_error(std::string(name) + " must be C-contiguous");
}

py::array_t<float> rgb_to_batch_host(const py::array& rgb, std::pair<int, int> size, std::array<float, 3> mean,
                                     std::array<float, 3> std) {
  check_u8(rgb, "rgb");
  if (rgb.ndim() != 4 || rgb.shape(3) != 3) throw py::value_error("rgb must be (n, H, W, 3)");
  const int n = int(rgb.shape(0)), h = int(rgb.shape(1)), w = int(rgb.shape(2));
  const auto [oh, ow] = size;
  if (oh <= 0 || ow <= 0) throw py::value_error("size must be positive");
  if (n > 0 && (h <= 0 || w <= 0)) throw py::value_error("frames must not be empty");
  const dc::Normalisation norm = make_norm(mean, std);
  py::array_t<float> out({py::ssize_t(n), py::ssize_t(3), py::ssize_t(oh), py::ssize_t(ow)});
  if (n == 0) return out;
  require_device();
  const std::size_t in_bytes = std::size_t(rgb.nbytes()), out_bytes = std::size_t(out.nbytes());
  const void* src = rgb.data();
  void* dst = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    DeviceBuffer din(in_bytes), dout(out_bytes);
    check(cudaMemcpy(din.p, src, in_bytes, cudaMemcpyHostToDevice), "cudaMemcpy");
    check_launch(dc::rgb_to_batch(static_cast<const uint8_t*>(din.p), n, w, h, w * 3, std::size_t(h) * w * 3,
                                  static_cast<float*>(dout.p), oh, ow, norm, nullptr));
    check(cudaMemcpy(dst, dout.p, out_bytes, cudaMemcpyDeviceToHost), "cudaMemcpy");
  }
  return out;
}

py::array_t<float> nv12_to_batch_host(const py::array& y, const py::array& uv, std::pair<int, int> size,
                                      std::array<float, 3> mean, std::array<float, 3> std,
                                      const std::string& matrix, bool full_range) {
  check_u8(y, "y");
  check_u8(uv, "uv");
  if (y.ndim() != 3) throw py::value_error("y must be (n, H, W)");
  const int n = int(y.shape(0)), h = int(y.shape(1)), w = int(y.shape(2));
  const int ch = (h + 1) / 2, cw = (w + 1) / 2;
  if (uv.ndim() != 3 || uv.shape(0) != n || uv.shape(1) != ch || uv.shape(2) != 2 * cw)
    throw py::value_error("uv must be (n, ceil(H/2), 2*ceil(W/2)) interleaved U,V");
  if (matrix != "bt601" && matrix != "bt709") throw py::value_error("matrix must be 'bt601' or 'bt709'");
  const auto [oh, ow] = size;
  if (oh <= 0 || ow <= 0) throw py::value_error("size must be positive");
  const dc::Normalisation norm = make_norm(mean, std);
  py::array_t<float> out({py::ssize_t(n), py::ssize_t(3), py::ssize_t(oh), py::ssize_t(ow)});
  if (n == 0) return out;
  require_device();
  const std::size_t yb = std::size_t(y.nbytes()), uvb = std::size_t(uv.nbytes()), ob = std::size_t(out.nbytes());
  const void* ysrc = y.data();
  const void* uvsrc = uv.data();
  void* dst = out.mutable_data();
  const dc::YuvMatrix m = matrix == "bt709" ? dc::YuvMatrix::Bt709 : dc::YuvMatrix::Bt601;
  {
    py::gil_scoped_release nogil;
    DeviceBuffer dy(yb), duv(uvb), dout(ob);
    check(cudaMemcpy(dy.p, ysrc, yb, cudaMemcpyHostToDevice), "cudaMemcpy");
    check(cudaMemcpy(duv.p, uvsrc, uvb, cudaMemcpyHostToDevice), "cudaMemcpy");
    check_launch(dc::nv12_to_batch(static_cast<const uint8_t*>(dy.p), static_cast<const uint8_t*>(duv.p), n, w, h,
                                   w, 2 * cw, std::size_t(h) * w, std::size_t(ch) * 2 * cw,
                                   static_cast<float*>(dout.p), oh, ow, norm, m, full_range, nullptr));
    check(cudaMemcpy(dst, dout.p, ob, cudaMemcpyDeviceToHost), "cudaMemcpy");
  }
  return out;
}

}  // namespace

void bind_decode_cuda(py::module_& m) {
  py::module_ d = m.def_submodule("decode_cuda", "GPU conversion of decoded frames into normalised batches");
  const std::array<float, 3> zeros{0, 0, 0}, ones{1, 1, 1};
  d.def("rgb_to_batch", &rgb_to_batch_host, py::arg("rgb"), py::arg("size"), py::arg("mean") = zeros,
        py::arg("std") = ones, "(n,H,W,3) uint8 RGB -> (n,3,h,w) float32 (x/255-mean)/std, bilinear, on the GPU.");
  d.def("nv12_to_batch", &nv12_to_batch_host, py::arg("y"), py::arg("uv"), py::arg("size"), py::arg("mean") = zeros,
        py::arg("std") = ones, py::arg("matrix") = "bt601", py::arg("full_range") = false,
        "NV12 planes (n,H,W) + (n,H/2,W) -> (n,3,h,w) float32 normalised RGB, bilinear, on the GPU.");
  d.def(
      "rgb_to_batch_device",
      [](std::uintptr_t rgb, int n, int width, int height, int pitch, std::size_t frame_stride, std::uintptr_t out,
         int out_h, int out_w, std::array<float, 3> mean, std::array<float, 3> std, std::uintptr_t stream) {
        const dc::Normalisation norm = make_norm(mean, std);
        py::gil_scoped_release nogil;
        check_launch(dc::rgb_to_batch(reinterpret_cast<const uint8_t*>(rgb), n, width, height, pitch, frame_stride,
                                      reinterpret_cast<float*>(out), out_h, out_w, norm,
                                      reinterpret_cast<void*>(stream)));
      },
      py::arg("rgb_ptr"), py::arg("n"), py::arg("width"), py::arg("height"), py::arg("pitch"),
      py::arg("frame_stride"), py::arg("out_ptr"), py::arg("out_h"), py::arg("out_w"), py::arg("mean") = zeros,
      py::arg("std") = ones, py::arg("stream") = 0,
      "Same as rgb_to_batch on device pointers (asynchronous on `stream`).");
  d.def(
      "nv12_to_batch_device",
      [](std::uintptr_t y, std::uintptr_t uv, int n, int width, int height, int y_pitch, int uv_pitch,
         std::size_t y_stride, std::size_t uv_stride, std::uintptr_t out, int out_h, int out_w,
         std::array<float, 3> mean, std::array<float, 3> std, const std::string& matrix, bool full_range,
         std::uintptr_t stream) {
        if (matrix != "bt601" && matrix != "bt709") throw py::value_error("matrix must be 'bt601' or 'bt709'");
        const dc::Normalisation norm = make_norm(mean, std);
        const dc::YuvMatrix mx = matrix == "bt709" ? dc::YuvMatrix::Bt709 : dc::YuvMatrix::Bt601;
        py::gil_scoped_release nogil;
        check_launch(dc::nv12_to_batch(reinterpret_cast<const uint8_t*>(y), reinterpret_cast<const uint8_t*>(uv), n,
                                       width, height, y_pitch, uv_pitch, y_stride, uv_stride,
                                       reinterpret_cast<float*>(out), out_h, out_w, norm, mx, full_range,
                                       reinterpret_cast<void*>(stream)));
      },
      py::arg("y_ptr"), py::arg("uv_ptr"), py::arg("n"), py::arg("width"), py::arg("height"), py::arg("y_pitch"),
      py::arg("uv_pitch"), py::arg("y_frame_stride"), py::arg("uv_frame_stride"), py::arg("out_ptr"),
      py::arg("out_h"), py::arg("out_w"), py::arg("mean") = zeros, py::arg("std") = ones,
      py::arg("matrix") = "bt601", py::arg("full_range") = false, py::arg("stream") = 0,
      "Same as nv12_to_batch on device pointers (asynchronous on `stream`).");
}
