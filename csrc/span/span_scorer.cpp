#include "span/span_scorer.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <vector>

#include "common/cpu_features.h"
#include "common/thread_pool.h"
#include "span/contrast_kernel.h"

namespace ivcr::span {
namespace {

// Best span per start clip by boundary evidence, with a monotone deque over end positions.
void boundary_candidates(const float* s, int T, const SpanParams& p, std::vector<Candidate>& out) {
  const int w = std::max(1, p.smooth);
  std::vector<double> prefix(T + 1, 0.0), sm(T);
  for (int t = 0; t < T; ++t) prefix[t + 1] = prefix[t] + s[t];
  for (int t = 0; t < T; ++t) {  // centred moving average, window shrunk at the edges
    const int a = std::max(0, t - (w - 1) / 2), b = std::min(T, t + w / 2 + 1);
    sm[t] = (prefix[b] - prefix[a]) / (b - a);
  }
  double base = 0;
  for (int t = 0; t < T; ++t) base += sm[t];
  base /= T;
  std::vector<double> st(T), ed(T);
  for (int t = 0; t < T; ++t) {
    st[t] = sm[t] - (t > 0 ? sm[t - 1] : base);
    ed[t] = sm[t] - (t + 1 < T ? sm[t + 1] : base);
  }
  const int lmax = std::min(p.max_len, T);
  std::deque<int> dq;  // end positions, ed[] decreasing; equal values keep the earlier (shorter)
  int next_j = 0;
  for (int i = 0; i + p.min_len <= T; ++i) {
    const int jlo = i + p.min_len - 1, jhi = std::min(T - 1, i + lmax - 1);
    for (; next_j <= jhi; ++next_j) {
      while (!dq.empty() && ed[dq.back()] < ed[next_j]) dq.pop_back();
      dq.push_back(next_j);
    }
    while (!dq.empty() && dq.front() < jlo) dq.pop_front();
    const int j = dq.front();
    out.push_back({i, j, float(st[i] + ed[j])});
  }
}

double iou(double a0, double a1, double b0, double b1) {
  const double inter = std::max(0.0, std::min(a1, b1) - std::max(a0, b0));
  const double uni = std::max(a1, b1) - std::min(a0, b0);
  return uni > 0 ? inter / uni : (a0 == b0 && a1 == b1 ? 1.0 : 0.0);
}

struct Scratch {
  std::vector<Candidate> cand;
  std::vector<double> prefix, per_len;
  std::vector<float> buf;
};

void one_video(const SpanBatch& b, const SpanParams& p, int64_t v, Scratch& sc, double* start_s, double* end_s,
               float* score, int64_t* first_clip, int64_t* last_clip) {
  const int64_t o = b.offsets[v];
  const int T = int(b.offsets[v + 1] - o);
  std::vector<Candidate>& cand = sc.cand;
  cand.clear();
  if (T > 0 && p.min_len <= T) {
    if (p.method == Method::Contrast) {
      const ContrastFn contrast =
          active_simd_level() >= SimdLevel::AVX2 ? contrast_candidates_avx2 : contrast_candidates_scalar;
      const ContrastSizes n = contrast_buffer_sizes(T, p);
      cand.resize(n.out);
      sc.prefix.resize(n.prefix);
      sc.per_len.resize(n.per_len);
      sc.buf.resize(n.buf);
      cand.resize(size_t(contrast(b.scores + o, T, p, cand.data(), sc.prefix.data(), sc.per_len.data(), sc.buf.data())));
    }
    else boundary_candidates(b.scores + o, T, p, cand);
  }
  // Greedy NMS in score order (ties: earlier start, then shorter). A heap hands out candidates
  // lazily: usually only a few are popped before top_m are kept.
  const auto worse = [](const Candidate& x, const Candidate& y) {
    if (x.score != y.score) return x.score < y.score;
    if (x.i != y.i) return x.i > y.i;
    return x.j > y.j;
  };
  std::make_heap(cand.begin(), cand.end(), worse);
  int kept = 0;
  const int64_t row = v * p.top_m;
  for (auto end = cand.end(); end != cand.begin() && kept < p.top_m; --end) {
    std::pop_heap(cand.begin(), end, worse);
    const Candidate c = *(end - 1);
    const double s0 = b.clip_start[o + c.i], s1 = b.clip_end[o + c.j];
    bool keep = true;
    for (int k = 0; k < kept && keep; ++k)
      keep = iou(s0, s1, start_s[row + k], end_s[row + k]) <= p.nms_iou;
    if (!keep) continue;
    start_s[row + kept] = s0;
    end_s[row + kept] = s1;
    score[row + kept] = c.score;
    first_clip[row + kept] = o + c.i;
    last_clip[row + kept] = o + c.j;
    ++kept;
  }
  for (int k = kept; k < p.top_m; ++k) {
    start_s[row + k] = end_s[row + k] = std::numeric_limits<double>::quiet_NaN();
    score[row + k] = -std::numeric_limits<float>::infinity();
    first_clip[row + k] = last_clip[row + k] = -1;
  }
}

}  // namespace

void score_spans(const SpanBatch& b, const SpanParams& p, double* start_s, double* end_s, float* score,
                 int64_t* first_clip, int64_t* last_clip) {
  const int64_t chunk = 64;  // videos per task: enough work to amortise a task hand-off
  const int64_t n_tasks = (b.n_videos + chunk - 1) / chunk;
  std::vector<Scratch> scratch(num_threads());
  parallel_for(std::size_t(n_tasks), [&](std::size_t t, int worker) {
    const int64_t v1 = std::min<int64_t>(b.n_videos, int64_t(t + 1) * chunk);
    for (int64_t v = int64_t(t) * chunk; v < v1; ++v)
      one_video(b, p, v, scratch[worker], start_s, end_s, score, first_clip, last_clip);
  });
}

}  // namespace ivcr::span
