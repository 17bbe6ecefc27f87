#include "decode/probe.h"

#include <cmath>

#include "decode/av_handles.h"

extern "C" {
#include <libavutil/display.h>
#include <libavutil/pixdesc.h>
}

namespace ivcr::decode {

namespace {

double q2d_or0(AVRational r) { return r.den ? av_q2d(r) : 0.0; }

const char* media_type_name(AVMediaType t) {
  switch (t) {
    case AVMEDIA_TYPE_VIDEO: return "video";
    case AVMEDIA_TYPE_AUDIO: return "audio";
    case AVMEDIA_TYPE_SUBTITLE: return "subtitle";
    case AVMEDIA_TYPE_DATA: return "data";
    case AVMEDIA_TYPE_ATTACHMENT: return "attachment";
    default: return "unknown";
  }
}

}  // namespace

int stream_rotation(const AVStream* st) {
  const uint8_t* m = av_stream_get_side_data(st, AV_PKT_DATA_DISPLAYMATRIX, nullptr);
  if (!m) return 0;
  // av_display_rotation_get gives counter-clockwise degrees; we report the clockwise turn to apply.
  double ccw = av_display_rotation_get(reinterpret_cast<const int32_t*>(m));
  if (std::isnan(ccw)) return 0;
  long r = std::lround(-ccw / 90.0) * 90;
  r %= 360;
  if (r < 0) r += 360;
  return int(r);
}

VideoInfo probe_format(AVFormatContext* fmt, const std::string& path) {
  VideoInfo info;
  info.path = path;
  info.format = fmt->iformat ? fmt->iformat->name : "";
  info.bit_rate = double(fmt->bit_rate);
  const double container_duration =
      fmt->duration != AV_NOPTS_VALUE ? double(fmt->duration) / AV_TIME_BASE : std::nan("");
  const double container_start =
      fmt->start_time != AV_NOPTS_VALUE ? double(fmt->start_time) / AV_TIME_BASE : std::nan("");
  info.video_stream = av_find_best_stream(fmt, AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
  if (info.video_stream < 0) info.video_stream = -1;

  for (unsigned i = 0; i < fmt->nb_streams; ++i) {
    const AVStream* st = fmt->streams[i];
    const AVCodecParameters* par = st->codecpar;
    StreamInfo s;
    s.index = int(i);
    s.type = media_type_name(par->codec_type);
    s.codec = avcodec_get_name(par->codec_id);
    s.start_time = ts_to_seconds(st->start_time, st->time_base);
    s.duration = ts_to_seconds(st->duration, st->time_base);
    if (std::isnan(s.start_time)) s.start_time = container_start;
    if (std::isnan(s.duration)) s.duration = container_duration;
    if (const AVDictionaryEntry* e = av_dict_get(st->metadata, "language", nullptr, 0)) s.language = e->value;
    if (par->codec_type == AVMEDIA_TYPE_VIDEO) {
      s.width = par->width;
      s.height = par->height;
      s.avg_fps = q2d_or0(st->avg_frame_rate);
      s.real_fps = q2d_or0(st->r_frame_rate);
      s.num_frames = st->nb_frames;
      s.rotation = stream_rotation(st);
      if (const char* n = av_get_pix_fmt_name(AVPixelFormat(par->format))) s.pix_fmt = n;
    } else if (par->codec_type == AVMEDIA_TYPE_AUDIO) {
      s.sample_rate = par->sample_rate;
      s.channels = par->ch_layout.nb_channels;
    }
    info.streams.push_back(s);
  }

  if (info.video_stream >= 0) {
    const StreamInfo& v = info.streams[info.video_stream];
    info.start_time = std::isnan(v.start_time) ? 0.0 : v.start_time;
    info.duration = v.duration;
    if (std::isnan(info.duration) && !std::isnan(container_duration)) info.duration = container_duration;
    const double fps = v.avg_fps > 0 ? v.avg_fps : v.real_fps;
    if (v.num_frames > 0)
      info.frame_count_estimate = v.num_frames;
    else if (fps > 0 && !std::isnan(info.duration))
      info.frame_count_estimate = std::llround(info.duration * fps);
  } else {
    info.start_time = std::isnan(container_start) ? 0.0 : container_start;
    info.duration = container_duration;
  }
  if (std::isnan(info.duration)) info.duration = 0;
  return info;
}

VideoInfo probe(const std::string& path) {
  FormatPtr fmt = open_input(path);
  return probe_format(fmt.get(), path);
}

}  // namespace ivcr::decode
