// AVX-512 (F/BW/VL/DQ + VNNI) kernels: 16 floats per vector, and VNNI fuses the integer multiply-adds
// into the accumulator (vpdpwssd for int8 rows widened to int16, vpdpbusd for int4 nibbles times
// query bytes). Entered only when the CPU reports all of these features.
#include <immintrin.h>

#include "search/cpu/dot_kernels_impl.h"

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

// int4 rows (tile_i4): a step is four 32-dim groups, one 64-byte load; vpdpbusd multiplies the
// unsigned nibbles with the signed query bytes and adds each four products into int32 lanes, so the
// partial sums are the accumulators (no int16 stage, no widening). A last step of one to three
// groups is a masked load, which reads no byte past the row.
struct Avx512Int4 : Avx512 {
  static constexpr int kGroups = 4;
  static constexpr int kRowsAt4Queries = 4;       // 16 accumulators + 8 query vectors + 2: of 32 registers
  static constexpr int kStepsPerWiden = 1 << 20;  // int32 lanes throughout: one chunk at any D <= 4096
  using vb = __m512i;
  static vb load_b(const int8_t* p) { return _mm512_loadu_si512(p); }
  static void load_i4(const uint8_t* p, int groups, vb& lo, vb& hi) {
    const __m512i x = groups == 4 ? _mm512_loadu_si512(p)
                                  : _mm512_maskz_loadu_epi8((__mmask64(1) << (16 * groups)) - 1, p);
    const __m512i m = _mm512_set1_epi8(15);
    lo = _mm512_and_si512(x, m);
    hi = _mm512_and_si512(_mm512_srli_epi16(x, 4), m);
  }
  using vs = __m512i;
  static vs szero() { return _mm512_setzero_si512(); }
  static vs dot_u8i8(vs acc, vb lo, vb qlo, vb hi, vb qhi) {
    return _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(acc, lo, qlo), hi, qhi);
  }
  static vi widen_add(vi acc, vs part) { return _mm512_add_epi32(acc, part); }

  // Blocks of 16 rows (rows_i4b): a word chunk is one 64-byte load, lane i row i's 4 bytes. The
  // high nibbles are left in place (16 x their value, a mask instead of a shift and a mask: still
  // within vpdpbusd's unsigned bytes) and their sums shifted back once a block.
  static constexpr int kBlockChains = 4;
  using vk = __m512i;
  static vk kzero() { return _mm512_setzero_si512(); }
  static vk kadd(vk a, vk b) { return _mm512_add_epi32(a, b); }
  struct Nib {
    __m512i lo, hi16;
  };
  static Nib nibbles(const uint8_t* p) {
    const __m512i x = _mm512_loadu_si512(p), m = _mm512_set1_epi8(15);
    return {_mm512_and_si512(x, m), _mm512_andnot_si512(m, x)};
  }
  static void kdot(vk& lo, vk& hi, const Nib& n, int32_t qlo, int32_t qhi) {
    lo = _mm512_dpbusd_epi32(lo, n.lo, _mm512_set1_epi32(qlo));
    hi = _mm512_dpbusd_epi32(hi, n.hi16, _mm512_set1_epi32(qhi));
  }
  static void kscores(vk lo, vk hi, int32_t bias, const float* rowscale, float qscale, float* out, bool acc) {
    const __m512i sum = _mm512_sub_epi32(_mm512_add_epi32(lo, _mm512_srai_epi32(hi, 4)), _mm512_set1_epi32(bias));
    __m512 f = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(sum), _mm512_loadu_ps(rowscale)), _mm512_set1_ps(qscale));
    if (acc) f = _mm512_add_ps(_mm512_loadu_ps(out), f);
    _mm512_storeu_ps(out, f);
  }
};

}  // namespace

const DotKernels kDotKernelsAvx512 = impl::make_table<Avx512, Avx512Int4>("avx512");

}  // namespace ivcr::search
