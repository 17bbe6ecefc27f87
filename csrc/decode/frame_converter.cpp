#include "decode/frame_converter.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "decode/av_handles.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>
}

namespace ivcr::decode {

namespace {

int sws_flags(Interpolation i) {
  switch (i) {
    case Interpolation::Bicubic: return SWS_BICUBIC;
    case Interpolation::Area: return SWS_AREA;
    case Interpolation::Nearest: return SWS_POINT;
    default: return SWS_BILINEAR;
  }
}

int sws_colorspace(AVColorSpace cs) {
  switch (cs) {
    case AVCOL_SPC_BT709: return SWS_CS_ITU709;
    case AVCOL_SPC_FCC: return SWS_CS_FCC;
    case AVCOL_SPC_BT470BG:
    case AVCOL_SPC_SMPTE170M: return SWS_CS_SMPTE170M;
    case AVCOL_SPC_SMPTE240M: return SWS_CS_SMPTE240M;
    case AVCOL_SPC_BT2020_NCL:
    case AVCOL_SPC_BT2020_CL: return SWS_CS_BT2020;
    default: return SWS_CS_DEFAULT;
  }
}

bool is_full_range(const AVFrame* f) {
  if (f->color_range == AVCOL_RANGE_JPEG) return true;
  switch (f->format) {
    case AV_PIX_FMT_YUVJ420P:
    case AV_PIX_FMT_YUVJ422P:
    case AV_PIX_FMT_YUVJ444P:
    case AV_PIX_FMT_YUVJ440P:
    case AV_PIX_FMT_YUVJ411P: return true;
    default: return false;
  }
}

// swscale warns about (and mishandles ranges of) the deprecated yuvj formats; map them.
AVPixelFormat unjpeg(AVPixelFormat f) {
  switch (f) {
    case AV_PIX_FMT_YUVJ420P: return AV_PIX_FMT_YUV420P;
    case AV_PIX_FMT_YUVJ422P: return AV_PIX_FMT_YUV422P;
    case AV_PIX_FMT_YUVJ444P: return AV_PIX_FMT_YUV444P;
    case AV_PIX_FMT_YUVJ440P: return AV_PIX_FMT_YUV440P;
    case AV_PIX_FMT_YUVJ411P: return AV_PIX_FMT_YUV411P;
    default: return f;
  }
}

int round_pos(double x) { return std::max(1, int(std::lround(x))); }

}  // namespace

Geometry resolve_geometry(const OutputSpec& spec, int src_w, int src_h, int rotation) {
  if (src_w <= 0 || src_h <= 0) throw DecodeError("decoded frame has no size");
  Geometry g;
  g.rotation = spec.apply_rotation ? rotation : 0;
  const bool swap = g.rotation == 90 || g.rotation == 270;
  const int dw = swap ? src_h : src_w, dh = swap ? src_w : src_h;  // display size
  int sdw = dw, sdh = dh;  // scaled display size
  switch (spec.resize) {
    case OutputSpec::Resize::None:
      g.out_w = dw;
      g.out_h = dh;
      break;
    case OutputSpec::Resize::Exact:
      if (spec.width <= 0 || spec.height <= 0) throw std::invalid_argument("size must be positive");
      if (spec.center_crop) {
        const double s = std::max(double(spec.width) / dw, double(spec.height) / dh);
        sdw = std::max(spec.width, round_pos(dw * s));
        sdh = std::max(spec.height, round_pos(dh * s));
      } else {
        sdw = spec.width;
        sdh = spec.height;
      }
      g.out_w = spec.width;
      g.out_h = spec.height;
      break;
    case OutputSpec::Resize::ShorterSide: {
      const int s = spec.shorter_side;
      if (s <= 0) throw std::invalid_argument("shorter side must be positive");
      if (dw <= dh) {
        sdw = s;
        sdh = round_pos(double(dh) * s / dw);
      } else {
        sdh = s;
        sdw = round_pos(double(dw) * s / dh);
      }
      g.out_w = spec.center_crop ? s : sdw;
      g.out_h = spec.center_crop ? s : sdh;
      break;
    }
  }
  g.crop_x = (sdw - g.out_w) / 2;
  g.crop_y = (sdh - g.out_h) / 2;
  g.scaled_w = swap ? sdh : sdw;
  g.scaled_h = swap ? sdw : sdh;
  return g;
}

FrameConverter::FrameConverter(const OutputSpec& spec, int rotation) : spec_(spec), rotation_(rotation) {
  for (int c = 0; c < 3; ++c) {
    if (!(spec.std[c] != 0.0f) || !std::isfinite(spec.std[c]) || !std::isfinite(spec.mean[c]))
      throw std::invalid_argument("mean must be finite and std finite and non-zero");
    for (int v = 0; v < 256; ++v) lut_[c][v] = (float(v) / 255.0f - spec.mean[c]) / spec.std[c];
  }
}

FrameConverter::~FrameConverter() { sws_freeContext(sws_); }

const Geometry& FrameConverter::prepare(const AVFrame* frame) {
  geo_ = resolve_geometry(spec_, frame->width, frame->height, rotation_);
  prepared_ = true;
  return geo_;
}

std::size_t FrameConverter::frame_bytes() const {
  const std::size_t px = std::size_t(geo_.out_w) * geo_.out_h * 3;
  return spec_.to_float ? px * sizeof(float) : px;
}

void FrameConverter::update_context(const AVFrame* f) {
  const int cs = sws_colorspace(f->colorspace);
  const int range = is_full_range(f) ? 1 : 0;
  if (sws_ && f->width == sws_w_ && f->height == sws_h_ && f->format == sws_fmt_ && cs == sws_cs_ &&
      range == sws_range_ && f->chroma_location == sws_chroma_)
    return;
  sws_freeContext(sws_);
  sws_ = sws_alloc_context();
  if (!sws_) throw std::bad_alloc();
  av_opt_set_int(sws_, "srcw", f->width, 0);
  av_opt_set_int(sws_, "srch", f->height, 0);
  av_opt_set_int(sws_, "src_format", unjpeg(AVPixelFormat(f->format)), 0);
  av_opt_set_int(sws_, "dstw", geo_.scaled_w, 0);
  av_opt_set_int(sws_, "dsth", geo_.scaled_h, 0);
  av_opt_set_int(sws_, "dst_format", AV_PIX_FMT_RGB24, 0);
  av_opt_set_int(sws_, "sws_flags", sws_flags(spec_.interpolation), 0);
  // Where chroma samples sit (H.264/HEVC: left, MPEG-1/JPEG: centre) shifts every edge by half
  // a chroma pixel when ignored; newer swscale reads it from the frame, 5.1 needs it set.
  int xpos = 0, ypos = 128;
  const AVPixFmtDescriptor* desc = av_pix_fmt_desc_get(AVPixelFormat(f->format));
  const bool subsampled = desc && (desc->log2_chroma_w > 0 || desc->log2_chroma_h > 0);
  if (subsampled && f->chroma_location != AVCHROMA_LOC_UNSPECIFIED &&
      avcodec_enum_to_chroma_pos(&xpos, &ypos, f->chroma_location) == 0) {
    av_opt_set_int(sws_, "src_h_chr_pos", xpos, 0);
    av_opt_set_int(sws_, "src_v_chr_pos", ypos, 0);
  }
  if (sws_init_context(sws_, nullptr, nullptr) < 0) {
    sws_freeContext(sws_);
    sws_ = nullptr;
  }
  if (!sws_) {
    const char* name = av_get_pix_fmt_name(AVPixelFormat(f->format));
    throw DecodeError(std::string("cannot convert pixel format ") + (name ? name : "unknown") + " to RGB");
  }
  const int* coeffs = sws_getCoefficients(cs);
  sws_setColorspaceDetails(sws_, coeffs, range, sws_getCoefficients(SWS_CS_DEFAULT), 1, 0, 1 << 16, 1 << 16);
  sws_w_ = f->width;
  sws_h_ = f->height;
  sws_fmt_ = f->format;
  sws_cs_ = cs;
  sws_range_ = range;
  sws_chroma_ = f->chroma_location;
}

void FrameConverter::convert(const AVFrame* f, uint8_t* dst) {
  if (!prepared_) prepare(f);
  update_context(f);
  const Geometry& g = geo_;
  const bool direct = !spec_.to_float && g.rotation == 0 && g.crop_x == 0 && g.crop_y == 0 &&
                      g.out_w == g.scaled_w && g.out_h == g.scaled_h;
  if (direct) {
    uint8_t* planes[4] = {dst, nullptr, nullptr, nullptr};
    int strides[4] = {g.out_w * 3, 0, 0, 0};
    sws_scale(sws_, f->data, f->linesize, 0, f->height, planes, strides);
    return;
  }
  const std::size_t sstride = std::size_t(g.scaled_w) * 3;
  // swscale's SIMD paths may write a little past the last row; keep slack.
  scratch_.resize(sstride * g.scaled_h + 64);
  uint8_t* planes[4] = {scratch_.data(), nullptr, nullptr, nullptr};
  int strides[4] = {int(sstride), 0, 0, 0};
  sws_scale(sws_, f->data, f->linesize, 0, f->height, planes, strides);

  const uint8_t* src = scratch_.data();
  const int W = g.out_w, H = g.out_h, sw = g.scaled_w, sh = g.scaled_h;
  // Source pixel of display pixel (dx, dy) for a clockwise turn (see resolve_geometry).
  auto source_of = [&](int dx, int dy) -> const uint8_t* {
    int sx, sy;
    switch (g.rotation) {
      case 90: sx = dy; sy = sh - 1 - dx; break;
      case 180: sx = sw - 1 - dx; sy = sh - 1 - dy; break;
      case 270: sx = sw - 1 - dy; sy = dx; break;
      default: sx = dx; sy = dy; break;
    }
    return src + std::size_t(sy) * sstride + std::size_t(sx) * 3;
  };
  if (!spec_.to_float) {
    for (int y = 0; y < H; ++y) {
      uint8_t* out = dst + std::size_t(y) * W * 3;
      if (g.rotation == 0) {
        std::memcpy(out, source_of(g.crop_x, g.crop_y + y), std::size_t(W) * 3);
        continue;
      }
      for (int x = 0; x < W; ++x) std::memcpy(out + x * 3, source_of(g.crop_x + x, g.crop_y + y), 3);
    }
    return;
  }
  float* out = reinterpret_cast<float*>(dst);
  const std::size_t plane = std::size_t(W) * H;
  float* r = out;
  float* gch = out + plane;
  float* b = out + 2 * plane;
  for (int y = 0; y < H; ++y) {
    const std::size_t row = std::size_t(y) * W;
    if (g.rotation == 0) {
      const uint8_t* p = source_of(g.crop_x, g.crop_y + y);
      for (int x = 0; x < W; ++x, p += 3) {
        r[row + x] = lut_[0][p[0]];
        gch[row + x] = lut_[1][p[1]];
        b[row + x] = lut_[2][p[2]];
      }
    } else {
      for (int x = 0; x < W; ++x) {
        const uint8_t* p = source_of(g.crop_x + x, g.crop_y + y);
        r[row + x] = lut_[0][p[0]];
        gch[row + x] = lut_[1][p[1]];
        b[row + x] = lut_[2][p[2]];
      }
    }
  }
}

}  // namespace ivcr::decode
