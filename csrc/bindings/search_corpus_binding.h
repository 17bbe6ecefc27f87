// The Python class shared by the CPU and CUDA search corpora: argument checks and result arrays
// live here once; Backend is ivcr::search::CpuCorpus or ivcr::cuda::DeviceCorpus (same methods).
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <sys/mman.h>

#include <cmath>
#include <memory>
#include <stdexcept>
#include <algorithm>
#include <string>
#include <type_traits>
#include <vector>

#include "bindings/checks.h"
#include "search/cpu/corpus.h"
#include "search/cpu/int4_blocks.h"

namespace ivcr::bindings {

namespace py = pybind11;
using ivcr::search::Agg;
using ivcr::search::Channel;
using ivcr::search::DType;
using ivcr::search::QueryBatch;
using ivcr::search::VideoFilter;

inline void require_c_contiguous(const py::array& a, const std::string& what) {
  if (!(a.flags() & py::array::c_style)) throw py::value_error(what + " must be C-contiguous");
}

inline DType dtype_of(const py::array& a, std::size_t c) {
  const py::dtype dt = a.dtype();
  if (dt.is(py::dtype::of<float>())) return DType::F32;
  if (dt.kind() == 'f' && dt.itemsize() == 2) return DType::F16;
  if (dt.is(py::dtype::of<int8_t>())) return DType::I8;
  if (dt.is(py::dtype::of<uint8_t>())) return DType::I4;  // packed pairs (corpus.quantize_int4)
  throw py::type_error("channel " + std::to_string(c) + ": vectors must be float32, float16, int8 or packed int4 "
                       "(uint8) (got " +
                       std::string(py::str(dt)) + ")");
}

// Asks for huge pages over the 2 MB-aligned part of [p, p + bytes) before it is first written.
inline void advise_huge_pages(void* p, std::size_t bytes) {
#ifdef MADV_HUGEPAGE
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  const uintptr_t a = (reinterpret_cast<uintptr_t>(p) + kHuge - 1) / kHuge * kHuge;
  const uintptr_t e = (reinterpret_cast<uintptr_t>(p) + bytes) / kHuge * kHuge;
  if (e > a) ::madvise(reinterpret_cast<void*>(a), e - a, MADV_HUGEPAGE);
#endif
}

template <class Backend>
class PySearchCorpus {
 public:
  // `int4_blocks`: keep int4 channels in blocks of 16 rows (int4_blocks.h; a copy the corpus owns),
  // the layout the engine scans a resident first-stage copy in.
  PySearchCorpus(const py::list& channels, py::array offsets, bool int4_blocks) {
    std::vector<Channel> chans;
    for (std::size_t c = 0; c < channels.size(); ++c) {
      const std::string name = "channel " + std::to_string(c);
      py::tuple t = channels[c].cast<py::tuple>();
      if (t.size() != 2) throw py::value_error("each channel is a (vectors, scales_or_None) tuple");
      py::array values = t[0].cast<py::array>();
      if (values.ndim() != 2) throw py::value_error(name + ": vectors must be 2-D (rows, dim)");
      require_c_contiguous(values, name + " vectors");
      Channel ch;
      ch.dtype = dtype_of(values, c);
      ch.data = values.data();
      ch.rows = values.shape(0);
      ch.dim = int(values.shape(1)) * (ch.dtype == DType::I4 ? 2 : 1);
      if (ch.dim == 0 && ch.rows > 0) throw py::value_error(name + ": dimension is 0");
      if (ch.dtype == DType::I4 && ch.dim % 32 != 0)
        throw py::value_error(name + ": packed int4 rows must hold a multiple of 32 dims (16 bytes)");
      if (ch.dtype == DType::I8 || ch.dtype == DType::I4) {
        if (t[1].is_none()) throw py::value_error(name + ": int8 and int4 vectors need per-row scales");
        py::array scales = t[1].cast<py::array>();
        if (!scales.dtype().is(py::dtype::of<float>()) || scales.ndim() != 1 || scales.shape(0) != ch.rows)
          throw py::value_error(name + ": scales must be float32 of shape (rows,)");
        require_c_contiguous(scales, "scales");
        ch.scales = static_cast<const float*>(scales.data());
        keep_.push_back(scales);
      }
      keep_.push_back(values);
      if (int4_blocks && ch.dtype == DType::I4) {
        py::array_t<uint8_t> blocks(py::ssize_t(ivcr::search::int4_blocks_bytes(ch.rows, ch.dim)));
        advise_huge_pages(blocks.mutable_data(), std::size_t(blocks.size()));  // as the engine's resident copy
        ivcr::search::interleave_int4_rows(static_cast<const uint8_t*>(ch.data), ch.rows, ch.dim, blocks.mutable_data());
        ch.dtype = DType::I4B16;
        ch.data = blocks.data();
        keep_.push_back(blocks);
      }
      chans.push_back(ch);
      dims_.push_back(ch.dim);
    }
    require_integer_array(offsets, "offsets");
    if (!offsets.dtype().is(py::dtype::of<int64_t>()) || offsets.ndim() != 1 || offsets.shape(0) < 1)
      throw py::type_error("offsets must be a 1-D int64 array of n_videos + 1 row indices");
    require_c_contiguous(offsets, "offsets");
    keep_.push_back(offsets);
    try {
      corpus_ = std::make_unique<Backend>(std::move(chans), static_cast<const int64_t*>(offsets.data()),
                                          offsets.shape(0) - 1);
    } catch (const std::invalid_argument& e) {
      throw py::value_error(e.what());
    }
  }

  py::tuple topk_clips(const py::list& queries, const std::vector<float>& weights, py::object k_arg,
                       py::object filter_bits, const std::string& filter_mode) {
    const int64_t k = int64_arg(k_arg, "k");
    std::vector<py::array> keep;
    QueryBatch q = queries_of(queries, weights, keep);
    VideoFilter f = filter_of(filter_bits, filter_mode, keep);
    const int64_t k_out = k_out_of(k, corpus_->rows());
    py::array_t<float> scores({q.batch, k_out});
    py::array_t<int64_t> ids({q.batch, k_out});
    {
      py::gil_scoped_release nogil;
      corpus_->topk_clips(q, k_out, f, scores.mutable_data(), ids.mutable_data());
    }
    return py::make_tuple(scores, ids);
  }

  py::tuple topk_videos(const py::list& queries, const std::vector<float>& weights, py::object k_arg,
                        const std::string& agg, float temperature, py::object filter_bits,
                        const std::string& filter_mode) {
    const int64_t k = int64_arg(k_arg, "k");
    Agg a;
    if (agg == "max") a = Agg::Max;
    else if (agg == "mean") a = Agg::Mean;
    else if (agg == "logsumexp") a = Agg::LogSumExp;
    else throw py::value_error("agg must be 'max', 'mean' or 'logsumexp', got '" + agg + "'");
    if (a == Agg::LogSumExp && !(temperature > 0 && std::isfinite(temperature)))
      throw py::value_error("temperature must be a positive finite number");
    std::vector<py::array> keep;
    QueryBatch q = queries_of(queries, weights, keep);
    VideoFilter f = filter_of(filter_bits, filter_mode, keep);
    const int64_t k_out = k_out_of(k, corpus_->videos());
    py::array_t<float> scores({q.batch, k_out});
    py::array_t<int64_t> ids({q.batch, k_out});
    {
      py::gil_scoped_release nogil;
      corpus_->topk_videos(q, k_out, a, temperature, f, scores.mutable_data(), ids.mutable_data());
    }
    return py::make_tuple(scores, ids);
  }

  // The exact stage of a staged ranking (CPU backend): each row's best of its own candidates.
  py::tuple topk_videos_among(const py::list& queries, const std::vector<float>& weights, py::object k_arg,
                              py::array candidates) {
    const int64_t k = int64_arg(k_arg, "k");
    std::vector<py::array> keep;
    QueryBatch q = queries_of(queries, weights, keep);
    require_integer_array(candidates, "candidates");
    if (!candidates.dtype().is(py::dtype::of<int64_t>()) || candidates.ndim() != 2 || candidates.shape(0) != q.batch)
      throw py::type_error("candidates must be a 2-D int64 array with one row per query");
    require_c_contiguous(candidates, "candidates");
    const int64_t n = candidates.shape(1);
    const int64_t* c = static_cast<const int64_t*>(candidates.data());
    std::vector<int64_t> row;
    for (int64_t b = 0; b < q.batch; ++b) {  // distinct ids in range: a repeat would be ranked twice
      row.assign(c + b * n, c + (b + 1) * n);
      std::sort(row.begin(), row.end());
      for (int64_t i = 0; i < n; ++i) {
        if (row[i] < -1 || row[i] >= corpus_->videos())
          throw py::value_error("candidate video ids must be in [0, " + std::to_string(corpus_->videos()) +
                                ") or -1 (padding), got " + std::to_string(row[i]));
        if (i && row[i] >= 0 && row[i] == row[i - 1])
          throw py::value_error("candidate video " + std::to_string(row[i]) + " is listed twice in one row");
      }
    }
    const int64_t k_out = k_out_of(k, corpus_->videos());
    py::array_t<float> scores({q.batch, k_out});
    py::array_t<int64_t> ids({q.batch, k_out});
    {
      py::gil_scoped_release nogil;
      corpus_->topk_videos_among(q, k_out, c, n, scores.mutable_data(), ids.mutable_data());
    }
    return py::make_tuple(scores, ids);
  }

  int64_t rows() const { return corpus_->rows(); }
  int64_t videos() const { return corpus_->videos(); }
  std::vector<int> dims() const { return dims_; }
  const Backend& backend() const { return *corpus_; }

  // Registers the class under `name` with the shared method set.
  static py::class_<PySearchCorpus> bind(py::module_& m, const char* name, const char* doc) {
    auto cls = py::class_<PySearchCorpus>(m, name, doc);
    if constexpr (std::is_same_v<Backend, ivcr::search::CpuCorpus>)
      cls.def("topk_videos_among", &PySearchCorpus::topk_videos_among, py::arg("queries"), py::arg("weights"),
              py::arg("k"), py::arg("candidates"));
    return cls
        .def(py::init<const py::list&, py::array, bool>(), py::arg("channels"), py::arg("offsets"),
             py::arg("int4_blocks") = false)
        .def("topk_clips", &PySearchCorpus::topk_clips, py::arg("queries"), py::arg("weights"), py::arg("k"),
             py::arg("filter_bits") = py::none(), py::arg("filter_mode") = "deny")
        .def("topk_videos", &PySearchCorpus::topk_videos, py::arg("queries"), py::arg("weights"), py::arg("k"),
             py::arg("agg") = "max", py::arg("temperature") = 0.1f, py::arg("filter_bits") = py::none(),
             py::arg("filter_mode") = "deny")
        .def_property_readonly("rows", &PySearchCorpus::rows)
        .def_property_readonly("videos", &PySearchCorpus::videos)
        .def_property_readonly("dims", &PySearchCorpus::dims);
  }

 private:
  static int64_t k_out_of(int64_t k, int64_t n) {
    if (k < 1) throw py::value_error("k must be >= 1, got " + std::to_string(k));
    return std::min(k, n);
  }

  // `keep` holds the arrays the returned pointers refer to for the duration of the call (local to
  // the call, so concurrent searches from several Python threads do not interfere).
  QueryBatch queries_of(const py::list& queries, const std::vector<float>& weights, std::vector<py::array>& keep) const {
    const std::size_t C = dims_.size();
    if (queries.size() != C)
      throw py::value_error("expected one query array per channel (" + std::to_string(C) + "), got " +
                            std::to_string(queries.size()));
    if (weights.size() != C) throw py::value_error("expected one weight per channel");
    QueryBatch q;
    q.weights = weights;
    for (std::size_t c = 0; c < C; ++c) {
      py::array a = queries[c].cast<py::array>();
      if (!a.dtype().is(py::dtype::of<float>()))
        throw py::type_error("queries must be float32, got " + std::string(py::str(a.dtype())));
      if (a.ndim() != 2 || a.shape(1) != dims_[c])
        throw py::value_error("channel " + std::to_string(c) + ": queries must have shape (B, " +
                              std::to_string(dims_[c]) + ")");
      require_c_contiguous(a, "queries");
      if (c == 0) q.batch = a.shape(0);
      else if (a.shape(0) != q.batch) throw py::value_error("all channels need the same number of queries");
      const float* p = static_cast<const float*>(a.data());
      for (ssize_t i = 0; i < a.size(); ++i)
        if (!std::isfinite(p[i])) throw py::value_error("queries contain NaN or infinity");
      if (!std::isfinite(weights[c])) throw py::value_error("weights must be finite");
      q.per_channel.push_back(p);
      keep.push_back(a);
    }
    return q;
  }

  static VideoFilter filter_of(py::object bits, const std::string& mode, std::vector<py::array>& keep) {
    VideoFilter f;
    if (mode != "allow" && mode != "deny") throw py::value_error("filter_mode must be 'allow' or 'deny'");
    if (bits.is_none()) return f;
    py::array a = bits.cast<py::array>();
    if (!a.dtype().is(py::dtype::of<uint64_t>()) || a.ndim() != 1)
      throw py::type_error("filter_bits must be a 1-D uint64 bitset");
    require_c_contiguous(a, "filter_bits");
    f.bits = static_cast<const uint64_t*>(a.data());
    f.n_words = a.shape(0);
    f.allow = mode == "allow";
    keep.push_back(a);
    return f;
  }

  std::unique_ptr<Backend> corpus_;
  std::vector<py::array> keep_;  // owners of the corpus memory
  std::vector<int> dims_;
};

}  // namespace ivcr::bindings
