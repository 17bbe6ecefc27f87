#include "span/contrast_kernel_impl.h"

namespace ivcr::span {

int contrast_candidates_avx2(const float* s, int T, const SpanParams& p, Candidate* out, double* prefix,
                             double* per_len, float* buf) {
  return contrast_candidates_impl(s, T, p, out, prefix, per_len, buf);
}

}  // namespace ivcr::span
