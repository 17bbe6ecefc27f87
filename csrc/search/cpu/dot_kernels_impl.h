// The tile kernels, written once against a SIMD "traits" type S that provides:
//   W (floats per vector), vf, zero(), load(const float*), load_h(const uint16_t*),
//   fma(a, b, acc), hsum(vf);
//   WI (int8 lanes per step), vq (WI int16 lanes), vi (int32 accumulators), izero(),
//   load_i8(const int8_t*) -> vq (widened to int16), load_i16(const int16_t*) -> vq,
//   dot_i16(vi acc, vq a, vq b) (adjacent int16 products summed into int32 lanes), ihsum(vi),
//   ihsum8(const vi* acc, int32_t* out) (eight accumulators reduced at once: out[i] = ihsum(acc[i])).
// Every corpus row goes through the same accumulation order whatever its position in a tile,
// so equal rows give bit-identical scores and ties are broken only by id.
#pragma once
#include <cstddef>
#include <cstdint>

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
  // Eight (row, query) pairs reduce together where the tile has exactly eight (see I8RowTile).
  // Integer sums are exact and the scaling is the same two float products whatever the tile, so
  // equal rows still score bit-identically.
  int32_t sums[R * NQ];
  if constexpr (R * NQ == 8) {
    S::ihsum8(&acc[0][0], sums);
  } else {
    for (int i = 0; i < R; ++i)
      for (int j = 0; j < NQ; ++j) sums[i * NQ + j] = S::ihsum(acc[i][j]);
  }
  if (Dv < D)  // (kept out of the scaling loop below, which then compiles branch-free)
    for (int i = 0; i < R; ++i)
      for (int j = 0; j < NQ; ++j)
        for (int d = Dv; d < D; ++d) sums[i * NQ + j] += int32_t(E[i * D + d]) * int32_t(Q[j * D + d]);
  if (acc_out) {
    for (int i = 0; i < R; ++i)
      for (int j = 0; j < NQ; ++j) out[j * ldo + i] += float(sums[i * NQ + j]) * rowscale[i] * qscale[j];
  } else {
    for (int i = 0; i < R; ++i)
      for (int j = 0; j < NQ; ++j) out[j * ldo + i] = float(sums[i * NQ + j]) * rowscale[i] * qscale[j];
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
template <class S, class Rows>
void kernel_float(const float* Q, int nq, int D, const typename Rows::T* E, int nrows, float* out, int ldo, bool acc) {
  int b = 0;
  for (; b + 4 <= nq; b += 4)
    rows_float<S, Rows, 4>(Q + std::size_t(b) * D, D, E, nrows, out + std::size_t(b) * ldo, ldo, acc);
  const float* q = Q + std::size_t(b) * D;
  float* o = out + std::size_t(b) * ldo;
  switch (nq - b) {
    case 3: rows_float<S, Rows, 3>(q, D, E, nrows, o, ldo, acc); break;
    case 2: rows_float<S, Rows, 2>(q, D, E, nrows, o, ldo, acc); break;
    case 1: rows_float<S, Rows, 1>(q, D, E, nrows, o, ldo, acc); break;
    default: break;
  }
}

template <class S>
void kernel_i8(const int16_t* Q, const float* qs, int nq, int D, const int8_t* E, const float* rs, int nrows,
               float* out, int ldo, bool acc) {
  int b = 0;
  for (; b + 4 <= nq; b += 4)
    rows_i8<S, 4>(Q + std::size_t(b) * D, qs + b, D, E, rs, nrows, out + std::size_t(b) * ldo, ldo, acc);
  const int16_t* q = Q + std::size_t(b) * D;
  float* o = out + std::size_t(b) * ldo;
  switch (nq - b) {
    case 3: rows_i8<S, 3>(q, qs + b, D, E, rs, nrows, o, ldo, acc); break;
    case 2: rows_i8<S, 2>(q, qs + b, D, E, rs, nrows, o, ldo, acc); break;
    case 1: rows_i8<S, 1>(q, qs + b, D, E, rs, nrows, o, ldo, acc); break;
    default: break;
  }
}

template <class S>
constexpr DotKernels make_table(const char* name) {
  return DotKernels{&kernel_float<S, F32Rows>, &kernel_float<S, F16Rows>, &kernel_i8<S>, name};
}

}  // namespace ivcr::search::impl
