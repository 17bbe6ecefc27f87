#include "search/cuda/device_corpus.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <stdexcept>
#include <string>

#include "search/cpu/topk_collector.h"

namespace ivcr::cuda {
namespace {

using ivcr::search::Agg;
using ivcr::search::Channel;
using ivcr::search::DType;

#define IVCR_CUDA_CHECK(expr) check_cuda((expr), #expr, __FILE__, __LINE__)

void check_cuda(cudaError_t err, const char* what, const char* file, int line) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("CUDA error: ") + cudaGetErrorString(err) + " in " + what + " (" + file +
                             ":" + std::to_string(line) + ")");
}

void check_launch(const char* kernel) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("CUDA kernel ") + kernel + " failed: " + cudaGetErrorString(err));
}

// Owning device allocation (cudaMalloc, never managed memory).
template <class T>
class DeviceArray {
 public:
  DeviceArray() = default;
  explicit DeviceArray(std::size_t n) { reset(n); }
  ~DeviceArray() { release(); }
  DeviceArray(DeviceArray&& o) noexcept : ptr_(o.ptr_), n_(o.n_) { o.ptr_ = nullptr; o.n_ = 0; }
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    if (this != &o) {
      release();
      ptr_ = o.ptr_;
      n_ = o.n_;
      o.ptr_ = nullptr;
      o.n_ = 0;
    }
    return *this;
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  void reset(std::size_t n) {
    release();
    if (n) IVCR_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&ptr_), n * sizeof(T)));
    n_ = n;
  }
  void upload(const T* host, std::size_t n) {
    reset(n);
    if (n) IVCR_CUDA_CHECK(cudaMemcpy(ptr_, host, n * sizeof(T), cudaMemcpyHostToDevice));
  }
  void download(T* host, std::size_t n) const {
    if (n) IVCR_CUDA_CHECK(cudaMemcpy(host, ptr_, n * sizeof(T), cudaMemcpyDeviceToHost));
  }
  T* get() const { return ptr_; }
  std::size_t bytes() const { return n_ * sizeof(T); }

 private:
  void release() {
    if (ptr_) cudaFree(ptr_);
    ptr_ = nullptr;
    n_ = 0;
  }
  T* ptr_ = nullptr;
  std::size_t n_ = 0;
};

// ---- kernels ------------------------------------------------------------------------------

constexpr int kMaxChannels = 8;
constexpr int TQ = 16;   // queries per block
constexpr int TR = 64;   // rows per block (4 per thread)
constexpr int TD = 32;   // dimensions per shared-memory step
constexpr int kSeg = 2048;         // scores per selection block
constexpr int kSelectThreads = 1024;

struct DevChannel {
  int dtype;             // 0 float32, 1 float16, 2 int8
  const void* data;      // rows x dim
  const float* scales;   // int8 only
  const float* q;        // B x dim queries on the device
  int dim;
  float weight;
};

struct DevChannels {
  DevChannel c[kMaxChannels];
  int n;
};

struct DevFilter {
  const uint64_t* bits;  // nullptr: no filter
  int64_t n_words;
  int allow;
};

__device__ inline bool eligible(const DevFilter& f, int64_t v) {
  if (!f.bits) return true;
  const bool set = (v >> 6) < f.n_words && ((f.bits[v >> 6] >> (v & 63)) & 1ull);
  return f.allow ? set : !set;
}

__device__ inline float load_elem(int dtype, const void* data, std::size_t i) {
  if (dtype == 0) return static_cast<const float*>(data)[i];
  if (dtype == 1) return __half2float(static_cast<const __half*>(data)[i]);
  return float(static_cast<const int8_t*>(data)[i]);
}

// S[b * ldS + r] = sum_c w_c * <q_c[b], e_c[r0 + r]> for a TQ x TR tile per block: the query and
// row tiles of each channel pass through shared memory TD dimensions at a time; each thread owns
// one query and four rows (rows tx + 16 m), so a warp reads shared memory without bank conflicts.
__global__ void score_chunk_kernel(DevChannels ch, int B, int64_t r0, int nrows, float* S, int64_t ldS) {
  __shared__ float Qs[TQ][TD + 1];
  __shared__ float Es[TR][TD + 1];
  const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * 16 + tx;
  const int qb = blockIdx.y * TQ;
  const int rb = blockIdx.x * TR;
  float total[4] = {0.f, 0.f, 0.f, 0.f};
  for (int c = 0; c < ch.n; ++c) {
    const DevChannel cc = ch.c[c];
    float acc[4] = {0.f, 0.f, 0.f, 0.f};
    for (int d0 = 0; d0 < cc.dim; d0 += TD) {
      for (int e = tid; e < TQ * TD; e += 256) {
        const int qi = e / TD, d = e % TD, qg = qb + qi, dg = d0 + d;
        Qs[qi][d] = (qg < B && dg < cc.dim) ? cc.q[std::size_t(qg) * cc.dim + dg] : 0.f;
      }
      for (int e = tid; e < TR * TD; e += 256) {  // consecutive threads read consecutive dims: coalesced
        const int ri = e / TD, d = e % TD, rg = rb + ri, dg = d0 + d;
        Es[ri][d] = (rg < nrows && dg < cc.dim) ? load_elem(cc.dtype, cc.data, std::size_t(r0 + rg) * cc.dim + dg)
                                                : 0.f;
      }
      __syncthreads();
#pragma unroll 8
      for (int d = 0; d < TD; ++d) {
        const float qv = Qs[ty][d];
#pragma unroll
        for (int m = 0; m < 4; ++m) acc[m] = fmaf(qv, Es[tx + 16 * m][d], acc[m]);
      }
      __syncthreads();
    }
#pragma unroll
    for (int m = 0; m < 4; ++m) {
      const int rg = rb + tx + 16 * m;
      const float scale = (cc.scales && rg < nrows) ? cc.scales[r0 + rg] : 1.f;
      total[m] += cc.weight * scale * acc[m];
    }
  }
  const int qg = qb + ty;
  if (qg >= B) return;
#pragma unroll
  for (int m = 0; m < 4; ++m) {
    const int rg = rb + tx + 16 * m;
    if (rg < nrows) S[std::size_t(qg) * ldS + rg] = total[m];
  }
}

// VS[b * ldV + i] = aggregate of video (v0 + i)'s clip scores in the chunk buffer; -inf for an
// empty or filtered video. One thread per (query, video).
__global__ void aggregate_videos_kernel(const float* S, int64_t ldS, int B, const int64_t* offsets, int64_t v0,
                                        int nv, int64_t r0, int agg, float temperature, DevFilter f, float* VS,
                                        int64_t ldV) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  const int b = blockIdx.y;
  if (i >= nv || b >= B) return;
  const int64_t v = v0 + i;
  const int64_t a = offsets[v] - r0, e = offsets[v + 1] - r0;
  float out = -INFINITY;
  if (e > a && eligible(f, v)) {
    const float* s = S + std::size_t(b) * ldS;
    float m = -INFINITY;
    for (int64_t r = a; r < e; ++r) m = fmaxf(m, s[r]);
    if (agg == 0) {
      out = m;
    } else if (agg == 1) {
      float sum = 0.f;
      for (int64_t r = a; r < e; ++r) sum += s[r];
      out = sum / float(e - a);
    } else {
      float sum = 0.f;
      for (int64_t r = a; r < e; ++r) sum += expf((s[r] - m) / temperature);
      out = m + temperature * logf(sum / float(e - a));
    }
  }
  VS[std::size_t(b) * ldV + i] = out;
}

__device__ inline bool better(float sa, int ia, float sb, int ib) { return sa > sb || (sa == sb && ia < ib); }

// Each block sorts one segment of kSeg scores of one query in shared memory (bitonic, best first,
// ties by lower id; NaN and ineligible count as -inf) and writes its best kk as candidates.
__global__ void select_segments_kernel(const float* S, int64_t ldS, int n, int64_t id_base, const int32_t* row_video,
                                       DevFilter f, int kk, int nseg, float* cand_s, int64_t* cand_i) {
  __shared__ float key[kSeg];
  __shared__ int idx[kSeg];
  const int seg = blockIdx.x, b = blockIdx.y;
  for (int t = threadIdx.x; t < kSeg; t += blockDim.x) {
    const int i = seg * kSeg + t;
    float v = -INFINITY;
    int id = INT_MAX;
    if (i < n) {
      v = S[std::size_t(b) * ldS + i];
      id = i;
      const int64_t video = row_video ? int64_t(row_video[id_base + i]) : id_base + i;
      if (v != v || !eligible(f, video)) v = -INFINITY;
    }
    key[t] = v;
    idx[t] = id;
  }
  __syncthreads();
  for (int k = 2; k <= kSeg; k <<= 1) {
    for (int j = k >> 1; j > 0; j >>= 1) {
      for (int t = threadIdx.x; t < kSeg; t += blockDim.x) {
        const int p = t ^ j;
        if (p > t) {
          const bool first_half = (t & k) == 0;  // this pair sorts best-first, the other half worst-first
          const bool swap = first_half ? better(key[p], idx[p], key[t], idx[t]) : better(key[t], idx[t], key[p], idx[p]);
          if (swap) {
            const float ks = key[t];
            key[t] = key[p];
            key[p] = ks;
            const int is = idx[t];
            idx[t] = idx[p];
            idx[p] = is;
          }
        }
      }
      __syncthreads();
    }
  }
  for (int t = threadIdx.x; t < kk; t += blockDim.x) {
    const std::size_t o = (std::size_t(b) * nseg + seg) * kk + t;
    const bool real = key[t] != -INFINITY;
    cand_s[o] = key[t];
    cand_i[o] = real ? id_base + idx[t] : -1;
  }
}

int dtype_code(DType d) { return d == DType::F32 ? 0 : d == DType::F16 ? 1 : 2; }

void require_device() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error(std::string("no CUDA device available: ") + cudaGetErrorString(err));
  }
  if (count == 0) throw std::runtime_error("no CUDA device available: the runtime reports 0 devices");
}

}  // namespace

struct DeviceCorpus::Impl {
  std::vector<Channel> host;                  // dtype/dim/rows of each channel
  std::vector<DeviceArray<uint8_t>> data;     // device copies of the values
  std::vector<DeviceArray<float>> scales;     // int8 channels
  DeviceArray<int64_t> offsets;
  DeviceArray<int32_t> row_video;
};

DeviceCorpus::DeviceCorpus(const std::vector<Channel>& channels, const int64_t* offsets, int64_t n_videos)
    : impl_(std::make_unique<Impl>()), offsets_(offsets, offsets + n_videos + 1), n_videos_(n_videos) {
  require_device();
  if (channels.empty()) throw std::invalid_argument("a corpus needs at least one channel");
  if (int(channels.size()) > kMaxChannels)
    throw std::invalid_argument("the CUDA corpus takes at most " + std::to_string(kMaxChannels) + " channels");
  if (n_videos >= INT32_MAX) throw std::invalid_argument("too many videos for the CUDA corpus (int32 video ids)");
  rows_ = channels[0].rows;
  for (const Channel& c : channels) {
    if (c.rows != rows_) throw std::invalid_argument("all channels must have the same number of rows");
    if (c.int4())  // a first-stage format of the CPU scan; the GPU scans int8 at its bandwidth
      throw std::invalid_argument("int4 channels are searched on the CPU only; pass int8 or float to the CUDA corpus");
  }
  if (offsets_[0] != 0 || offsets_[n_videos] != rows_)
    throw std::invalid_argument("offsets must start at 0 and end at the number of rows");
  std::vector<int32_t> row_video(rows_);
  for (int64_t v = 0; v < n_videos; ++v) {
    if (offsets_[v + 1] < offsets_[v]) throw std::invalid_argument("offsets must be non-decreasing");
    for (int64_t r = offsets_[v]; r < offsets_[v + 1]; ++r) row_video[r] = int32_t(v);
  }
  impl_->host = channels;
  for (const Channel& c : channels) {
    const std::size_t elem = c.dtype == DType::F32 ? 4 : c.dtype == DType::F16 ? 2 : 1;
    DeviceArray<uint8_t> d;
    d.upload(static_cast<const uint8_t*>(c.data), std::size_t(c.rows) * c.dim * elem);
    device_bytes_ += d.bytes();
    impl_->data.push_back(std::move(d));
    DeviceArray<float> s;
    if (c.dtype == DType::I8) s.upload(c.scales, std::size_t(c.rows));
    device_bytes_ += s.bytes();
    impl_->scales.push_back(std::move(s));
  }
  impl_->offsets.upload(offsets_.data(), offsets_.size());
  impl_->row_video.upload(row_video.data(), row_video.size());
  device_bytes_ += impl_->offsets.bytes() + impl_->row_video.bytes();
}

DeviceCorpus::~DeviceCorpus() = default;

void DeviceCorpus::topk_clips(const ivcr::search::QueryBatch& q, int64_t k_out, const ivcr::search::VideoFilter& f,
                              float* scores, int64_t* ids) const {
  search(q, k_out, false, Agg::Max, 1.f, f, scores, ids);
}

void DeviceCorpus::topk_videos(const ivcr::search::QueryBatch& q, int64_t k_out, Agg agg, float temperature,
                               const ivcr::search::VideoFilter& f, float* scores, int64_t* ids) const {
  if (agg == Agg::LogSumExp && !(temperature > 0)) throw std::invalid_argument("temperature must be > 0");
  search(q, k_out, true, agg, temperature, f, scores, ids);
}

void DeviceCorpus::search(const ivcr::search::QueryBatch& q, int64_t k_out, bool videos, Agg agg, float temperature,
                          const ivcr::search::VideoFilter& filter, float* scores, int64_t* ids) const {
  using ivcr::search::Scored;
  using ivcr::search::TopKCollector;
  const int64_t B = q.batch;
  if (B == 0) return;
  if (B > 65535) throw std::invalid_argument("the CUDA search takes at most 65535 queries per call");
  std::vector<TopKCollector> heaps(B);
  for (auto& h : heaps) h.reset(k_out);

  if (rows_ > 0 && k_out > 0) {
    // Queries of the channels that weigh anything; the others are not read at all.
    DevChannels dc{};
    std::vector<DeviceArray<float>> dq;
    for (std::size_t c = 0; c < impl_->host.size(); ++c) {
      if (q.weights[c] == 0.f) continue;
      const Channel& h = impl_->host[c];
      DeviceArray<float> a;
      a.upload(q.per_channel[c], std::size_t(B) * h.dim);
      dc.c[dc.n] = DevChannel{dtype_code(h.dtype), impl_->data[c].get(),
                              h.dtype == DType::I8 ? impl_->scales[c].get() : nullptr, a.get(), h.dim, q.weights[c]};
      ++dc.n;
      dq.push_back(std::move(a));
    }
    DeviceArray<uint64_t> fbits;
    DevFilter df{nullptr, 0, 0};
    if (filter.active()) {
      fbits.upload(filter.bits, std::size_t(filter.n_words));
      df = DevFilter{fbits.get(), filter.n_words, filter.allow ? 1 : 0};
    }

    // Chunks: about 64M scores of buffer; for videos, whole videos only (a longer video gets a
    // chunk of its own, and the buffer grows to fit it).
    struct Chunk {
      int64_t r0, r1, v0, v1;  // rows [r0, r1); for video search also videos [v0, v1)
    };
    const int64_t target = std::max<int64_t>(4096, (int64_t(1) << 26) / B);
    std::vector<Chunk> chunks;
    if (!videos) {
      for (int64_t r = 0; r < rows_; r += target) chunks.push_back({r, std::min(rows_, r + target), 0, 0});
    } else {
      for (int64_t v = 0; v < n_videos_;) {
        int64_t e = v + 1;
        while (e < n_videos_ && offsets_[e + 1] - offsets_[v] <= target) ++e;
        chunks.push_back({offsets_[v], offsets_[e], v, e});
        v = e;
      }
    }
    int64_t widest = 1, most_videos = 1;
    for (const Chunk& c : chunks) {
      widest = std::max(widest, c.r1 - c.r0);
      most_videos = std::max(most_videos, c.v1 - c.v0);
    }
    DeviceArray<float> S(std::size_t(B) * widest);
    DeviceArray<float> VS(videos ? std::size_t(B) * most_videos : 0);
    const int64_t kk = std::min<int64_t>(k_out, kSeg);
    std::vector<float> host_s;
    std::vector<int64_t> host_i;
    for (const Chunk& c : chunks) {
      const int nrows = int(c.r1 - c.r0);
      if (nrows == 0) continue;  // only empty videos
      dim3 block(16, 16), grid(unsigned((nrows + TR - 1) / TR), unsigned((B + TQ - 1) / TQ));
      score_chunk_kernel<<<grid, block>>>(dc, int(B), c.r0, nrows, S.get(), widest);
      check_launch("score_chunk_kernel");

      // What the selection ranks: clip scores (ids = rows, filtered through the row -> video
      // map), or video aggregates (ids = videos, filtered videos already -inf).
      const float* src = S.get();
      int64_t ld = widest, id_base = c.r0;
      int n = nrows;
      const int32_t* row_video = impl_->row_video.get();
      DevFilter select_filter = df;
      if (videos) {
        const int nv = int(c.v1 - c.v0);
        dim3 ab(128), ag(unsigned((nv + 127) / 128), unsigned(B));
        aggregate_videos_kernel<<<ag, ab>>>(S.get(), widest, int(B), impl_->offsets.get(), c.v0, nv, c.r0,
                                            agg == Agg::Max ? 0 : agg == Agg::Mean ? 1 : 2, temperature, df, VS.get(),
                                            nv);
        check_launch("aggregate_videos_kernel");
        src = VS.get();
        ld = nv;
        id_base = c.v0;
        n = nv;
        row_video = nullptr;
        select_filter = DevFilter{nullptr, 0, 0};
      }
      const int nseg = (n + kSeg - 1) / kSeg;
      DeviceArray<float> cs(std::size_t(B) * nseg * kk);
      DeviceArray<int64_t> ci(std::size_t(B) * nseg * kk);
      const dim3 sg{unsigned(nseg), unsigned(B)};
      select_segments_kernel<<<sg, kSelectThreads>>>(src, ld, n, id_base, row_video, select_filter, int(kk), nseg,
                                                     cs.get(), ci.get());
      check_launch("select_segments_kernel");
      host_s.resize(std::size_t(B) * nseg * kk);
      host_i.resize(host_s.size());
      cs.download(host_s.data(), host_s.size());
      ci.download(host_i.data(), host_i.size());
      for (int64_t b = 0; b < B; ++b)
        for (std::size_t t = 0; t < std::size_t(nseg) * kk; ++t) {
          const std::size_t o = std::size_t(b) * nseg * kk + t;
          if (host_i[o] >= 0) heaps[b].push(host_s[o], host_i[o]);
        }
    }
  }
  // Best first, padded: the CPU path's convention.
  std::vector<Scored> all;
  for (int64_t b = 0; b < B; ++b) {
    all = heaps[b].items();
    std::sort(all.begin(), all.end(), [](const Scored& x, const Scored& y) { return ivcr::search::ranks_after(y, x); });
    for (int64_t i = 0; i < k_out; ++i) {
      const bool have = std::size_t(i) < all.size();
      scores[b * k_out + i] = have ? all[i].score : -INFINITY;
      ids[b * k_out + i] = have ? all[i].id : -1;
    }
  }
}

double memcpy_bandwidth_gbs(std::size_t bytes, int repeats) {
  require_device();
  DeviceArray<uint8_t> src(bytes), dst(bytes);
  IVCR_CUDA_CHECK(cudaMemset(src.get(), 1, bytes));
  cudaEvent_t t0, t1;
  IVCR_CUDA_CHECK(cudaEventCreate(&t0));
  IVCR_CUDA_CHECK(cudaEventCreate(&t1));
  float best_ms = 1e30f;
  for (int r = 0; r < std::max(1, repeats); ++r) {
    IVCR_CUDA_CHECK(cudaEventRecord(t0));
    IVCR_CUDA_CHECK(cudaMemcpy(dst.get(), src.get(), bytes, cudaMemcpyDeviceToDevice));
    IVCR_CUDA_CHECK(cudaEventRecord(t1));
    IVCR_CUDA_CHECK(cudaEventSynchronize(t1));
    float ms = 0;
    IVCR_CUDA_CHECK(cudaEventElapsedTime(&ms, t0, t1));
    best_ms = std::min(best_ms, ms);
  }
  cudaEventDestroy(t0);
  cudaEventDestroy(t1);
  return double(bytes) / (best_ms * 1e-3) / 1e9;
}

}  // namespace ivcr::cuda
