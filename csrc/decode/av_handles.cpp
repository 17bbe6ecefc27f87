#include "decode/av_handles.h"

#include <cmath>
#include <limits>
#include <mutex>

extern "C" {
#include <libavutil/error.h>
#include <libavutil/log.h>
}

namespace ivcr::decode {

std::string av_error_string(int errnum) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {0};
  av_strerror(errnum, buf, sizeof(buf));
  return buf;
}

void throw_av(const std::string& what, int errnum) { throw DecodeError(what + ": " + av_error_string(errnum)); }

PacketPtr make_packet() {
  PacketPtr p(av_packet_alloc());
  if (!p) throw std::bad_alloc();
  return p;
}

FramePtr make_frame() {
  FramePtr f(av_frame_alloc());
  if (!f) throw std::bad_alloc();
  return f;
}

void quiet_ffmpeg_logs() {
  static std::once_flag once;
  std::call_once(once, [] { av_log_set_level(AV_LOG_FATAL); });
}

FormatPtr open_input(const std::string& path) {
  quiet_ffmpeg_logs();
  AVFormatContext* raw = nullptr;
  int err = avformat_open_input(&raw, path.c_str(), nullptr, nullptr);
  if (err < 0) throw_av("cannot open '" + path + "'", err);
  FormatPtr fmt(raw);
  err = avformat_find_stream_info(fmt.get(), nullptr);
  if (err < 0) throw_av("cannot read stream info of '" + path + "'", err);
  return fmt;
}

CodecPtr open_decoder(const AVStream* st, int threads) {
  const AVCodec* codec = avcodec_find_decoder(st->codecpar->codec_id);
  if (!codec)
    throw DecodeError(std::string("no decoder for codec '") + avcodec_get_name(st->codecpar->codec_id) + "'");
  CodecPtr ctx(avcodec_alloc_context3(codec));
  if (!ctx) throw std::bad_alloc();
  int err = avcodec_parameters_to_context(ctx.get(), st->codecpar);
  if (err < 0) throw_av("cannot configure decoder", err);
  ctx->pkt_timebase = st->time_base;
  ctx->thread_count = threads > 0 ? threads : 0;
  ctx->thread_type = FF_THREAD_FRAME | FF_THREAD_SLICE;
  err = avcodec_open2(ctx.get(), codec, nullptr);
  if (err < 0) throw_av(std::string("cannot open decoder '") + codec->name + "'", err);
  return ctx;
}

double ts_to_seconds(int64_t ts, AVRational tb) {
  if (ts == AV_NOPTS_VALUE || tb.den == 0) return std::numeric_limits<double>::quiet_NaN();
  return double(ts) * tb.num / tb.den;
}

int64_t seconds_to_ts(double s, AVRational tb) {
  return static_cast<int64_t>(std::floor(s * tb.den / tb.num + 1e-6));
}

int64_t frame_timestamp(const AVFrame* f) {
  return f->pts != AV_NOPTS_VALUE ? f->pts : f->best_effort_timestamp;
}

}  // namespace ivcr::decode
