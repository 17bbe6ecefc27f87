#include "decode/frame_sampler.h"

#include <cmath>
#include <stdexcept>

namespace ivcr::decode {

std::vector<double> sample_times(const SamplerSpec& spec, double video_start, double video_duration) {
  const double lo = spec.start >= 0 ? spec.start : video_start;
  const double hi = spec.end >= 0 ? spec.end : video_start + video_duration;
  std::vector<double> t;
  switch (spec.kind) {
    case SamplerSpec::Kind::Uniform: {
      if (spec.num_frames < 0) throw std::invalid_argument("uniform sampler needs num_frames >= 0");
      const double span = std::max(0.0, hi - lo);
      // Segment midpoints (TSN): frame i stands for the i-th of N equal segments.
      for (int i = 0; i < spec.num_frames; ++i) t.push_back(lo + (i + 0.5) * span / spec.num_frames);
      break;
    }
    case SamplerSpec::Kind::Fps: {
      if (!(spec.fps > 0)) throw std::invalid_argument("fps sampler needs fps > 0");
      if (spec.window_offset < 0 || spec.window_offset >= 1)
        throw std::invalid_argument("fps sampler needs 0 <= window_offset < 1");
      // Windows [lo + k/fps, lo + (k+1)/fps) that start inside the range, one frame each, so the
      // k-th frame lines up with the k-th clip window of the same length.
      const double step = 1.0 / spec.fps;
      const long n = long(std::ceil((hi - lo) * spec.fps - 1e-9));
      for (long k = 0; k < n; ++k) t.push_back(lo + (k + spec.window_offset) * step);
      break;
    }
    case SamplerSpec::Kind::Timestamps:
      for (double x : spec.timestamps) {
        if (!std::isfinite(x)) throw std::invalid_argument("timestamps must be finite numbers");
        t.push_back(x);
      }
      break;
    case SamplerSpec::Kind::All:
      break;
  }
  return t;
}

}  // namespace ivcr::decode
