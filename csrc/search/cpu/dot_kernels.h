// Tile kernels of the blocked scan: out[b * ldo + r] (+)= dot(query b, corpus row r) for a small
// group of queries against a block of rows. One implementation (dot_kernels_impl.h) is compiled
// once per ISA with different SIMD traits; the scan picks a table at run time.
#pragma once
#include <cstdint>

#include "common/cpu_features.h"

namespace ivcr::search {

struct DotKernels {
  // float32 corpus; Q holds nq rows of D floats (weights already folded in).
  void (*f32)(const float* Q, int nq, int D, const float* E, int nrows, float* out, int ldo, bool accumulate);
  // float16 corpus (IEEE half bits), float32 query, float32 accumulation.
  void (*f16)(const float* Q, int nq, int D, const uint16_t* E, int nrows, float* out, int ldo, bool accumulate);
  // int8 corpus with per-row scales; the query is int16 with a per-query scale (weight folded
  // in), so out += qscale[b] * rowscale[r] * (exact integer dot).
  void (*i8)(const int16_t* Q, const float* qscale, int nq, int D, const int8_t* E, const float* rowscale,
             int nrows, float* out, int ldo, bool accumulate);
  // int4 corpus with per-row scales, D a multiple of 32 and rows of D / 2 bytes: each group of 32
  // dims is 16 bytes, byte j holding dim j in its low nibble and dim j + 16 in its high nibble,
  // each stored as value + 8 (values -8..7); D <= 4096. Queries as for int8 but within int8's
  // range (-127..127): the kernel multiplies bytes.
  void (*i4)(const int16_t* Q, const float* qscale, int nq, int D, const uint8_t* E, const float* rowscale,
             int nrows, float* out, int ldo, bool accumulate);
  // The same int4 rows in blocks of 16 (int4_blocks.h): `blocks` and `rowscale` are the whole
  // channel's, and out[b * ldo + r] (+)= the score of row row0 + r, r < nrows; a row scores
  // bit-identically to i4's.
  void (*i4b)(const int16_t* Q, const float* qscale, int nq, int D, const uint8_t* blocks, const float* rowscale,
              int64_t row0, int nrows, float* out, int ldo, bool accumulate);
  const char* name;
};

extern const DotKernels kDotKernelsScalar;
extern const DotKernels kDotKernelsAvx2;
extern const DotKernels kDotKernelsAvx512;
// The AVX-512 table with the blocked int4 scan on AMX tiles for batches (kernels_amx.cpp).
const DotKernels& amx_dot_kernels();

// The table for the active SIMD level (see common/cpu_features.h).
const DotKernels& active_dot_kernels();

// Portable IEEE half -> float (used by the scalar path and by tests of it).
float half_to_float(uint16_t h);

}  // namespace ivcr::search
