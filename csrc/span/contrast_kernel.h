// The contrast score's candidate search, compiled twice (baseline and AVX2, the latter entered
// after a run-time check): its inner loop over span lengths is straight-line double arithmetic
// that the compiler vectorises. Both builds use -ffp-contract=off semantics, so they give the
// same bits as each other and as the NumPy references.
#pragma once
#include <cstddef>

#include "span/span_scorer.h"

namespace ivcr::span {

struct Candidate {
  int i, j;
  float score;
};

// The kernels write into buffers the caller sized (contrast_buffer_sizes), so the AVX2 file
// instantiates no std::vector member: such a function is a weak symbol, and the linker may keep
// the AVX2 file's copy for every caller, including code that runs on CPUs without AVX2.
// Returns the number of candidates written to `out`.
using ContrastFn = int (*)(const float* s, int T, const SpanParams& p, Candidate* out, double* prefix, double* per_len,
                           float* buf);

// Entries each buffer needs for a video of T clips: out, prefix, per_len, buf.
struct ContrastSizes {
  std::size_t out, prefix, per_len, buf;
};
inline ContrastSizes contrast_buffer_sizes(int T, const SpanParams& p) {
  const std::size_t lengths = std::size_t(p.max_len < T ? p.max_len : T) + 1;
  return {std::size_t(T) + 1, std::size_t(T) + 1, 3 * lengths, lengths};  // (a start per clip, at most)
}

int contrast_candidates_scalar(const float* s, int T, const SpanParams& p, Candidate* out, double* prefix,
                               double* per_len, float* buf);
int contrast_candidates_avx2(const float* s, int T, const SpanParams& p, Candidate* out, double* prefix,
                             double* per_len, float* buf);

}  // namespace ivcr::span
