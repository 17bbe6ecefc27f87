// AVX2 + FMA + F16C kernels (compiled with -mavx2 -mfma -mf16c; entered after a CPU check).
#include <immintrin.h>

#include "search/cpu/dot_kernels_impl.h"
#include "search/cpu/int256.h"

namespace ivcr::search {
namespace {

struct Avx2 : Int256 {
  static constexpr int W = 8;
  using vf = __m256;
  static vf zero() { return _mm256_setzero_ps(); }
  static vf load(const float* p) { return _mm256_loadu_ps(p); }
  static vf load_h(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static vf fma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
  static float hsum(vf a) {  // lanes (0+4, 2+6) and (1+5, 3+7): matches the scalar tree
    const __m128 lo = _mm256_castps256_ps128(a), hi = _mm256_extractf128_ps(a, 1);
    const __m128 s4 = _mm_add_ps(lo, hi);                       // [0+4, 1+5, 2+6, 3+7]
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));   // [(0+4)+(2+6), (1+5)+(3+7), ..]
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 0x55)));
  }
};

}  // namespace

const DotKernels kDotKernelsAvx2 = impl::make_table<Avx2>("avx2");

}  // namespace ivcr::search
