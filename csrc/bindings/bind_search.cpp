// Python face of the CPU search core: _core.SearchCorpus (channels + offsets, validated once) and
// its topk_clips / topk_videos. The numpy arrays are referenced, not copied, so an index
// memory-mapped from disk is searched in place.
#include "bindings/search_corpus_binding.h"
#include "search/cpu/dot_kernels.h"
#include "search/cpu/topk_collector.h"

namespace py = pybind11;

namespace {

// Per row, the best k of (ids, scores) candidates by score (ties: lower id), skipping padding
// (-1) and the ids in `deny`: the merge of shards' lists and of a batch's over-fetched rows.
py::tuple merge_topk(py::array ids_arg, py::array scores_arg, py::object k_arg, py::object deny_arg) {
  const int64_t k = ivcr::bindings::int64_arg(k_arg, "k");
  if (k < 1) throw py::value_error("k must be >= 1, got " + std::to_string(k));
  ivcr::bindings::require_integer_array(ids_arg, "ids");
  auto ids = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(ids_arg);
  auto scores = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(scores_arg);
  if (!ids || !scores || ids.ndim() != 2 || scores.ndim() != 2 || ids.shape(0) != scores.shape(0) ||
      ids.shape(1) != scores.shape(1))
    throw py::value_error("ids and scores must be 2-D arrays of the same shape");
  std::vector<int64_t> deny;
  if (!deny_arg.is_none()) {
    for (auto d : deny_arg) deny.push_back(ivcr::bindings::int64_arg(d, "deny"));
    std::sort(deny.begin(), deny.end());
  }
  const int64_t B = ids.shape(0), n = ids.shape(1);
  py::array_t<float> out_s({B, k});
  py::array_t<int64_t> out_i({B, k});
  const int64_t* pi = ids.data();
  const float* ps = scores.data();
  {
    py::gil_scoped_release nogil;
    std::vector<ivcr::search::Scored> all;
    for (int64_t b = 0; b < B; ++b) {
      all.clear();
      for (int64_t j = 0; j < n; ++j) {
        const int64_t id = pi[b * n + j];
        const float s = ps[b * n + j];
        if (id < 0 || s != s || std::binary_search(deny.begin(), deny.end(), id)) continue;
        all.push_back({s, id});
      }
      ivcr::search::write_best(all, k, out_s.mutable_data() + b * k, out_i.mutable_data() + b * k);
    }
  }
  return py::make_tuple(out_s, out_i);
}

}  // namespace

void bind_search(py::module_& m) {
  ivcr::bindings::PySearchCorpus<ivcr::search::CpuCorpus>::bind(
      m, "SearchCorpus", "Channels of clip vectors sharing one clip grid, with video offsets (CPU).");
  m.def("search_kernel_name", [] { return std::string(ivcr::search::active_dot_kernels().name); },
        "Name of the tile-kernel table the CPU search uses now (scalar, avx2, avx512).");
  m.def("merge_topk", &merge_topk, py::arg("ids"), py::arg("scores"), py::arg("k"), py::arg("deny") = py::none(),
        "Per row, the best k candidates by score (ties: lower id), without padding (-1) or denied ids: "
        "(scores (B, k) float32 padded -inf, ids (B, k) int64 padded -1).");
}
