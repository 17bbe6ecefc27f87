// int4 rows in blocks of 16 (DType::I4B16): the layout the engine gives a first-stage copy it
// scans whole (engine/first_stage.cpp), so that one vector holds one score per row.
//
// The rows' bytes are those of the row-major int4 layout (dot_kernels.h): byte j of a row holds
// dim 32 (j / 16) + j % 16 in its low nibble and dim 32 (j / 16) + 16 + j % 16 in its high one,
// each stored as value + 8. Rows go in blocks of 16 (the last one padded with zero bytes); a
// block is the rows' 4-byte words side by side: word w of row i at byte 64 w + 4 i of the block.
//
// Why: the row-major kernel sums each row's products across a vector's lanes and reduces the
// lanes row by row, and walks 8 rows at once; here a block's word w of every row is one 64-byte
// load, multiplied by query word w broadcast to all lanes (vpdpbusd), so lane i accumulates row
// i's dot product with no reduction, and the scan reads its bytes in order. On two Zen 4 threads,
// 1M rows of 256 dims from memory: as fast as a loop that only reads the bytes, and 1.41x the
// row-major AVX-512 kernel at B=1 (bench_search.py -k int4_blocks; docs/BENCHMARKS.md).
#pragma once
#include <cstddef>
#include <cstdint>

namespace ivcr::search {

constexpr int kI4BlockRows = 16;

// Bytes of `rows` rows of `dim` dims in blocks (whole blocks: the last one padded).
inline std::size_t int4_blocks_bytes(int64_t rows, int dim) {
  return std::size_t((rows + kI4BlockRows - 1) / kI4BlockRows) * kI4BlockRows * std::size_t(dim / 2);
}

// Row-major packed int4 rows (rows x dim / 2 bytes) -> the block layout above, into `out`
// (int4_blocks_bytes(rows, dim) bytes; padding rows zero).
void interleave_int4_rows(const uint8_t* rows, int64_t n_rows, int dim, uint8_t* out);

// One query's int8 values (held as int16, within -127..127) as the block kernels read them: per
// row word w (8 dims), the 4 query bytes for its low nibbles then the 4 for its high ones (D bytes
// in all, D a multiple of 32).
inline void arrange_i4_block_query(const int16_t* q, int D, int8_t* out) {
  for (int j = 0; j < D / 2; ++j) {  // byte j of a row
    const int w = j / 4, k = j % 4, d = 32 * (j / 16) + j % 16;
    out[8 * w + k] = int8_t(q[d]);
    out[8 * w + 4 + k] = int8_t(q[d + 16]);
  }
}

}  // namespace ivcr::search
