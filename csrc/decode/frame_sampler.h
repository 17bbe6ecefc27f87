// Which presentation times to decode. A sampler turns a video's time range into sorted target
// times; the decoder then returns, for each target, the frame shown at that time (the last frame
// whose pts <= target, or the first frame when the target precedes it).
#pragma once
#include <cstddef>
#include <vector>

namespace ivcr::decode {

struct SamplerSpec {
  enum class Kind { Uniform, Fps, Timestamps, All };
  Kind kind = Kind::Uniform;
  int num_frames = 8;           // Uniform: N segment midpoints
  double fps = 1.0;             // Fps: frames per second
  double window_offset = 0.5;   // Fps: position inside each 1/fps window (0 start, 0.5 centre)
  std::vector<double> timestamps;  // Timestamps: seconds, any order, duplicates allowed
  double start = -1, end = -1;  // optional range in seconds (negative = video bounds)
};

// Target times for a video with the given start and duration (seconds). Empty for Kind::All.
std::vector<double> sample_times(const SamplerSpec& spec, double video_start, double video_duration);

}  // namespace ivcr::decode
