// Included by contrast_kernel_scalar.cpp and contrast_kernel_avx2.cpp only.
#pragma once
#include <algorithm>

#include "span/contrast_kernel.h"

namespace ivcr::span {

// Best span per start clip by the contrast score. The scores of one start's lengths go into a
// small buffer in a branch-free loop (vectorised), then the first maximum is taken, so
// equal scores keep the shorter span.
// Buffers as contrast_buffer_sizes gives them.
inline int contrast_candidates_impl(const float* s, int T, const SpanParams& p, Candidate* out, double* prefix,
                                    double* per_len, float* buf) {
  prefix[0] = 0.0;
  for (int t = 0; t < T; ++t) prefix[t + 1] = prefix[t] + s[t];
  const double total = prefix[T];
  const int lmax = std::min(p.max_len, T);
  // Per-length constants, so the inner loop is straight-line arithmetic the compiler vectorises.
  // Reciprocals instead of divisions in the inner loop (the documented formula multiplies by
  // 1/n and 1/(T-n); the references do the same, so results agree bit for bit).
  double* inv_len = per_len;                   // 1 / n
  double* inv_rest = inv_len + (lmax + 1);     // 1 / (T - n), or 1 for the whole video (unused)
  double* prior = inv_rest + (lmax + 1);       // length_weight * n / T
  inv_len[0] = inv_rest[0] = prior[0] = 1.0;  // (no span is 0 clips long)
  for (int n = 1; n <= lmax; ++n) {
    inv_len[n] = 1.0 / n;
    inv_rest[n] = T - n > 0 ? 1.0 / (T - n) : 1.0;
    prior[n] = p.length_weight * double(n) / T;
  }
  int found = 0;
  for (int i = 0; i + p.min_len <= T; ++i) {
    const int nmax = std::min(lmax, T - i);
    const double pi = prefix[i];
    const double* pj = prefix + i;
    float* b = buf;
    for (int n = p.min_len; n <= nmax; ++n) {
      const double in = pj[n] - pi;
      const double mean_in = in * inv_len[n];
      const double mean_out_raw = (total - in) * inv_rest[n];
      // the whole video has no outside: its outside mean is its inside mean (zero contrast)
      const double mean_out = n == T ? mean_in : mean_out_raw;
      b[n] = float(mean_in - mean_out + prior[n]);
    }
    int best_n = p.min_len;
    for (int n = p.min_len + 1; n <= nmax; ++n)
      if (b[n] > b[best_n]) best_n = n;
    out[found++] = {i, i + best_n - 1, b[best_n]};
  }
  return found;
}

}  // namespace ivcr::span
