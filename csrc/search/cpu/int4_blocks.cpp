#include "search/cpu/int4_blocks.h"

#include <cstring>

namespace ivcr::search {

void interleave_int4_rows(const uint8_t* rows, int64_t n_rows, int dim, uint8_t* out) {
  const std::size_t row_bytes = std::size_t(dim / 2), words = row_bytes / 4;
  const std::size_t block_bytes = kI4BlockRows * row_bytes;
  for (int64_t b = 0; b * kI4BlockRows < n_rows; ++b) {
    uint8_t* blk = out + std::size_t(b) * block_bytes;
    const int64_t first = b * kI4BlockRows;
    for (int i = 0; i < kI4BlockRows; ++i) {
      const bool real = first + i < n_rows;
      const uint8_t* row = rows + std::size_t(first + i) * row_bytes;
      for (std::size_t w = 0; w < words; ++w) {
        uint8_t* dst = blk + 64 * w + 4 * std::size_t(i);
        if (real) std::memcpy(dst, row + 4 * w, 4);
        else std::memset(dst, 0, 4);
      }
    }
  }
}

}  // namespace ivcr::search
