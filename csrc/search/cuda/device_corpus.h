// The CUDA search corpus: the same data model and result convention as the CPU CpuCorpus, with
// the channels resident in device memory. Plain C++ interface (no CUDA types) so the bindings
// compile with the host compiler. Only built when nvcc is found.
//
// A search walks the rows in chunks (aligned to video boundaries for video-level search):
//   1. one fused kernel scores a tile of rows x queries over every channel (shared-memory tiles,
//      weights folded in, int8 rows scaled) into a bounded chunk buffer (never B x N);
//   2. for video search, a kernel aggregates each video's clip scores (max/mean/log-sum-exp);
//   3. a block-wide bitonic sort selects each segment's best candidates on the device;
//   4. the host merges the candidates into per-query bounded top-k collectors (the CPU path's TopKCollector).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "search/cpu/corpus.h"

namespace ivcr::cuda {

class DeviceCorpus {
 public:
  // Copies the channels, the offsets and the row -> video map to the device (cudaMalloc).
  DeviceCorpus(const std::vector<ivcr::search::Channel>& channels, const int64_t* offsets, int64_t n_videos);
  ~DeviceCorpus();
  DeviceCorpus(const DeviceCorpus&) = delete;
  DeviceCorpus& operator=(const DeviceCorpus&) = delete;

  int64_t rows() const { return rows_; }
  int64_t videos() const { return n_videos_; }
  std::size_t device_bytes() const { return device_bytes_; }

  void topk_clips(const ivcr::search::QueryBatch& q, int64_t k_out, const ivcr::search::VideoFilter& filter,
                  float* scores, int64_t* ids) const;
  void topk_videos(const ivcr::search::QueryBatch& q, int64_t k_out, ivcr::search::Agg agg, float temperature,
                   const ivcr::search::VideoFilter& filter, float* scores, int64_t* ids) const;

 private:
  struct Impl;
  void search(const ivcr::search::QueryBatch& q, int64_t k_out, bool videos, ivcr::search::Agg agg,
              float temperature, const ivcr::search::VideoFilter& filter, float* scores, int64_t* ids) const;

  std::unique_ptr<Impl> impl_;
  std::vector<int64_t> offsets_;  // host copy, for chunking
  int64_t rows_ = 0, n_videos_ = 0;
  std::size_t device_bytes_ = 0;
};

// Device-to-device copy bandwidth in GB/s (bytes copied per second), the physical reference for
// the search benchmarks.
double memcpy_bandwidth_gbs(std::size_t bytes, int repeats);

}  // namespace ivcr::cuda
