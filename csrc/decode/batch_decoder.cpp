#include "decode/batch_decoder.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <new>
#include <numeric>

#include "common/thread_pool.h"

namespace ivcr::decode {

namespace {
// swscale's vector code may store a few bytes past the last pixel row.
constexpr std::size_t kTailSlack = 64;

void sort_targets(const std::vector<double>& times, std::vector<double>* sorted, std::vector<int64_t>* order) {
  order->resize(times.size());
  std::iota(order->begin(), order->end(), 0);
  std::stable_sort(order->begin(), order->end(), [&](int64_t a, int64_t b) { return times[a] < times[b]; });
  sorted->resize(times.size());
  for (std::size_t i = 0; i < times.size(); ++i) (*sorted)[i] = times[(*order)[i]];
}

void set_shape(DecodedFrames* r, const FrameConverter& conv, bool is_float) {
  r->height = conv.geometry().out_h;
  r->width = conv.geometry().out_w;
  r->is_float = is_float;
}
}  // namespace

NativeBuffer::~NativeBuffer() { std::free(data_); }

void NativeBuffer::reserve(std::size_t bytes) {
  if (bytes + kTailSlack <= cap_) return;
  void* p = std::realloc(data_, bytes + kTailSlack);
  if (!p) throw std::bad_alloc();
  data_ = static_cast<uint8_t*>(p);
  cap_ = bytes + kTailSlack;
}

uint8_t* NativeBuffer::grow(std::size_t bytes) {
  if (size_ + bytes + kTailSlack > cap_) reserve(std::max(size_ + bytes, cap_ * 2));
  uint8_t* p = data_ + size_;
  size_ += bytes;
  return p;
}

DecodedFrames decode_video(const std::string& path, const SamplerSpec& sampler, const OutputSpec& out,
                           int codec_threads, int stream_index) {
  DecodedFrames r;
  VideoDecoder dec(path, codec_threads, stream_index);
  r.info = dec.info();
  FrameConverter conv(out, dec.rotation());
  r.buffer = std::make_shared<NativeBuffer>();
  const AVFrame* f = nullptr;
  double pts = 0;

  if (sampler.kind == SamplerSpec::Kind::All) {
    dec.begin_all(sampler.start >= 0 ? sampler.start : -1e300, sampler.end);
    while (dec.next(&f, &pts)) {
      if (!conv.prepared()) {
        conv.prepare(f);
        const long est = std::max<long long>(1, r.info.frame_count_estimate);
        r.buffer->reserve(conv.frame_bytes() * std::size_t(est + 1));
      }
      conv.convert(f, r.buffer->grow(conv.frame_bytes()));
      r.pts.push_back(pts);
      ++r.n;
    }
    r.requested = r.pts;
  } else {
    const std::vector<double> times = sample_times(sampler, dec.start_time(), dec.duration());
    std::vector<double> sorted;
    std::vector<int64_t> order;
    sort_targets(times, &sorted, &order);
    dec.begin_targets(sorted);
    r.n = int(times.size());
    r.pts.assign(times.size(), 0.0);
    r.requested = times;
    for (std::size_t k = 0; k < sorted.size(); ++k) {
      if (!dec.next(&f, &pts)) throw DecodeError("decoder stopped before every target was answered");
      if (!conv.prepared()) {
        conv.prepare(f);
        r.buffer->reserve(conv.frame_bytes() * sorted.size());
        r.buffer->grow(conv.frame_bytes() * sorted.size());
      }
      conv.convert(f, r.buffer->data() + conv.frame_bytes() * std::size_t(order[k]));
      r.pts[order[k]] = pts;
    }
  }
  if (r.n == 0 && sampler.kind == SamplerSpec::Kind::All && !conv.prepared()) {
    // A range with no frames is an empty result, but a file with no frames at all is an error.
    if (sampler.start < 0 && sampler.end < 0) throw DecodeError("no decodable video frames in '" + path + "'");
  }
  if (conv.prepared()) set_shape(&r, conv, out.to_float);
  r.frames_decoded = dec.frames_decoded();
  r.seeks = dec.seeks();
  return r;
}

BatchPlan plan_batch(std::size_t n_videos, int threads) {
  const int budget = std::max(1, threads > 0 ? threads : ivcr::num_threads());
  BatchPlan p;
  p.video_workers = int(std::max<std::size_t>(1, std::min<std::size_t>({std::size_t(budget), n_videos,
                                                                         std::size_t(ivcr::num_threads())})));
  p.codec_threads = std::max(1, budget / p.video_workers);
  return p;
}

std::vector<DecodedFrames> decode_batch(const std::vector<std::string>& paths, const SamplerSpec& sampler,
                                        const OutputSpec& out, int threads) {
  std::vector<DecodedFrames> results(paths.size());
  if (paths.empty()) return results;
  const BatchPlan plan = plan_batch(paths.size(), threads);
  const int budget = std::max(1, threads > 0 ? threads : ivcr::num_threads());
  auto run_one = [&](std::size_t i, int codec_threads) {
    try {
      results[i] = decode_video(paths[i], sampler, out, codec_threads);
    } catch (const std::bad_alloc&) {
      results[i] = DecodedFrames{};
      results[i].error = "out of memory while decoding '" + paths[i] + "'";
    } catch (const std::exception& e) {
      results[i] = DecodedFrames{};
      results[i].error = e.what();
    }
  };
  if (plan.video_workers == 1) {
    for (std::size_t i = 0; i < paths.size(); ++i) run_one(i, plan.codec_threads);
    return results;
  }
  // Heaviest first (file size as the cost estimate: no extra open). A video heavier than an even
  // share of all the work left would finish last on one thread while the other workers idle,
  // so such videos run one at a time with every thread inside them; the rest run side by side.
  std::vector<std::uintmax_t> bytes(paths.size(), 0);
  for (std::size_t i = 0; i < paths.size(); ++i) {
    std::error_code ec;
    const std::uintmax_t b = std::filesystem::file_size(paths[i], ec);
    bytes[i] = ec ? 0 : b;
  }
  std::vector<std::size_t> order(paths.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return bytes[a] > bytes[b]; });
  long double left = 0;
  for (std::uintmax_t b : bytes) left += b;
  std::size_t first_shared = 0;
  while (first_shared < order.size() && (long double)bytes[order[first_shared]] * plan.video_workers > left) {
    run_one(order[first_shared], budget);
    left -= bytes[order[first_shared]];
    ++first_shared;
  }
  // One task per worker pulling videos from a shared counter keeps exactly video_workers
  // decoders alive, however many threads the pool has.
  std::atomic<std::size_t> next{first_shared};
  ivcr::parallel_for(std::size_t(plan.video_workers), [&](std::size_t, int) {
    for (std::size_t k = next++; k < order.size(); k = next++) run_one(order[k], plan.codec_threads);
  });
  return results;
}

FrameStream::FrameStream(const std::string& path, const SamplerSpec& sampler, const OutputSpec& out,
                         int codec_threads, int chunk_size, int stream_index)
    : decoder_(path, codec_threads, stream_index), converter_(out, decoder_.rotation()), out_(out),
      chunk_size_(chunk_size) {
  if (chunk_size <= 0) throw std::invalid_argument("chunk_size must be positive");
  all_ = sampler.kind == SamplerSpec::Kind::All;
  if (all_) {
    decoder_.begin_all(sampler.start >= 0 ? sampler.start : -1e300, sampler.end);
  } else {
    const std::vector<double> times = sample_times(sampler, decoder_.start_time(), decoder_.duration());
    sort_targets(times, &sorted_, &order_);
    decoder_.begin_targets(sorted_);
  }
}

DecodedFrames FrameStream::next_chunk() {
  DecodedFrames r;
  r.info = decoder_.info();
  r.buffer = std::make_shared<NativeBuffer>();
  r.is_float = out_.to_float;
  const AVFrame* f = nullptr;
  double pts = 0;
  while (!done_ && r.n < chunk_size_) {
    if (!all_ && emitted_ >= sorted_.size()) {
      done_ = true;
      break;
    }
    if (!decoder_.next(&f, &pts)) {
      done_ = true;
      break;
    }
    if (!converter_.prepared()) converter_.prepare(f);
    if (r.n == 0) r.buffer->reserve(converter_.frame_bytes() * std::size_t(chunk_size_));
    converter_.convert(f, r.buffer->grow(converter_.frame_bytes()));
    r.pts.push_back(pts);
    r.requested.push_back(all_ ? pts : sorted_[emitted_]);
    r.indices.push_back(all_ ? int64_t(emitted_) : order_[emitted_]);
    ++emitted_;
    ++r.n;
  }
  if (converter_.prepared()) set_shape(&r, converter_, out_.to_float);
  return r;
}

}  // namespace ivcr::decode
