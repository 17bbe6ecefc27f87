// The tile kernels, written once against a SIMD "traits" type S that provides:
//   W (floats per vector), vf, zero(), load(const float*), load_h(const uint16_t*),
//   fma(a, b, acc), hsum(vf);
//   WI (int8 lanes per step), vq (WI int16 lanes), vi (int32 accumulators), izero(),
//   load_i8(const int8_t*) -> vq (widened to int16), load_i16(const int16_t*) -> vq,
//   dot_i16(vi acc, vq a, vq b) (adjacent int16 products summed into int32 lanes), ihsum(vi),
//   ihsum8(const vi* acc, int32_t* out) (eight accumulators reduced at once: out[i] = ihsum(acc[i])).
// The int4 kernels take a traits type N with the integer members above for 16 int16 lanes
// (WI == 16), plus load_i4(const uint8_t* p, vq& lo, vq& hi): 16 bytes unpacked into their low
// nibbles (dims 0-15 of a group) and high nibbles (dims 16-31), as stored (0..15, the value + 8).
// N is S where S::WI == 16.
// Every corpus row goes through the same accumulation order whatever its position in a tile,
// so equal rows give bit-identical scores and ties are broken only by id.
#pragma once
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "search/cpu/dot_kernels.h"

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
// Eight (row, query) pairs reduce together where the tile has exactly eight (see I8RowTile).
// Integer sums are exact and the scaling is the same two float products whatever the tile, so
// equal rows still score bit-identically.
template <class S, int R, int NQ>
inline void finish_int(const typename S::vi* acc, int Dv, int D, const int8_t* E, const int16_t* Q,
                       const int32_t* minus, const float* rowscale, const float* qscale, float* out, int ldo,
                       bool acc_out) {
  int32_t sums[R * NQ];
  if constexpr (R * NQ == 8) {
    S::ihsum8(acc, sums);
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

// int4 rows (layout in dot_kernels.h): per group of 32 dims, one 16-byte load gives both nibble
// halves, each multiplied with its 16 query values. Twice the dims per byte of int8, so a
// memory-bound B=1 scan of the same width reads half the bytes. Nibbles are stored biased (value
// + 8), so unpacking is a mask and a shift (sign-extending took four shifts a load, and cost a
// fifth of the scan); ``bias[j]`` = 8 * sum of query j's values is taken off each sum.
template <class N, int R, int NQ>
inline void tile_i4(const int16_t* Q, const float* qscale, const int32_t* bias, int D, const uint8_t* E,
                    const float* rowscale, float* out, int ldo, bool acc_out) {
  static_assert(N::WI == 16, "int4 groups are 32 dims: 16 int16 lanes per nibble half");
  typename N::vi acc[R][NQ];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < NQ; ++j) acc[i][j] = N::izero();
  const int row_bytes = D / 2;
  for (int d = 0; d < D; d += 32) {
    typename N::vq qlo[NQ], qhi[NQ];
    for (int j = 0; j < NQ; ++j) {
      qlo[j] = N::load_i16(Q + j * D + d);
      qhi[j] = N::load_i16(Q + j * D + d + 16);
    }
    for (int i = 0; i < R; ++i) {
      typename N::vq lo, hi;
      N::load_i4(E + i * row_bytes + d / 2, lo, hi);
      for (int j = 0; j < NQ; ++j) acc[i][j] = N::dot_i16(N::dot_i16(acc[i][j], lo, qlo[j]), hi, qhi[j]);
    }
  }
  finish_int<N, R, NQ>(&acc[0][0], D, D, nullptr, nullptr, bias, rowscale, qscale, out, ldo, acc_out);
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

template <class N, int NQ>
void rows_i4(const int16_t* Q, const float* qs, int D, const uint8_t* E, const float* rs, int nrows, float* out,
             int ldo, bool acc) {
  constexpr int R = I8RowTile<NQ>::value;
  const std::size_t row_bytes = std::size_t(D) / 2;
  int32_t bias[NQ];
  for (int j = 0; j < NQ; ++j) {
    int32_t sum = 0;
    for (int d = 0; d < D; ++d) sum += Q[j * D + d];
    bias[j] = 8 * sum;
  }
  int r = 0;
  for (; r + R <= nrows; r += R) tile_i4<N, R, NQ>(Q, qs, bias, D, E + r * row_bytes, rs + r, out + r, ldo, acc);
  for (; r < nrows; ++r) tile_i4<N, 1, NQ>(Q, qs, bias, D, E + r * row_bytes, rs + r, out + r, ldo, acc);
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

// N: the int4 traits (S itself where its integer vectors hold 16 int16 lanes).
template <class S, class N = S>
constexpr DotKernels make_table(const char* name) {
  return DotKernels{&kernel_float<S, F32Rows>, &kernel_float<S, F16Rows>, &kernel_i8<S>, &kernel_i4<N>, name};
}

}  // namespace ivcr::search::impl
