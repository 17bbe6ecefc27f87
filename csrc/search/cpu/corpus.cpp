#include "search/cpu/corpus.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "common/thread_pool.h"
#include "search/cpu/dot_kernels.h"
#include "search/cpu/int4_blocks.h"
#include "search/cpu/topk_collector.h"

namespace ivcr::search {
namespace {

constexpr float kNegInf = -__builtin_inff();
constexpr std::size_t kMaxPrefetchBytes = 16384;  // per channel and run: a few videos' rows

// Queries in the form each channel's kernel wants: float32 with the channel weight folded in, or
// integers with a per-query scale: int16 for int8 channels (query rounding error ~1e-5), and
// int8's range for int4 ones, whose kernel multiplies bytes (its rows' own rounding, a sixteenth
// of their range, is far the larger error; a first stage's shortlist is re-ranked exactly).
struct PreparedQueries {
  std::vector<bool> active;  // channels with a zero weight are not read at all
  std::vector<std::vector<float>> f;
  std::vector<std::vector<int16_t>> q16;
  std::vector<std::vector<float>> qscale;
};

PreparedQueries prepare(const std::vector<Channel>& channels, const QueryBatch& q) {
  PreparedQueries p;
  const std::size_t C = channels.size();
  p.f.resize(C);
  p.q16.resize(C);
  p.qscale.resize(C);
  p.active.resize(C);
  for (std::size_t c = 0; c < C; ++c) {
    p.active[c] = q.weights[c] != 0.f;
    const int D = channels[c].dim;
    const float w = q.weights[c];
    const float* src = q.per_channel[c];
    const std::size_t n = std::size_t(q.batch) * D;
    if (channels[c].dtype == DType::F32 || channels[c].dtype == DType::F16) {
      p.f[c].resize(n);
      for (std::size_t i = 0; i < n; ++i) p.f[c][i] = w * src[i];
      continue;
    }
    // |sum| <= 127 * qmax * D must fit in int32.
    const double qmax = channels[c].int4()
                            ? 127.0
                            : std::min(32767.0, std::floor(2147483647.0 / (127.0 * std::max(D, 1))));
    p.q16[c].resize(n);
    p.qscale[c].resize(q.batch);
    for (int64_t b = 0; b < q.batch; ++b) {
      const float* row = src + std::size_t(b) * D;
      float m = 0;
      for (int d = 0; d < D; ++d) m = std::max(m, std::fabs(w * row[d]));
      const float scale = m > 0 ? float(m / qmax) : 0.f;
      p.qscale[c][b] = scale;
      for (int d = 0; d < D; ++d)
        p.q16[c][std::size_t(b) * D + d] = scale > 0 ? int16_t(std::lrint(w * row[d] / scale)) : int16_t(0);
    }
  }
  return p;
}

// tile[b * ldo + r] = sum over channels of w_c <q_c[b0 + b], e_c[row0 + r]> for b < B. The scans
// score every query (kFromRow false: b0 is a compile-time 0, so their hot loop carries no offset);
// the exact stage of a staged ranking scores one query row at a time (kFromRow true).
template <bool kFromRow>
void score_tile(const DotKernels& K, const std::vector<Channel>& channels, const PreparedQueries& pq, int64_t B,
                int64_t row0, int nrows, float* tile, int ldo, int64_t b0) {
  if constexpr (!kFromRow) b0 = 0;
  bool written = false;
  for (std::size_t c = 0; c < channels.size(); ++c) {
    if (!pq.active[c]) continue;
    const Channel& ch = channels[c];
    const std::size_t off = std::size_t(row0) * ch.dim;
    const std::size_t qoff = std::size_t(b0) * ch.dim;  // the first query's values
    const bool acc = written;
    written = true;
    switch (ch.dtype) {
      case DType::F32:
        K.f32(pq.f[c].data() + qoff, int(B), ch.dim, static_cast<const float*>(ch.data) + off, nrows, tile, ldo, acc);
        break;
      case DType::F16:
        K.f16(pq.f[c].data() + qoff, int(B), ch.dim, static_cast<const uint16_t*>(ch.data) + off, nrows, tile, ldo, acc);
        break;
      case DType::I8:
        K.i8(pq.q16[c].data() + qoff, pq.qscale[c].data() + b0, int(B), ch.dim, static_cast<const int8_t*>(ch.data) + off,
             ch.scales + row0, nrows, tile, ldo, acc);
        break;
      case DType::I4:
        K.i4(pq.q16[c].data() + qoff, pq.qscale[c].data() + b0, int(B), ch.dim,
             static_cast<const uint8_t*>(ch.data) + std::size_t(row0) * ch.row_bytes(), ch.scales + row0, nrows,
             tile, ldo, acc);
        break;
      case DType::I4B16:
        K.i4b(pq.q16[c].data() + qoff, pq.qscale[c].data() + b0, int(B), ch.dim, static_cast<const uint8_t*>(ch.data),
              ch.scales, row0, nrows, tile, ldo, acc);
        break;
    }
  }
  if (!written) std::fill(tile, tile + std::size_t(B) * ldo, 0.f);
}

// max(from, s[0..n)): four running maxima, so a video's clips are not one chain of dependent
// compares (a 10-clip video's max cost as much as a third of its rows' int4 scoring). A NaN
// never wins, as with std::max; only a -0/+0 tie may come out with either sign.
inline float max_of(float from, const float* s, int n) {
  float m[4] = {from, from, from, from};
  int i = 0;
  for (; i + 4 <= n; i += 4)
    for (int j = 0; j < 4; ++j) m[j] = std::max(m[j], s[i + j]);
  for (; i < n; ++i) m[0] = std::max(m[0], s[i]);
  return std::max(std::max(m[0], m[1]), std::max(m[2], m[3]));
}

// Prefetches rows [a, b) of every channel the query reads (at most kMaxPrefetchBytes each): the
// next run of a filtered scan, or the next video of a shortlist, while this one is scored.
void prefetch_rows(const std::vector<Channel>& channels, const PreparedQueries& pq, int64_t a, int64_t b) {
  for (std::size_t c = 0; c < channels.size(); ++c) {
    if (!pq.active[c]) continue;  // a channel the query does not weigh is never read
    const Channel& ch = channels[c];
    const char* p = ch.rows_at(a);
    const std::size_t bytes = std::min(ch.rows_bytes(a, b), kMaxPrefetchBytes);
    for (std::size_t o = 0; o < bytes; o += 64) __builtin_prefetch(p + o);
    if (ch.scales) __builtin_prefetch(ch.scales + a);
  }
}

// Rows per block: the score tile (rows x B floats) stays within a few hundred KB of cache.
int block_rows(int64_t B) { return int(std::clamp<int64_t>(4096 / std::max<int64_t>(B, 1), 12, 1024)); }

struct WorkerState {
  std::vector<float> tile;
  std::vector<TopKCollector> heaps;  // one top-k collector per query
  // video aggregation state, one per query
  std::vector<float> agg_m, agg_s;
};

// Writes the best k_out of every worker's collector for each query, best first, padded.
void merge_heaps(std::vector<WorkerState>& workers, int64_t B, int64_t k_out, float* scores, int64_t* ids) {
  std::vector<Scored> all;
  for (int64_t b = 0; b < B; ++b) {
    all.clear();
    for (auto& w : workers)
      if (!w.heaps.empty()) all.insert(all.end(), w.heaps[b].items().begin(), w.heaps[b].items().end());
    write_best(all, k_out, scores + b * k_out, ids + b * k_out);
  }
}

}  // namespace

const char* Channel::rows_at(int64_t a) const {
  if (dtype == DType::I4B16) a -= a % kI4BlockRows;
  return static_cast<const char*>(data) + std::size_t(a) * row_bytes();
}

std::size_t Channel::rows_bytes(int64_t a, int64_t b) const {
  if (b <= a) return 0;
  if (dtype == DType::I4B16) {
    a -= a % kI4BlockRows;
    b += (kI4BlockRows - b % kI4BlockRows) % kI4BlockRows;
  }
  return std::size_t(b - a) * row_bytes();
}

CpuCorpus::CpuCorpus(std::vector<Channel> channels, const int64_t* offsets, int64_t n_videos)
    : channels_(std::move(channels)), offsets_(offsets), n_videos_(n_videos) {
  if (channels_.empty()) throw std::invalid_argument("a corpus needs at least one channel");
  rows_ = channels_[0].rows;
  for (const Channel& c : channels_) {
    if (c.rows != rows_) throw std::invalid_argument("all channels must have the same number of rows");
    if (c.int4() && (c.dim % 32 != 0 || c.dim > 4096))
      throw std::invalid_argument("int4 channels need a dimension that is a multiple of 32, at most 4096");
  }
  if (offsets_[0] != 0 || offsets_[n_videos_] != rows_)
    throw std::invalid_argument("offsets must start at 0 and end at the number of rows");
  for (int64_t v = 0; v < n_videos_; ++v)
    if (offsets_[v + 1] < offsets_[v]) throw std::invalid_argument("offsets must be non-decreasing");
}

template <class Consume>
void CpuCorpus::scan(const QueryBatch& q, int64_t k_out, bool align_to_videos, const VideoFilter& filter,
                     float* scores, int64_t* ids, const Consume& consume) const {
  const int64_t B = q.batch;
  const int n_workers = num_threads();
  std::vector<WorkerState> workers(n_workers);
  if (B == 0) return;
  if (rows_ == 0 || k_out == 0) {
    merge_heaps(workers, B, k_out, scores, ids);
    return;
  }
  const PreparedQueries pq = prepare(channels_, q);
  const DotKernels& K = active_dot_kernels();
  const int rows_per_block = block_rows(B);

  // Row ranges handed to workers; for video aggregation they start and end on video boundaries,
  // so one worker sees every clip of a video.
  const int64_t n_tasks = std::clamp<int64_t>((rows_ + 2047) / 2048, 1, int64_t(n_workers) * 8);
  std::vector<int64_t> cuts{0};
  for (int64_t t = 1; t < n_tasks; ++t) {
    int64_t r = rows_ * t / n_tasks;
    if (align_to_videos) r = *std::lower_bound(offsets_, offsets_ + n_videos_ + 1, r);
    if (r > cuts.back() && r < rows_) cuts.push_back(r);
  }
  cuts.push_back(rows_);

  const auto video_of = [&](int64_t row) {
    return int64_t(std::upper_bound(offsets_, offsets_ + n_videos_ + 1, row) - offsets_) - 1;
  };

  parallel_for(cuts.size() - 1, [&](std::size_t task, int worker) {
    WorkerState& ws = workers[worker];
    if (ws.heaps.empty()) {
      ws.heaps.resize(B);
      for (auto& h : ws.heaps) h.reset(k_out);
      ws.tile.resize(std::size_t(rows_per_block) * B);
      ws.agg_m.resize(B);
      ws.agg_s.resize(B);
    }
    const int64_t r0 = cuts[task], r1 = cuts[task + 1];
    // Blocks sit on a global grid of rows_per_block, so how a video is cut into blocks (and
    // hence the float rounding of its running aggregate) does not depend on the thread count.
    // first_video: the video of row a or one before it (handlers step forward from it: a binary
    // search per run cost more than scoring a shortlisted video's rows)
    const auto run_blocks = [&](int64_t a, int64_t b, int64_t first_video) {  // (by value: advanced per block)
      for (int64_t row = a; row < b;) {
        const int n = int(std::min<int64_t>((row / rows_per_block + 1) * rows_per_block, b) - row);
        score_tile<false>(K, channels_, pq, B, row, n, ws.tile.data(), n, 0);
        first_video = consume(ws, row, n, n, first_video);  // the video the block ended in
        row += n;
      }
    };
    if (!filter.active()) {
      run_blocks(r0, r1, video_of(r0));
      return;
    }
    // Only eligible videos are scanned: a filtered video costs no memory traffic at all. A
    // shortlist's videos lie scattered, each a few KB, so the hardware prefetcher cannot see the
    // next one coming: the next run's rows are prefetched while this one is scored.
    const auto next_eligible = [&](int64_t v) {
      while (v < n_videos_ && offsets_[v] < r1 && !filter.eligible(v)) ++v;
      return v;
    };
    int64_t v = next_eligible(video_of(r0));
    while (v < n_videos_ && offsets_[v] < r1) {
      int64_t e = v;
      while (e < n_videos_ && offsets_[e] < r1 && filter.eligible(e)) ++e;
      const int64_t next = next_eligible(e);
      if (next < n_videos_ && offsets_[next] < r1)
        prefetch_rows(channels_, pq, offsets_[next], std::min(r1, offsets_[next + 1]));
      run_blocks(std::max(r0, offsets_[v]), std::min(r1, offsets_[e]), v);
      v = next;
    }
  });
  merge_heaps(workers, B, k_out, scores, ids);
}

void CpuCorpus::topk_clips(const QueryBatch& q, int64_t k_out, const VideoFilter& filter, float* scores,
                           int64_t* ids) const {
  const int64_t B = q.batch;
  scan(q, k_out, false, filter, scores, ids, [B](WorkerState& ws, int64_t row0, int n, int ldo, int64_t video) {
    for (int64_t b = 0; b < B; ++b) ws.heaps[b].push_run(ws.tile.data() + b * ldo, n, row0);
    return video;
  });
}

void CpuCorpus::topk_videos(const QueryBatch& q, int64_t k_out, Agg agg, float temperature,
                            const VideoFilter& filter, float* scores, int64_t* ids) const {
  if (agg == Agg::LogSumExp && !(temperature > 0)) throw std::invalid_argument("temperature must be > 0");
  const int64_t B = q.batch;
  const int64_t* off = offsets_;
  const float inv_t = 1.f / temperature;
  // A block may hold the end of one video, several whole ones and the start of another; the
  // running state (max, or sum, or log-sum-exp pair) carries over between blocks of a task.
  scan(q, k_out, true, filter, scores, ids, [=](WorkerState& ws, int64_t row0, int n, int ldo, int64_t v) {
    int64_t r = row0;
    const int64_t end = row0 + n;
    while (r < end) {
      while (off[v + 1] <= r) ++v;  // step over the video just finished and any empty ones
      const int64_t seg_end = std::min(end, off[v + 1]);
      const bool first = r == off[v];
      const int i0 = int(r - row0), i1 = int(seg_end - row0);
      if (agg == Agg::Max && first && seg_end == off[v + 1]) {  // a whole video in this block: the common case
        for (int64_t b = 0; b < B; ++b) {
          const float* s = ws.tile.data() + b * ldo;
          ws.heaps[b].push(max_of(kNegInf, s + i0, i1 - i0), v);
        }
        r = seg_end;
        continue;
      }
      for (int64_t b = 0; b < B; ++b) {
        const float* s = ws.tile.data() + b * ldo;
        float& m = ws.agg_m[b];
        float& acc = ws.agg_s[b];
        if (agg == Agg::Max) {
          m = max_of(first ? kNegInf : m, s + i0, i1 - i0);
        } else if (agg == Agg::Mean) {
          float sum = first ? 0.f : acc;
          for (int i = i0; i < i1; ++i) sum += s[i];
          acc = sum;
        } else {
          const float mx = max_of(kNegInf, s + i0, i1 - i0);
          float sum = first ? 0.f : acc;
          float cur = first ? mx : m;
          if (mx > cur) {  // rescale the running sum to the new maximum
            sum *= std::exp((cur - mx) * inv_t);
            cur = mx;
          }
          for (int i = i0; i < i1; ++i) sum += std::exp((s[i] - cur) * inv_t);
          m = cur;
          acc = sum;
        }
      }
      if (seg_end == off[v + 1]) {
        const float count = float(off[v + 1] - off[v]);
        for (int64_t b = 0; b < B; ++b) {
          float score;
          if (agg == Agg::Max) score = ws.agg_m[b];
          else if (agg == Agg::Mean) score = ws.agg_s[b] / count;
          else score = ws.agg_m[b] + temperature * std::log(ws.agg_s[b] / count);
          ws.heaps[b].push(score, v);
        }
      }
      r = seg_end;
    }
    return v;
  });
}

void CpuCorpus::topk_videos_among(const QueryBatch& q, int64_t k_out, const int64_t* candidates,
                                  int64_t n_candidates, float* scores, int64_t* ids) const {
  const int64_t B = q.batch;
  if (B == 0) return;
  // Each row's candidates in row order (ascending ids), so the scan walks memory forwards and
  // prefetches the next video's rows while it scores this one, as the filtered scan does; then
  // tasks of a few candidates of one query each, so a single query's shortlist still runs on
  // every thread. A video is never split between tasks, so its max (and the result) does not
  // depend on the thread count or on the order candidates were given in.
  std::vector<int64_t> sorted(candidates, candidates + B * n_candidates);
  for (int64_t b = 0; b < B; ++b) std::sort(sorted.begin() + b * n_candidates, sorted.begin() + (b + 1) * n_candidates);
  constexpr int64_t kPerTask = 32;
  const int64_t chunks = std::max<int64_t>(1, (n_candidates + kPerTask - 1) / kPerTask);
  std::vector<std::vector<Scored>> found(std::size_t(B * chunks));
  if (rows_ > 0 && k_out > 0 && n_candidates > 0) {
    const PreparedQueries pq = prepare(channels_, q);
    const DotKernels& K = active_dot_kernels();
    constexpr int kBlock = 256;  // rows scored per kernel call
    parallel_for(std::size_t(B * chunks), [&](std::size_t task, int) {
      const int64_t b = int64_t(task) / chunks, c0 = (int64_t(task) % chunks) * kPerTask;
      const int64_t c1 = std::min(n_candidates, c0 + kPerTask);
      const int64_t* cand = sorted.data() + b * n_candidates;
      TopKCollector heap;
      heap.reset(k_out);
      float tile[kBlock];
      for (int64_t i = c0; i < c1; ++i) {
        const int64_t v = cand[i];
        if (v < 0 || offsets_[v + 1] == offsets_[v]) continue;
        if (i + 1 < c1) prefetch_rows(channels_, pq, offsets_[cand[i + 1]], offsets_[cand[i + 1] + 1]);
        float mx = kNegInf;
        for (int64_t row = offsets_[v]; row < offsets_[v + 1];) {
          const int n = int(std::min<int64_t>(kBlock, offsets_[v + 1] - row));
          score_tile<true>(K, channels_, pq, 1, row, n, tile, n, b);
          mx = max_of(mx, tile, n);
          row += n;
        }
        heap.push(mx, v);
      }
      found[task] = heap.items();
    });
  }
  std::vector<Scored> all;
  for (int64_t b = 0; b < B; ++b) {
    all.clear();
    for (int64_t c = 0; c < chunks; ++c) all.insert(all.end(), found[b * chunks + c].begin(), found[b * chunks + c].end());
    write_best(all, k_out, scores + b * k_out, ids + b * k_out);
  }
}

}  // namespace ivcr::search
