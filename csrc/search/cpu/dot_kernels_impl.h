// The tile kernels, written once against a SIMD "traits" type S that provides:
//   W (floats per vector), vf, zero(), load(const float*), load_h(const uint16_t*),
//   fma(a, b, acc), hsum(vf);
//   WI (int8 lanes per step), vq (WI int16 lanes), vi (int32 accumulators), izero(),
//   load_i8(const int8_t*) -> vq (widened to int16), load_i16(const int16_t*) -> vq,
//   dot_i16(vi acc, vq a, vq b) (adjacent int16 products summed into int32 lanes), ihsum(vi),
//   ihsum8(const vi* acc, int32_t* out) (eight accumulators reduced at once: out[i] = ihsum(acc[i])).
// The int4 kernels take a traits type N with izero(), ihsum(vi), ihsum8() as above and, over
// byte lanes (vb, 16 per 32-dim group): kGroups (groups per step); load_b(const int8_t*) (a step's
// half of query bytes); load_i4(const uint8_t* p, int groups, vb& lo, vb& hi): ``groups`` groups
// (16 bytes each, at most kGroups) into their low nibbles and their high nibbles, as stored (0..15,
// the value + 8), the lanes past them zero; vs (partial sums), szero(); dot_u8i8(vs acc, vb lo,
// vb qlo, vb hi, vb qhi): acc plus the products lo*qlo + hi*qhi (unsigned nibbles times signed
// query bytes) summed into its lanes; kStepsPerWiden (steps whose partial sums cannot overflow);
// widen_add(vi acc, vs part): part's lanes summed into acc's int32 lanes. Integer sums are exact,
// so every table gives the same scores whatever the order.
// Every corpus row goes through the same accumulation order whatever its position in a tile,
// so equal rows give bit-identical scores and ties are broken only by id.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "search/cpu/dot_kernels.h"
#include "search/cpu/int4_blocks.h"
#include "search/cpu/kernel_scratch.h"

namespace ivcr::search::impl {

// How a float-like corpus row is read: float32 as is, float16 converted per vector.
struct F32Rows {
  using T = float;
  template <class S> static typename S::vf load(const T* p) { return S::load(p); }
  static float scalar(T v) { return v; }
};
struct F16Rows {
  using T = uint16_t;
  template <class S> static typename S::vf load(const T* p) { return S::load_h(p); }
  static float scalar(T v) { return half_to_float(v); }
};

// R rows x NQ queries per register tile: R*NQ accumulators stay in registers.
template <class S, class Rows, int R, int NQ>
inline void tile_float(const float* Q, int D, const typename Rows::T* E, float* out, int ldo, bool acc_out) {
  typename S::vf acc[R][NQ];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < NQ; ++j) acc[i][j] = S::zero();
  const int Dv = D - D % S::W;
  for (int d = 0; d < Dv; d += S::W) {
    typename S::vf q[NQ];
    for (int j = 0; j < NQ; ++j) q[j] = S::load(Q + j * D + d);
    for (int i = 0; i < R; ++i) {
      const typename S::vf e = Rows::template load<S>(E + i * D + d);
      for (int j = 0; j < NQ; ++j) acc[i][j] = S::fma(e, q[j], acc[i][j]);
    }
  }
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < NQ; ++j) {
      float s = S::hsum(acc[i][j]);
      for (int d = Dv; d < D; ++d) s += Rows::scalar(E[i * D + d]) * Q[j * D + d];
      float& o = out[j * ldo + i];
      o = acc_out ? o + s : s;
    }
}

// Reduces an integer tile's R x NQ accumulators, adds the int8 tail dims past Dv (E, Q: the rows
// and queries; none for int4, whose D is whole groups), takes each query's ``minus`` off (int4's
// storage bias; none for int8), and writes the scaled scores.
// Eight (row, query) pairs reduce together where the tile has a multiple of eight (see I8RowTile).
// Integer sums are exact and the scaling is the same two float products whatever the tile, so
// equal rows still score bit-identically.
template <class S, int R, int NQ>
inline void finish_int(const typename S::vi* acc, int Dv, int D, const int8_t* E, const int16_t* Q,
                       const int32_t* minus, const float* rowscale, const float* qscale, float* out, int ldo,
                       bool acc_out) {
  int32_t sums[R * NQ];
  if constexpr (R * NQ % 8 == 0) {
    for (int i = 0; i < R * NQ; i += 8) S::ihsum8(acc + i, sums + i);
  } else {
    for (int i = 0; i < R * NQ; ++i) sums[i] = S::ihsum(acc[i]);
  }
  if (Dv < D)  // (kept out of the scaling loop below, which then compiles branch-free)
    for (int i = 0; i < R; ++i)
      for (int j = 0; j < NQ; ++j)
        for (int d = Dv; d < D; ++d) sums[i * NQ + j] += int32_t(E[i * D + d]) * int32_t(Q[j * D + d]);
  if (minus)
    for (int i = 0; i < R; ++i)
      for (int j = 0; j < NQ; ++j) sums[i * NQ + j] -= minus[j];
  // Scaled into a local tile first: stores to ``out`` could alias the row scales, which kept the
  // compiler from vectorising the products (8 scalar convert-multiply-multiply-stores per tile).
  float scaled[R * NQ];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < NQ; ++j) scaled[i * NQ + j] = float(sums[i * NQ + j]) * rowscale[i] * qscale[j];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < NQ; ++j) out[j * ldo + i] = acc_out ? out[j * ldo + i] + scaled[i * NQ + j] : scaled[i * NQ + j];
}

template <class S, int R, int NQ>
inline void tile_i8(const int16_t* Q, const float* qscale, int D, const int8_t* E, const float* rowscale,
                    float* out, int ldo, bool acc_out) {
  typename S::vi acc[R][NQ];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < NQ; ++j) acc[i][j] = S::izero();
  const int Dv = D - D % S::WI;
  for (int d = 0; d < Dv; d += S::WI) {
    typename S::vq q[NQ];
    for (int j = 0; j < NQ; ++j) q[j] = S::load_i16(Q + j * D + d);
    for (int i = 0; i < R; ++i) {
      const typename S::vq e = S::load_i8(E + i * D + d);
      for (int j = 0; j < NQ; ++j) acc[i][j] = S::dot_i16(acc[i][j], e, q[j]);
    }
  }
  finish_int<S, R, NQ>(&acc[0][0], Dv, D, E, Q, nullptr, rowscale, qscale, out, ldo, acc_out);
}

// int4 rows (layout in dot_kernels.h), int8 queries: a step of N::kGroups groups (64 dims for
// 256-bit traits, 128 for 512-bit ones) is one load of their bytes, whose low nibbles (dims 0-15 of
// each group) and high nibbles (dims 16-31) are multiplied as unsigned bytes with the query's signed
// bytes. With 256-bit maddubs that is 9 instructions for 64 dims, where int16 queries took 14 and
// kept the B=1 scan of the 128 MB text copy at half the memory's speed; VNNI's vpdpbusd fuses the
// multiply, the pair sums and the int32 accumulation (6 for 128 dims at 512 bits). Nibbles are
// stored biased (value + 8), so unpacking is a mask and a shift; ``bias[j]`` = 8 * sum of query j's
// values is taken off each sum. A last step with fewer groups (D not a multiple of the step) loads
// only its bytes, the query zero past D.
// Q8: per query, per step, the query bytes for the low nibbles then those for the high ones
// (arrange_i4_query). kOneChunk: D <= step * kStepsPerWiden, so the int32 accumulators are only
// written at the end and hold no registers during the loop (at 4 queries x 2 rows they spilled
// the partial sums).
template <class N, int R, int NQ, bool kOneChunk>
inline void tile_i4(const int8_t* Q8, const float* qscale, const int32_t* bias, int D, const uint8_t* E,
                    const float* rowscale, float* out, int ldo, bool acc_out) {
  constexpr int SD = 32 * N::kGroups;  // dims per step
  typename N::vi acc[R][NQ];
  if constexpr (!kOneChunk)
    for (int i = 0; i < R; ++i)
      for (int j = 0; j < NQ; ++j) acc[i][j] = N::izero();
  const int row_bytes = D / 2, steps = (D + SD - 1) / SD, q_bytes = steps * SD;
  // Partial sums stay in their narrow lanes for up to kStepsPerWiden steps, then widen into the
  // int32 accumulators: for the 256-bit maddubs traits one widening a row at the 256 dims of a
  // text copy; VNNI sums into int32 from the start and never needs one.
  for (int s0 = 0; s0 < steps; s0 += N::kStepsPerWiden) {
    typename N::vs part[R][NQ];
    for (int i = 0; i < R; ++i)
      for (int j = 0; j < NQ; ++j) part[i][j] = N::szero();
    const int s1 = steps - s0 > N::kStepsPerWiden ? s0 + N::kStepsPerWiden : steps;
    for (int s = s0; s < s1; ++s) {
      const int left = (D - SD * s) / 32, groups = left < N::kGroups ? left : N::kGroups;
      typename N::vb qlo[NQ], qhi[NQ];
      for (int j = 0; j < NQ; ++j) {
        qlo[j] = N::load_b(Q8 + j * q_bytes + SD * s);
        qhi[j] = N::load_b(Q8 + j * q_bytes + SD * s + SD / 2);
      }
      for (int i = 0; i < R; ++i) {
        typename N::vb lo, hi;
        N::load_i4(E + i * row_bytes + SD / 2 * s, groups, lo, hi);
        for (int j = 0; j < NQ; ++j) part[i][j] = N::dot_u8i8(part[i][j], lo, qlo[j], hi, qhi[j]);
      }
    }
    for (int i = 0; i < R; ++i)
      for (int j = 0; j < NQ; ++j) acc[i][j] = N::widen_add(kOneChunk ? N::izero() : acc[i][j], part[i][j]);
  }
  finish_int<N, R, NQ>(&acc[0][0], D, D, nullptr, nullptr, bias, rowscale, qscale, out, ldo, acc_out);
}

// One query's int16 values (within int8's range: corpus.cpp quantises int4 channels' queries so)
// in tile_i4's step order for steps of G groups (SD = 32 G dims): for each step, the first 16 dims
// of each of its groups, then the last 16 of each; zero past D.
template <int G>
inline void arrange_i4_query(const int16_t* q, int D, int8_t* out) {
  constexpr int SD = 32 * G;
  const int steps = (D + SD - 1) / SD;
  for (int s = 0; s < steps; ++s)
    for (int half = 0; half < 2; ++half)      // low nibbles, high nibbles
      for (int g = 0; g < G; ++g)             // the step's groups
        for (int j = 0; j < 16; ++j) {
          const int d = SD * s + 32 * g + 16 * half + j;
          out[SD * s + SD / 2 * half + 16 * g + j] = d < D ? int8_t(q[d]) : int8_t(0);
        }
}

// Row-tile height per query-group width: keeps R*NQ <= 12 accumulators (16 vector registers).
template <int NQ> struct RowTile { static constexpr int value = NQ == 4 ? 3 : 4; };

// A block of rows in tiles of RowTile<NQ>, the remainder one row at a time.
template <class S, class Rows, int NQ>
void rows_float(const float* Q, int D, const typename Rows::T* E, int nrows, float* out, int ldo, bool acc) {
  constexpr int R = RowTile<NQ>::value;
  int r = 0;
  for (; r + R <= nrows; r += R) tile_float<S, Rows, R, NQ>(Q, D, E + std::size_t(r) * D, out + r, ldo, acc);
  for (; r < nrows; ++r) tile_float<S, Rows, 1, NQ>(Q, D, E + std::size_t(r) * D, out + r, ldo, acc);
}

// int8 tiles of 8 accumulators where the query group allows (1 query x 8 rows, the B=1 scan of a
// first stage; 2 x 4; 4 x 2): their reduction is one ihsum8 instead of a horizontal sum per pair,
// which at 48-128 dims cost as much as the multiply-adds and kept the scan below memory speed.
template <int NQ> struct I8RowTile {
  static constexpr int value = NQ == 1 ? 8 : NQ == 2 ? 4 : NQ == 4 ? 2 : RowTile<NQ>::value;
};

template <class S, int NQ>
void rows_i8(const int16_t* Q, const float* qs, int D, const int8_t* E, const float* rs, int nrows, float* out,
             int ldo, bool acc) {
  constexpr int R = I8RowTile<NQ>::value;
  int r = 0;
  for (; r + R <= nrows; r += R) tile_i8<S, R, NQ>(Q, qs, D, E + std::size_t(r) * D, rs + r, out + r, ldo, acc);
  for (; r < nrows; ++r) tile_i8<S, 1, NQ>(Q, qs, D, E + std::size_t(r) * D, rs + r, out + r, ldo, acc);
}

// Queries go in groups of 4 (the register tile width); the last group may be narrower.
// ``run(b, group)`` handles queries b.. b + group - 1, with the group width a compile-time
// std::integral_constant so each width gets its own register tile.
template <class Run>
inline void by_query_groups(int nq, const Run& run) {
  int b = 0;
  for (; b + 4 <= nq; b += 4) run(b, std::integral_constant<int, 4>{});
  switch (nq - b) {
    case 3: run(b, std::integral_constant<int, 3>{}); break;
    case 2: run(b, std::integral_constant<int, 2>{}); break;
    case 1: run(b, std::integral_constant<int, 1>{}); break;
    default: break;
  }
}

template <class S, class Rows>
void kernel_float(const float* Q, int nq, int D, const typename Rows::T* E, int nrows, float* out, int ldo, bool acc) {
  by_query_groups(nq, [&](int b, auto group) {
    rows_float<S, Rows, decltype(group)::value>(Q + std::size_t(b) * D, D, E, nrows, out + std::size_t(b) * ldo, ldo,
                                                acc);
  });
}

// int4 tiles as int8's, except that traits with 32 vector registers (N::kRowsAt4Queries = 4) take
// 4 rows x 4 queries: 16 accumulators, each step's 8 query vectors loaded once for 4 rows instead
// of 2 (at B=32 on Zen 4, 1.2x the 4 x 2 tile).
template <class N, int NQ> struct I4RowTile {
  static constexpr int value = NQ == 4 ? N::kRowsAt4Queries : I8RowTile<NQ>::value;
};

template <class N, int NQ>
void rows_i4(const int16_t* Q, const float* qs, int D, const uint8_t* E, const float* rs, int nrows, float* out,
             int ldo, bool acc) {
  constexpr int R = I4RowTile<N, NQ>::value;
  constexpr int SD = 32 * N::kGroups;
  const std::size_t row_bytes = std::size_t(D) / 2;
  const int q_bytes = (D + SD - 1) / SD * SD;
  alignas(64) int8_t q8[NQ * 4096];  // D <= 4096 (checked by the corpus), so q_bytes <= 4096 too
  int32_t bias[NQ];
  for (int j = 0; j < NQ; ++j) {
    int32_t sum = 0;
    for (int d = 0; d < D; ++d) sum += Q[j * D + d];
    bias[j] = 8 * sum;
    arrange_i4_query<N::kGroups>(Q + j * D, D, q8 + j * q_bytes);
  }
  const auto rows = [&](auto one_chunk) {
    constexpr bool kOne = decltype(one_chunk)::value;
    int r = 0;
    for (; r + R <= nrows; r += R)
      tile_i4<N, R, NQ, kOne>(q8, qs, bias, D, E + r * row_bytes, rs + r, out + r, ldo, acc);
    for (; r < nrows; ++r) tile_i4<N, 1, NQ, kOne>(q8, qs, bias, D, E + r * row_bytes, rs + r, out + r, ldo, acc);
  };
  if (D <= SD * N::kStepsPerWiden)
    rows(std::true_type{});
  else
    rows(std::false_type{});
}

template <class S>
void kernel_i8(const int16_t* Q, const float* qs, int nq, int D, const int8_t* E, const float* rs, int nrows,
               float* out, int ldo, bool acc) {
  by_query_groups(nq, [&](int b, auto group) {
    rows_i8<S, decltype(group)::value>(Q + std::size_t(b) * D, qs + b, D, E, rs, nrows, out + std::size_t(b) * ldo,
                                       ldo, acc);
  });
}

template <class N>
void kernel_i4(const int16_t* Q, const float* qs, int nq, int D, const uint8_t* E, const float* rs, int nrows,
               float* out, int ldo, bool acc) {
  by_query_groups(nq, [&](int b, auto group) {
    rows_i4<N, decltype(group)::value>(Q + std::size_t(b) * D, qs + b, D, E, rs, nrows, out + std::size_t(b) * ldo,
                                       ldo, acc);
  });
}

// int4 rows in blocks of 16 (int4_blocks.h): the traits N also give, over a block's 16 rows,
// vk (16 int32 lanes, lane i row i) with kzero() and kadd(a, b); Nib, one 64-byte word chunk's
// nibbles (nibbles(const uint8_t*)); kdot(lo, hi, Nib, qlo, qhi), which adds to each lane its row's
// low nibbles times the 4 query bytes of qlo into lo and its high nibbles times qhi's into hi (hi
// in the traits' own scale); and kscores(lo, hi, bias, rowscale, qscale, out, acc): out[i] (+)=
// float(row i's sum - bias) * rowscale[i] * qscale for the 16 rows, finish_int's expression, so
// a row scores bit-identically in either layout. kBlockChains: accumulator pairs one query keeps
// (vpdpbusd's latency hidden behind independent sums).
// A block partly outside [row0, row0 + nrows) (a video's first or last rows) is scored whole, its
// rows' scales read only where they exist, and only its rows in range are written.
// qw_all: per query (`stride` int32 apart), per word, its low-nibble then its high-nibble query
// bytes, each 4 as one int32; bias: per query, 8 x the sum of its values (ArrangedI4).
template <class N, int NQ>
void rows_i4b(const int32_t* qw_all, int stride, const int32_t* bias, const float* qs, int D, const uint8_t* blocks,
              const float* rs, int64_t row0, int nrows, float* out, int ldo, bool acc) {
  constexpr int C = NQ == 1 ? N::kBlockChains : NQ == 2 && N::kBlockChains > 1 ? N::kBlockChains / 2 : 1;
  constexpr int K = kI4BlockRows;
  const int words = D / 8;  // a multiple of 4 (D of 32s), so of C too
  const std::size_t block_bytes = std::size_t(K) * std::size_t(D / 2);
  const int32_t* qw[NQ];
  for (int j = 0; j < NQ; ++j) qw[j] = qw_all + std::size_t(j) * std::size_t(stride);
  const int64_t end = row0 + nrows;
  for (int64_t blk = row0 / K; blk * K < end; ++blk) {
    const uint8_t* p = blocks + std::size_t(blk) * block_bytes;
    typename N::vk lo[NQ][C], hi[NQ][C];
    for (int j = 0; j < NQ; ++j)
      for (int c = 0; c < C; ++c) lo[j][c] = hi[j][c] = N::kzero();
    for (int w = 0; w < words; w += C)
      for (int c = 0; c < C; ++c) {
        const typename N::Nib n = N::nibbles(p + 64 * std::size_t(w + c));
        for (int j = 0; j < NQ; ++j) N::kdot(lo[j][c], hi[j][c], n, qw[j][2 * (w + c)], qw[j][2 * (w + c) + 1]);
      }
    for (int j = 0; j < NQ; ++j)
      for (int c = 1; c < C; ++c) {
        lo[j][0] = N::kadd(lo[j][0], lo[j][c]);
        hi[j][0] = N::kadd(hi[j][0], hi[j][c]);
      }
    const int64_t first_row = blk * K;
    const int first = int(std::max(row0, first_row) - first_row), last = int(std::min(end, first_row + K) - first_row);
    if (first == 0 && last == K) {
      for (int j = 0; j < NQ; ++j)
        N::kscores(lo[j][0], hi[j][0], bias[j], rs + first_row, qs[j], out + j * ldo + (first_row - row0), acc);
      continue;
    }
    float scales[K] = {}, scored[K];
    for (int i = first; i < last; ++i) scales[i] = rs[first_row + i];
    for (int j = 0; j < NQ; ++j) {
      N::kscores(lo[j][0], hi[j][0], bias[j], scales, qs[j], scored, false);
      for (int i = first; i < last; ++i) {
        float& o = out[j * ldo + (first_row + i - row0)];
        o = acc ? o + scored[i] : scored[i];
      }
    }
  }
}

// The queries as the block kernels read them and their biases (8 x the sum of each query's
// values), per thread, remade only when the queries differ from the last call's: a scan calls
// once per block_rows(B) rows (128 at B = 32), and arranging every query on every call was a
// large share of a batch's scan. Per query a row of `stride` int32 words: its D / 4 words
// (arrange_i4_block_query), then zeros to a whole 64 bytes, and zero rows up to a multiple of 16
// queries, so the AMX kernel loads whole 16 x 64-byte tiles from it (kernels_amx.cpp). A template
// on the traits (or a tag), so each kernel file has its own code and its own cache.
struct ArrangedI4 {
  const int32_t* words;
  const int32_t* bias;
  int stride;
};

template <class N>
ArrangedI4 arranged_i4(const int16_t* Q, int nq, int D) {
  thread_local Scratch seen_buf, words_buf, bias_buf;
  thread_local int seen_nq = 0, seen_D = 0;
  const int stride = (D + 63) / 64 * 16;
  const std::size_t n = std::size_t(nq) * std::size_t(D), rows = (std::size_t(nq) + 15) / 16 * 16;
  auto* seen = static_cast<int16_t*>(seen_buf.get(n * sizeof(int16_t)));
  auto* words = static_cast<int32_t*>(words_buf.get(rows * std::size_t(stride) * sizeof(int32_t)));
  auto* bias = static_cast<int32_t*>(bias_buf.get(std::size_t(nq) * sizeof(int32_t)));
  if (seen_nq != nq || seen_D != D || std::memcmp(seen, Q, n * sizeof(int16_t)) != 0) {
    std::memcpy(seen, Q, n * sizeof(int16_t));
    seen_nq = nq, seen_D = D;
    std::memset(words, 0, rows * std::size_t(stride) * sizeof(int32_t));
    for (int j = 0; j < nq; ++j) {
      int32_t sum = 0;
      for (int d = 0; d < D; ++d) sum += Q[std::size_t(j) * D + d];
      bias[j] = 8 * sum;
      arrange_i4_block_query(Q + std::size_t(j) * D, D, reinterpret_cast<int8_t*>(words + std::size_t(j) * stride));
    }
  }
  return {words, bias, stride};
}

template <class N>
void kernel_i4b(const int16_t* Q, const float* qs, int nq, int D, const uint8_t* blocks, const float* rs, int64_t row0,
                int nrows, float* out, int ldo, bool acc) {
  const ArrangedI4 a = arranged_i4<N>(Q, nq, D);
  by_query_groups(nq, [&](int b, auto group) {
    rows_i4b<N, decltype(group)::value>(a.words + std::size_t(b) * a.stride, a.stride, a.bias + b, qs + b, D,
                                        blocks, rs, row0, nrows, out + std::size_t(b) * ldo, ldo, acc);
  });
}

// N: the int4 traits (S itself where its integer vectors hold 16 int16 lanes).
template <class S, class N = S>
constexpr DotKernels make_table(const char* name) {
  return DotKernels{&kernel_float<S, F32Rows>, &kernel_float<S, F16Rows>, &kernel_i8<S>, &kernel_i4<N>,
                    &kernel_i4b<N>, name};
}

}  // namespace ivcr::search::impl
