// AMX-INT8 (Intel Xeons from Sapphire Rapids on): the blocked int4 scan (DotKernels::i4b) for a
// batch of queries as tile multiplies; every other entry is the AVX-512 table's. Entered only at
// SimdLevel::AMX, which needs the CPU's AMX-TILE and AMX-INT8, the OS's tile state and this
// process's permission to use it (common/cpu_features.cpp).
//
// Why: at B = 32 the int4 scan is compute-bound (a block of 16 rows stays in L1 while eight
// groups of 4 queries pass over it, two vpdpbusd per 64 bytes each). One TDPBSUD multiplies 16
// query rows by 16 corpus rows over 64 bytes: 16 x 16 x 64 products, the work of 256 vpdpbusd.
// On a 2-core Xeon, 1M rows of 256 dims: 1.3x the AVX-512 kernel at B = 8, 1.7x at 32, 1.8x at
// 64 (docs/BENCHMARKS.md, fourteenth session).
//
// How: a block's 64-byte word chunk holds, for each of its 16 rows, 4 bytes (int4_blocks.h);
// its low nibbles alone are one row of a tile B in AMX's layout (column n: row n's 4 values),
// and so are its high nibbles shifted down. So a block unpacks into D / 4 tile rows, word w's
// low then high, matching the query bytes as arrange_i4_block_query orders them (per word, 4
// for the low nibbles then 4 for the high). TDPBSUD adds signed query bytes times unsigned
// nibbles into exact int32 sums, so a row's sum is the AVX-512 kernel's, and it is scaled by the
// same expression (kscores): every score is the same to the bit.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "search/cpu/dot_kernels_impl.h"

namespace ivcr::search {
namespace {

struct AmxTag {};  // this file's own arranged_i4

constexpr int kRows = kI4BlockRows;  // a block's rows: the tiles' 16 columns
// Fewer queries than this take the AVX-512 kernel: a tile's 16 query rows would be mostly empty.
constexpr int kMinQueries = 8;

struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// Tiles: 0 the sums (16 queries x 16 rows, int32), 1 a chunk of 16 queries' bytes, 2 the same
// chunk of the block's nibbles (16 tile rows of 64 bytes: 64 bytes of each query).
TileConfig tile_config() {
  TileConfig c;
  for (int t = 0; t < 3; ++t) c.rows[t] = 16, c.colsb[t] = 64;
  return c;
}

// out = (out +) float(sum - bias) * rowscale * qscale for 16 rows: kscores' expression.
void scale16(const int32_t* sums, int32_t bias, const float* rowscale, float qscale, float* out, bool acc) {
  const __m512i s = _mm512_sub_epi32(_mm512_loadu_si512(sums), _mm512_set1_epi32(bias));
  __m512 f = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(s), _mm512_loadu_ps(rowscale)), _mm512_set1_ps(qscale));
  if (acc) f = _mm512_add_ps(_mm512_loadu_ps(out), f);
  _mm512_storeu_ps(out, f);
}

void kernel_i4b_amx(const int16_t* Q, const float* qs, int nq, int D, const uint8_t* blocks, const float* rs,
                    int64_t row0, int nrows, float* out, int ldo, bool acc) {
  if (nq < kMinQueries) {
    kDotKernelsAvx512.i4b(Q, qs, nq, D, blocks, rs, row0, nrows, out, ldo, acc);
    return;
  }
  const int Dp = (D + 63) / 64 * 64;  // a query's bytes, in whole 64-byte chunks (the rest zero)
  const int chunks = Dp / 64, words = D / 8, groups = (nq + 15) / 16;
  // the queries' bytes, 16 rows of Dp bytes per group, kept per thread between calls
  // (arranged_i4), and the block's D / 4 tile rows (Dp / 4 with the zero padding)
  const impl::ArrangedI4 arranged = impl::arranged_i4<AmxTag>(Q, nq, D);
  const int8_t* qa = reinterpret_cast<const int8_t*>(arranged.words);
  const int32_t* bias = arranged.bias;
  thread_local Scratch nib;
  thread_local int nib_Dp = 0;
  uint8_t* b = static_cast<uint8_t*>(nib.get(std::size_t(Dp / 4) * 64));
  if (nib_Dp != Dp) {  // (a tile row past the block's words stays zero)
    std::memset(b, 0, std::size_t(Dp / 4) * 64);
    nib_Dp = Dp;
  }
  const TileConfig cfg = tile_config();
  _tile_loadconfig(&cfg);
  alignas(64) int32_t sums[16][16];
  const std::size_t block_bytes = std::size_t(kRows) * std::size_t(D / 2);
  const __m512i low = _mm512_set1_epi8(15);
  const int64_t end = row0 + nrows;
  for (int64_t blk = row0 / kRows; blk * kRows < end; ++blk) {
    const uint8_t* p = blocks + std::size_t(blk) * block_bytes;
    for (int w = 0; w < words; ++w) {
      const __m512i x = _mm512_loadu_si512(p + 64 * std::size_t(w));
      _mm512_store_si512(b + 128 * std::size_t(w), _mm512_and_si512(x, low));
      _mm512_store_si512(b + 128 * std::size_t(w) + 64, _mm512_and_si512(_mm512_srli_epi16(x, 4), low));
    }
    const int64_t first_row = blk * kRows;
    const int first = int(std::max(row0, first_row) - first_row), last = int(std::min(end, first_row + kRows) - first_row);
    float scales[kRows] = {}, scored[kRows];
    const bool whole = first == 0 && last == kRows;
    if (!whole)
      for (int i = first; i < last; ++i) scales[i] = rs[first_row + i];
    for (int g = 0; g < groups; ++g) {
      _tile_zero(0);
      const int8_t* a = qa + std::size_t(g) * 16 * Dp;
      for (int c = 0; c < chunks; ++c) {
        _tile_loadd(1, a + 64 * c, Dp);
        _tile_loadd(2, b + 1024 * std::size_t(c), 64);
        _tile_dpbsud(0, 1, 2);
      }
      _tile_stored(0, sums, 64);
      const int m_end = std::min(16, nq - 16 * g);
      for (int m = 0; m < m_end; ++m) {
        const int j = 16 * g + m;
        if (whole) {
          scale16(sums[m], bias[j], rs + first_row, qs[j], out + std::size_t(j) * ldo + (first_row - row0), acc);
          continue;
        }
        scale16(sums[m], bias[j], scales, qs[j], scored, false);
        for (int i = first; i < last; ++i) {
          float& o = out[std::size_t(j) * ldo + (first_row + i - row0)];
          o = acc ? o + scored[i] : scored[i];
        }
      }
    }
  }
  _tile_release();
}

}  // namespace

const DotKernels& amx_dot_kernels() {
  static const DotKernels table = [] {
    DotKernels t = kDotKernelsAvx512;
    t.i4b = &kernel_i4b_amx;
    t.name = "amx";
    return t;
  }();
  return table;
}

}  // namespace ivcr::search
