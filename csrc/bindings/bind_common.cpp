// Build facts, threading and SIMD controls, and a tiny zero-copy helper.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/avutil.h>
}

#include "common/cpu_features.h"
#include "common/thread_pool.h"
#ifdef IVCR_WITH_CUDA
#include "common/cuda_device.h"
#endif

namespace py = pybind11;

namespace {

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    std::size_t end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    if (end > start) out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

py::dict build_info() {
  py::dict d;
  d["version"] = IVCR_VERSION;
  d["compiler"] = IVCR_COMPILER;
  d["build_type"] = IVCR_BUILD_TYPE;
  d["simd_compiled"] = split_commas(IVCR_SIMD_COMPILED);
  d["simd_detected"] = ivcr::detected_simd_names();
  d["simd_active"] = ivcr::simd_level_name(ivcr::active_simd_level());
  d["num_threads"] = ivcr::num_threads();
  d["ffmpeg_version"] = av_version_info();
  d["libavcodec"] = LIBAVCODEC_IDENT;
  d["libavformat"] = LIBAVFORMAT_IDENT;
#ifdef IVCR_WITH_CUDA
  d["cuda"] = true;
  d["cuda_compiler_version"] = IVCR_CUDA_VERSION;
  ivcr::cuda::DeviceSummary s = ivcr::cuda::device_summary();
  d["cuda_runtime_version"] = s.runtime_version;
  d["cuda_device_count"] = s.device_count;
  d["cuda_device"] = s.first_device_name;
  if (!s.error.empty()) d["cuda_error"] = s.error;
#else
  d["cuda"] = false;
  d["cuda_device_count"] = 0;
#endif
  return d;
}

// Normalises the rows of a float32 matrix in place and returns the same array (no copy):
// embeddings from any encoder go through it before they are stored or searched.
py::array normalize_rows(py::array arr) {
  if (!py::isinstance<py::array_t<float>>(arr) || arr.dtype().kind() != 'f' || arr.itemsize() != 4)
    throw py::type_error("normalize_rows expects a float32 array, got " + std::string(py::str(arr.dtype())));
  if (!(arr.flags() & py::array::c_style)) throw py::value_error("normalize_rows expects a C-contiguous array");
  if (!arr.writeable()) throw py::value_error("normalize_rows works in place and needs a writeable array");
  if (arr.ndim() != 1 && arr.ndim() != 2) throw py::value_error("normalize_rows expects a 1-D or 2-D array");
  const ssize_t rows = arr.ndim() == 2 ? arr.shape(0) : 1;
  const ssize_t cols = arr.ndim() == 2 ? arr.shape(1) : arr.shape(0);
  float* p = static_cast<float*>(arr.mutable_data());
  {
    py::gil_scoped_release nogil;
    for (ssize_t r = 0; r < rows; ++r) {
      float* row = p + r * cols;
      double ss = 0;
      for (ssize_t c = 0; c < cols; ++c) ss += double(row[c]) * row[c];
      if (ss > 0) {
        const float inv = float(1.0 / std::sqrt(ss));
        for (ssize_t c = 0; c < cols; ++c) row[c] *= inv;
      }
    }
  }
  return arr;
}

}  // namespace

void bind_common(py::module_& m) {
  m.def("build_info", &build_info, "What this build of the native core contains and sees.");
  m.def("num_threads", &ivcr::num_threads, "Threads used by native parallel loops.");
  m.def("set_num_threads", &ivcr::set_num_threads, py::arg("n"),
        "Set the native thread pool size (default: all cores, or IVCR_NUM_THREADS).");
  m.def("set_simd_level", &ivcr::set_simd_level_override, py::arg("level"),
        "Cap the SIMD level used by kernels: 0 scalar, 1 avx2, 2 avx512, -1 no cap (for tests).");
  m.def("simd_level", [] { return std::string(ivcr::simd_level_name(ivcr::active_simd_level())); });
  m.def("normalize_rows", &normalize_rows, py::arg("x"),
        "L2-normalise the rows of a float32 array in place; returns the same array.");
}
