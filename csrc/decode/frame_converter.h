// Decoded frame -> model-ready pixels in one native pass: swscale does colour conversion and
// resize together, then (only when needed) one loop applies rotation, centre crop and the
// uint8 NHWC or normalised float32 NCHW layout.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

extern "C" {
#include <libavutil/frame.h>
#include <libswscale/swscale.h>
}

namespace ivcr::decode {

enum class Interpolation { Bilinear, Bicubic, Area, Nearest };

struct OutputSpec {
  enum class Resize { None, Exact, ShorterSide };
  Resize resize = Resize::None;
  int height = 0, width = 0;  // Exact: output size (with centre_crop: the crop size)
  int shorter_side = 0;       // ShorterSide: the shorter side after resize (keeps aspect)
  bool center_crop = false;   // Exact: cover then crop; ShorterSide: crop to a square
  Interpolation interpolation = Interpolation::Bilinear;
  bool to_float = false;      // float32 NCHW, (rgb/255 - mean) / std
  float mean[3] = {0, 0, 0};
  float std[3] = {1, 1, 1};
  bool apply_rotation = true;  // turn frames upright using the stream's display matrix
};

// Where one frame's pixels go: scale the (unrotated) source to scaled_w x scaled_h, rotate,
// then take the out_w x out_h window at (crop_x, crop_y) of the rotated picture.
struct Geometry {
  int scaled_w = 0, scaled_h = 0;  // swscale output, unrotated
  int crop_x = 0, crop_y = 0;      // in rotated (display) coordinates
  int out_w = 0, out_h = 0;
  int rotation = 0;
};

Geometry resolve_geometry(const OutputSpec& spec, int src_w, int src_h, int rotation);

class FrameConverter {
 public:
  FrameConverter(const OutputSpec& spec, int rotation);
  ~FrameConverter();
  FrameConverter(const FrameConverter&) = delete;
  FrameConverter& operator=(const FrameConverter&) = delete;

  // Fixes the output geometry from the first frame; later frames of another size are scaled to it.
  const Geometry& prepare(const AVFrame* frame);
  bool prepared() const { return prepared_; }
  const Geometry& geometry() const { return geo_; }
  std::size_t frame_bytes() const;
  // Writes one frame (after prepare) into dst, which holds frame_bytes().
  void convert(const AVFrame* frame, uint8_t* dst);

 private:
  void update_context(const AVFrame* frame);
  OutputSpec spec_;
  int rotation_ = 0;
  bool prepared_ = false;
  Geometry geo_;
  SwsContext* sws_ = nullptr;
  int sws_w_ = -1, sws_h_ = -1, sws_fmt_ = -1, sws_cs_ = -1, sws_range_ = -1, sws_chroma_ = -1;
  std::vector<uint8_t> scratch_;  // swscale output when a second pass is needed
  float lut_[3][256];             // uint8 -> normalised float, per channel
};

}  // namespace ivcr::decode
