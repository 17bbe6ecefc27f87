// The 256-bit integer members of the tile-kernel traits (see dot_kernels_impl.h): the AVX2 table's
// int8 and int4 kernels. Include only from translation units compiled with AVX2 enabled. (The
// AVX-512 table has its own int4 members: VNNI at 512 bits.)
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace ivcr::search {
// Unnamed: each including file (compiled with its own ISA flags) keeps its own copy, so the
// linker never swaps an AVX-512-compiled member into the AVX2 table.
namespace {

struct Int256 {
  static constexpr int WI = 16;
  using vq = __m256i;
  using vi = __m256i;
  static vi izero() { return _mm256_setzero_si256(); }
  static vq load_i8(const int8_t* p) { return _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static vq load_i16(const int16_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  // int4 rows against int8 queries (dot_kernels_impl.h, tile_i4): steps of two groups, 32 lanes
  // of bytes.
  static constexpr int kGroups = 2;
  static constexpr int kRowsAt4Queries = 2;  // 8 accumulators: 16 vector registers hold no more
  using vb = __m256i;
  static vb load_b(const int8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static void load_i4(const uint8_t* p, int groups, vb& lo, vb& hi) {  // nibbles as stored (0..15)
    const __m256i x = groups == 2 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))
                                  : _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    const __m256i m = _mm256_set1_epi8(15);
    lo = _mm256_and_si256(x, m);
    hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), m);
  }
  // maddubs sums two u8 x s8 products into int16 (|sum| <= 2 * 15 * 128, never saturating); the
  // two halves' sums (<= 7,680) are added in int16 (tile_i4 widens before they could overflow).
  using vs = __m256i;
  static constexpr int kStepsPerWiden = 4;  // 4 x 7,680 = 30,720 fits int16
  static vs szero() { return _mm256_setzero_si256(); }
  static vs dot_u8i8(vs acc, vb lo, vb qlo, vb hi, vb qhi) {
    return _mm256_add_epi16(acc, _mm256_add_epi16(_mm256_maddubs_epi16(lo, qlo), _mm256_maddubs_epi16(hi, qhi)));
  }
  static vi widen_add(vi acc, vs part) { return _mm256_add_epi32(acc, _mm256_madd_epi16(part, _mm256_set1_epi16(1))); }
  // Blocks of 16 rows (rows_i4b): a word chunk is two 32-byte loads (rows 0-7, rows 8-15). maddubs
  // sums each row's two byte pairs into int16 (low and high nibbles' together: <= 4 * 15 * 127),
  // madd with ones the two int16s into the row's int32 lane; the high sums go with the low ones.
  static constexpr int kBlockChains = 2;  // (16 registers: 4 accumulators, a chunk's 4 nibble vectors)
  struct vk {
    __m256i a, b;
  };
  static vk kzero() { return {_mm256_setzero_si256(), _mm256_setzero_si256()}; }
  static vk kadd(vk x, vk y) { return {_mm256_add_epi32(x.a, y.a), _mm256_add_epi32(x.b, y.b)}; }
  struct Nib {
    __m256i lo_a, hi_a, lo_b, hi_b;
  };
  static Nib nibbles(const uint8_t* p) {
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32));
    const __m256i m = _mm256_set1_epi8(15);
    return {_mm256_and_si256(x, m), _mm256_and_si256(_mm256_srli_epi16(x, 4), m), _mm256_and_si256(y, m),
            _mm256_and_si256(_mm256_srli_epi16(y, 4), m)};
  }
  static void kdot(vk& lo, vk&, const Nib& n, int32_t qlo, int32_t qhi) {
    const __m256i ql = _mm256_set1_epi32(qlo), qh = _mm256_set1_epi32(qhi), ones = _mm256_set1_epi16(1);
    const __m256i a = _mm256_add_epi16(_mm256_maddubs_epi16(n.lo_a, ql), _mm256_maddubs_epi16(n.hi_a, qh));
    const __m256i b = _mm256_add_epi16(_mm256_maddubs_epi16(n.lo_b, ql), _mm256_maddubs_epi16(n.hi_b, qh));
    lo.a = _mm256_add_epi32(lo.a, _mm256_madd_epi16(a, ones));
    lo.b = _mm256_add_epi32(lo.b, _mm256_madd_epi16(b, ones));
  }
  static void kscores(vk lo, vk, int32_t bias, const float* rowscale, float qscale, float* out, bool acc) {
    const __m256i bv = _mm256_set1_epi32(bias);
    const __m256 qs = _mm256_set1_ps(qscale);
    __m256 fa = _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(lo.a, bv)), _mm256_loadu_ps(rowscale)), qs);
    __m256 fb = _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(lo.b, bv)), _mm256_loadu_ps(rowscale + 8)), qs);
    if (acc) {
      fa = _mm256_add_ps(_mm256_loadu_ps(out), fa);
      fb = _mm256_add_ps(_mm256_loadu_ps(out + 8), fb);
    }
    _mm256_storeu_ps(out, fa);
    _mm256_storeu_ps(out + 8, fb);
  }
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
}  // namespace ivcr::search
