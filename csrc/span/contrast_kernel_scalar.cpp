#include "span/contrast_kernel_impl.h"

namespace ivcr::span {

void contrast_candidates_scalar(const float* s, int T, const SpanParams& p, std::vector<Candidate>& out,
                             std::vector<double>& prefix, std::vector<double>& per_len, std::vector<float>& buf) {
  contrast_candidates_impl(s, T, p, out, prefix, per_len, buf);
}

}  // namespace ivcr::span
