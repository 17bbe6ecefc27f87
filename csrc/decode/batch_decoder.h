// Videos -> batches of model-ready frames. decode_video runs one file; decode_batch runs many on
// the native pool (videos across workers, FFmpeg frame threads inside each) and turns every
// failure into an error entry for that video; FrameStream yields bounded chunks of a long video.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "decode/frame_converter.h"
#include "decode/frame_sampler.h"
#include "decode/probe.h"
#include "decode/video_decoder.h"

namespace ivcr::decode {

// Bytes owned by native code and handed to numpy without a copy.
class NativeBuffer {
 public:
  NativeBuffer() = default;
  ~NativeBuffer();
  NativeBuffer(const NativeBuffer&) = delete;
  NativeBuffer& operator=(const NativeBuffer&) = delete;
  void reserve(std::size_t bytes);
  uint8_t* grow(std::size_t bytes);  // appends uninitialised bytes, returns their start
  uint8_t* data() { return data_; }
  std::size_t size() const { return size_; }

 private:
  uint8_t* data_ = nullptr;
  std::size_t size_ = 0, cap_ = 0;
};

struct DecodedFrames {
  std::shared_ptr<NativeBuffer> buffer;  // n x H x W x 3 uint8, or n x 3 x H x W float32
  int n = 0, height = 0, width = 0;
  bool is_float = false;
  std::vector<double> pts;        // true presentation time of each returned frame, seconds
  std::vector<double> requested;  // the sampled time each frame answers (= pts for All)
  std::vector<int64_t> indices;   // FrameStream: position of each frame in the requested order
  VideoInfo info;
  long frames_decoded = 0, seeks = 0;  // work done, for tests of the seek policy
  std::string error;  // non-empty when this video failed; the other fields are then empty
};

// codec_threads <= 0: all cores for this one video.
DecodedFrames decode_video(const std::string& path, const SamplerSpec& sampler, const OutputSpec& out,
                           int codec_threads, int stream_index = -1);

struct BatchPlan {
  int video_workers = 1, codec_threads = 1;
};
// Splits a thread budget (<= 0: the native pool size) between videos and codec threads so that
// workers x codec threads stays within the budget.
BatchPlan plan_batch(std::size_t n_videos, int threads);

std::vector<DecodedFrames> decode_batch(const std::vector<std::string>& paths, const SamplerSpec& sampler,
                                        const OutputSpec& out, int threads);

// Streaming: decodes at most chunk_size frames per call, so memory stays bounded however long
// the video and however many frames are sampled.
class FrameStream {
 public:
  FrameStream(const std::string& path, const SamplerSpec& sampler, const OutputSpec& out, int codec_threads,
              int chunk_size, int stream_index = -1);
  // The next chunk; n == 0 when the stream is done.
  DecodedFrames next_chunk();
  const VideoInfo& info() const { return decoder_.info(); }

 private:
  VideoDecoder decoder_;
  FrameConverter converter_;
  OutputSpec out_;
  int chunk_size_;
  bool all_ = false;
  std::vector<double> sorted_;
  std::vector<int64_t> order_;
  std::size_t emitted_ = 0;
  bool done_ = false;
};

}  // namespace ivcr::decode
