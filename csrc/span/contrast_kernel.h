// The contrast score's candidate search, compiled twice (baseline and AVX2, the latter entered
// after a run-time check): its inner loop over span lengths is straight-line double arithmetic
// that the compiler vectorises. Both builds use -ffp-contract=off semantics, so they give the
// same bits as each other and as the NumPy references.
#pragma once
#include <vector>

#include "span/span_scorer.h"

namespace ivcr::span {

struct Candidate {
  int i, j;
  float score;
};

using ContrastFn = void (*)(const float* s, int T, const SpanParams& p, std::vector<Candidate>& out,
                            std::vector<double>& prefix, std::vector<double>& per_len, std::vector<float>& buf);

void contrast_candidates_scalar(const float* s, int T, const SpanParams& p, std::vector<Candidate>& out,
                                std::vector<double>& prefix, std::vector<double>& per_len, std::vector<float>& buf);
void contrast_candidates_avx2(const float* s, int T, const SpanParams& p, std::vector<Candidate>& out,
                              std::vector<double>& prefix, std::vector<double>& per_len, std::vector<float>& buf);

}  // namespace ivcr::span
