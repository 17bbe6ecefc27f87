// Python face of the CPU search core: _core.SearchCorpus (channels + offsets, validated once) and
// its topk_clips / topk_videos. The numpy arrays are referenced, not copied, so an index
// memory-mapped from disk is searched in place.
#include "bindings/search_corpus_binding.h"
#include "search/cpu/dot_kernels.h"

namespace py = pybind11;

void bind_search(py::module_& m) {
  ivcr::bindings::PySearchCorpus<ivcr::search::CpuCorpus>::bind(
      m, "SearchCorpus", "Channels of clip vectors sharing one clip grid, with video offsets (CPU).");
  m.def("search_kernel_name", [] { return std::string(ivcr::search::active_dot_kernels().name); },
        "Name of the tile-kernel table the CPU search uses now (scalar, avx2, avx512).");
}
