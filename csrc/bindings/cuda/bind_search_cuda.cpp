// Python face of the CUDA search corpus (compiled only when nvcc is found): _core.CudaCorpus has
// the methods of _core.SearchCorpus; constructing it without a device raises RuntimeError.
#include "bindings/search_corpus_binding.h"
#include "common/cuda_device.h"
#include "search/cuda/device_corpus.h"

namespace py = pybind11;
using CudaBinding = ivcr::bindings::PySearchCorpus<ivcr::cuda::DeviceCorpus>;

void bind_search_cuda(py::module_& m) {
  CudaBinding::bind(m, "CudaCorpus", "Channels of clip vectors in GPU memory, with video offsets (CUDA).")
      .def_property_readonly("device_bytes", [](const CudaBinding& c) { return c.backend().device_bytes(); });
  m.def("cuda_search_available", [] { return ivcr::cuda::device_available(); },
        "Whether a CUDA device is present for the CUDA search path.");
  m.def("cuda_memcpy_bandwidth", &ivcr::cuda::memcpy_bandwidth_gbs, py::arg("bytes") = std::size_t(1) << 30,
        py::arg("repeats") = 5, "Device-to-device copy rate in GB/s (bytes copied per second).");
}
