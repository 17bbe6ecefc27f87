// Python face of temporal span scoring: _core.score_spans and _core.rank_moments.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "bindings/checks.h"
#include "span/span_scorer.h"

namespace py = pybind11;
using ivcr::span::Method;
using ivcr::span::SpanBatch;
using ivcr::span::SpanParams;

namespace {

using F32 = py::array_t<float, py::array::c_style | py::array::forcecast>;
using F64 = py::array_t<double, py::array::c_style | py::array::forcecast>;
using I64 = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

struct Inputs {
  F32 scores;
  I64 offsets;
  F64 start, end;
  SpanBatch batch;
  SpanParams params;
};

Inputs inputs(py::array scores, py::object offsets_arg, py::array clip_start, py::array clip_end, const std::string& method,
              int min_len, int max_len, int top_m, double nms_iou, double length_weight, int smooth) {
  if (scores.dtype().kind() != 'f') throw py::type_error("scores must be floating point");
  py::array offsets = py::array::ensure(offsets_arg);  // lists too, but checked before any cast
  if (!offsets) throw py::type_error("offsets must be an array of integers");
  ivcr::bindings::require_integer_array(offsets, "offsets");
  Inputs in{F32::ensure(scores), I64::ensure(offsets), F64::ensure(clip_start), F64::ensure(clip_end), {}, {}};
  if (!in.scores || !in.offsets || !in.start || !in.end) throw py::type_error("inputs must be numeric arrays");
  const int64_t N = in.scores.size();
  if (in.scores.ndim() != 1 || in.start.ndim() != 1 || in.end.ndim() != 1 || in.start.size() != N ||
      in.end.size() != N)
    throw py::value_error("scores, clip_start and clip_end must be 1-D arrays of the same length");
  if (in.offsets.ndim() != 1 || in.offsets.size() < 1) throw py::value_error("offsets must be 1-D with n_videos + 1 entries");
  const int64_t* off = in.offsets.data();
  const int64_t V = in.offsets.size() - 1;
  if (off[0] != 0 || off[V] != N) throw py::value_error("offsets must start at 0 and end at len(scores)");
  for (int64_t v = 0; v < V; ++v)
    if (off[v + 1] < off[v]) throw py::value_error("offsets must be non-decreasing");
  const float* s = in.scores.data();
  const double *a = in.start.data(), *b = in.end.data();
  for (int64_t i = 0; i < N; ++i) {
    if (std::isnan(s[i])) throw py::value_error("scores contain NaN (clip " + std::to_string(i) + ")");
    if (!(b[i] >= a[i])) throw py::value_error("clip_end must be >= clip_start (clip " + std::to_string(i) + ")");
  }
  if (method == "contrast") in.params.method = Method::Contrast;
  else if (method == "boundary") in.params.method = Method::Boundary;
  else throw py::value_error("method must be 'contrast' or 'boundary', got '" + method + "'");
  if (min_len < 1 || max_len < min_len) throw py::value_error("need 1 <= min_len <= max_len");
  if (top_m < 1) throw py::value_error("top_m must be >= 1");
  if (!(nms_iou >= 0 && nms_iou <= 1)) throw py::value_error("nms_iou must be in [0, 1]");
  if (smooth < 1) throw py::value_error("smooth must be >= 1");
  in.params.min_len = min_len;
  in.params.max_len = max_len;
  in.params.top_m = top_m;
  in.params.nms_iou = nms_iou;
  in.params.length_weight = length_weight;
  in.params.smooth = smooth;
  in.batch = SpanBatch{s, off, V, a, b};
  return in;
}

#define IVCR_SPAN_ARGS                                                                                             \
  py::arg("scores"), py::arg("offsets"), py::arg("clip_start"), py::arg("clip_end"), py::arg("method") = "contrast", \
      py::arg("min_len") = 1, py::arg("max_len") = 32, py::arg("top_m") = 5, py::arg("nms_iou") = 0.5,             \
      py::arg("length_weight") = 0.0, py::arg("smooth") = 3

py::tuple score_spans(py::array scores, py::object offsets_arg, py::array clip_start, py::array clip_end,
                      const std::string& method, int min_len, int max_len, int top_m, double nms_iou,
                      double length_weight, int smooth) {
  Inputs in = inputs(scores, offsets_arg, clip_start, clip_end, method, min_len, max_len, top_m, nms_iou, length_weight,
                     smooth);
  const int64_t V = in.batch.n_videos;
  py::array_t<double> s0({V, int64_t(top_m)}), s1({V, int64_t(top_m)});
  py::array_t<float> sc({V, int64_t(top_m)});
  py::array_t<int64_t> c0({V, int64_t(top_m)}), c1({V, int64_t(top_m)});
  {
    py::gil_scoped_release nogil;
    ivcr::span::score_spans(in.batch, in.params, s0.mutable_data(), s1.mutable_data(), sc.mutable_data(),
                            c0.mutable_data(), c1.mutable_data());
  }
  return py::make_tuple(s0, s1, sc, c0, c1);
}

// Corpus-level moment ranking in one call: every video's NMS-kept spans, shifted by an optional
// per-video bias (e.g. its retrieval score), then the global top k (ties: lower video, earlier).
py::tuple rank_moments(py::array scores, py::object offsets_arg, py::array clip_start, py::array clip_end,
                       const std::string& method, int min_len, int max_len, int top_m, double nms_iou,
                       double length_weight, int smooth, py::object video_bias, py::object k_arg) {
  const int64_t k = ivcr::bindings::int64_arg(k_arg, "k");
  Inputs in = inputs(scores, offsets_arg, clip_start, clip_end, method, min_len, max_len, top_m, nms_iou, length_weight,
                     smooth);
  const int64_t V = in.batch.n_videos, M = top_m;
  if (k < 1) throw py::value_error("k must be >= 1");
  F32 bias;  // note: a default array_t is an empty array, not null; has_bias says whether one was given
  const bool has_bias = !video_bias.is_none();
  if (has_bias) {
    bias = F32::ensure(video_bias);
    if (!bias || bias.ndim() != 1 || bias.size() != V) throw py::value_error("video_bias must have one value per video");
  }
  const int64_t k_out = std::min<int64_t>(k, V * M);
  py::array_t<int64_t> vid(k_out);
  py::array_t<double> o0(k_out), o1(k_out);
  py::array_t<float> osc(k_out);
  {
    py::gil_scoped_release nogil;
    std::vector<double> s0(V * M), s1(V * M);
    std::vector<float> sc(V * M);
    std::vector<int64_t> c0(V * M), c1(V * M);
    ivcr::span::score_spans(in.batch, in.params, s0.data(), s1.data(), sc.data(), c0.data(), c1.data());
    const float* bp = has_bias ? bias.data() : nullptr;
    for (int64_t i = 0; i < V * M; ++i)
      if (bp) sc[i] += bp[i / M];
    std::vector<int64_t> order(V * M);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k_out, order.end(), [&](int64_t x, int64_t y) {
      if (sc[x] != sc[y]) return sc[x] > sc[y];
      return x < y;  // lower video first, then the better-ranked span of that video
    });
    for (int64_t r = 0; r < k_out; ++r) {
      const int64_t i = order[r];
      const bool ok = c0[i] >= 0;
      vid.mutable_data()[r] = ok ? i / M : -1;
      o0.mutable_data()[r] = s0[i];
      o1.mutable_data()[r] = s1[i];
      osc.mutable_data()[r] = ok ? sc[i] : -std::numeric_limits<float>::infinity();
    }
  }
  return py::make_tuple(vid, o0, o1, osc);
}

}  // namespace

void bind_span(py::module_& m) {
  m.def("score_spans", &score_spans, IVCR_SPAN_ARGS,
        "Top spans per video after temporal NMS: (start_s, end_s, score, first_clip, last_clip), each (V, top_m).");
  m.def("rank_moments", &rank_moments, IVCR_SPAN_ARGS, py::arg("video_bias") = py::none(), py::arg("k") = 10,
        "Global top-k moments over a batch of videos: (video, start_s, end_s, score), each (k,).");
}
