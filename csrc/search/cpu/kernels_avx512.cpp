// AVX-512 (F/BW/VL/DQ + VNNI) kernels: 16 floats per vector, and VNNI's vpdpwssd fuses the int16
// multiply-add into the accumulator. Entered only when the CPU reports all of these features.
#include <immintrin.h>

#include "search/cpu/dot_kernels_impl.h"
#include "search/cpu/int256.h"

namespace ivcr::search {
namespace {

struct Avx512 {
  static constexpr int W = 16;
  using vf = __m512;
  static vf zero() { return _mm512_setzero_ps(); }
  static vf load(const float* p) { return _mm512_loadu_ps(p); }
  static vf load_h(const uint16_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static vf fma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
  static float hsum(vf a) { return _mm512_reduce_add_ps(a); }

  static constexpr int WI = 32;
  using vq = __m512i;
  using vi = __m512i;
  static vi izero() { return _mm512_setzero_si512(); }
  static vq load_i8(const int8_t* p) { return _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static vq load_i16(const int16_t* p) { return _mm512_loadu_si512(p); }
  static vi dot_i16(vi acc, vq a, vq b) { return _mm512_dpwssd_epi32(acc, a, b); }
  static int32_t ihsum(vi a) { return _mm512_reduce_add_epi32(a); }
  static void ihsum8(const vi* a, int32_t* out) {  // halves added, then the AVX2 transposing tree
    __m256i h[8];
    for (int i = 0; i < 8; ++i)
      h[i] = _mm256_add_epi32(_mm512_castsi512_si256(a[i]), _mm512_extracti64x4_epi64(a[i], 1));
    const __m256i s0 = _mm256_hadd_epi32(_mm256_hadd_epi32(h[0], h[1]), _mm256_hadd_epi32(h[2], h[3]));
    const __m256i s1 = _mm256_hadd_epi32(_mm256_hadd_epi32(h[4], h[5]), _mm256_hadd_epi32(h[6], h[7]));
    const __m256i lo = _mm256_permute2x128_si256(s0, s1, 0x20), hi = _mm256_permute2x128_si256(s0, s1, 0x31);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), _mm256_add_epi32(lo, hi));
  }
};

}  // namespace

const DotKernels kDotKernelsAvx512 = impl::make_table<Avx512, Int256>("avx512");

}  // namespace ivcr::search
