// AVX2 + FMA + F16C kernels (compiled with -mavx2 -mfma -mf16c; entered after a CPU check).
#include <immintrin.h>

#include "search/cpu/dot_kernels_impl.h"

namespace ivcr::search {
namespace {

struct Avx2 {
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

  static constexpr int WI = 16;
  using vq = __m256i;
  using vi = __m256i;
  static vi izero() { return _mm256_setzero_si256(); }
  static vq load_i8(const int8_t* p) { return _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static vq load_i16(const int16_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static vi dot_i16(vi acc, vq a, vq b) { return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b)); }
  static int32_t ihsum(vi a) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
  }
  static void ihsum8(const vi* a, int32_t* out) {  // a transposing tree: 6 hadds for 8 sums
    const __m256i s0 = _mm256_hadd_epi32(_mm256_hadd_epi32(a[0], a[1]), _mm256_hadd_epi32(a[2], a[3]));
    const __m256i s1 = _mm256_hadd_epi32(_mm256_hadd_epi32(a[4], a[5]), _mm256_hadd_epi32(a[6], a[7]));
    // s0 = [rows 0-3, low 128 bits | rows 0-3, high 128 bits], s1 the same for rows 4-7
    const __m256i lo = _mm256_permute2x128_si256(s0, s1, 0x20), hi = _mm256_permute2x128_si256(s0, s1, 0x31);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), _mm256_add_epi32(lo, hi));
  }
};

}  // namespace

const DotKernels kDotKernelsAvx2 = impl::make_table<Avx2>("avx2");

}  // namespace ivcr::search
