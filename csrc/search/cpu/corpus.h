// The CPU search corpus: one or more channels (matrices of clip vectors sharing one clip grid)
// plus the video offsets. Searches run a blocked scan: per block of rows, every channel's tile
// kernel adds its weighted dot products into a small score tile, and a result handler (clip
// top-k, or video aggregation + top-k) consumes the tile. No B x N score matrix is ever formed.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ivcr::search {

// I4: packed pairs, layout in dot_kernels.h; I4B16: the same rows in blocks of 16 (int4_blocks.h)
enum class DType { F32, F16, I8, I4, I4B16 };
enum class Agg { Max, Mean, LogSumExp };

struct Channel {
  DType dtype = DType::F32;
  const void* data = nullptr;       // rows x dim, C-contiguous (int4: rows x dim / 2 bytes; I4B16 in blocks)
  const float* scales = nullptr;    // per-row scales, int8 and int4 only
  int64_t rows = 0;
  int dim = 0;
  bool int4() const { return dtype == DType::I4 || dtype == DType::I4B16; }
  std::size_t row_bytes() const {
    const std::size_t d = std::size_t(dim);
    return dtype == DType::F32 ? 4 * d : dtype == DType::F16 ? 2 * d : dtype == DType::I8 ? d : d / 2;
  }
  // Where rows [a, b) lie: their first byte and how many bytes from there hold them (I4B16: their
  // blocks, whole).
  const char* rows_at(int64_t a) const;
  std::size_t rows_bytes(int64_t a, int64_t b) const;
};

// Allow- or deny-list of videos as a bitset (bit v of word v / 64).
struct VideoFilter {
  const uint64_t* bits = nullptr;
  int64_t n_words = 0;
  bool allow = false;  // true: only set bits are eligible; false: set bits are excluded
  bool active() const { return bits != nullptr; }
  bool eligible(int64_t v) const {
    if (!bits) return true;
    const bool set = (v >> 6) < n_words && ((bits[v >> 6] >> (v & 63)) & 1u);
    return allow ? set : !set;
  }
};

struct QueryBatch {
  std::vector<const float*> per_channel;  // B x dim_c float32 each
  std::vector<float> weights;             // one per channel
  int64_t batch = 0;
};

class CpuCorpus {
 public:
  // offsets: n_videos + 1 non-decreasing row indices, offsets[0] == 0, offsets[n_videos] == rows.
  CpuCorpus(std::vector<Channel> channels, const int64_t* offsets, int64_t n_videos);

  int64_t rows() const { return rows_; }
  int64_t videos() const { return n_videos_; }
  const std::vector<Channel>& channels() const { return channels_; }

  // Results go to caller buffers of batch x k_out (k_out = min(k, rows) for clips and
  // min(k, videos) for videos), sorted best first, padded with id -1 / score -inf.
  void topk_clips(const QueryBatch& q, int64_t k_out, const VideoFilter& filter, float* scores,
                  int64_t* ids) const;
  void topk_videos(const QueryBatch& q, int64_t k_out, Agg agg, float temperature, const VideoFilter& filter,
                   float* scores, int64_t* ids) const;
  // The best k_out of each query's own candidate videos (max over a video's clips): row b of
  // `candidates` (batch x n_candidates) lists distinct video ids, padded with -1. One call for a
  // whole batch whatever its rows' candidates: the exact stage of a staged ranking.
  void topk_videos_among(const QueryBatch& q, int64_t k_out, const int64_t* candidates, int64_t n_candidates,
                         float* scores, int64_t* ids) const;

 private:
  template <class Handler>
  void scan(const QueryBatch& q, int64_t k_out, bool align_to_videos, const VideoFilter& filter, float* scores,
            int64_t* ids, const Handler& make_handler) const;

  std::vector<Channel> channels_;
  const int64_t* offsets_;
  int64_t n_videos_;
  int64_t rows_;
};

}  // namespace ivcr::search
