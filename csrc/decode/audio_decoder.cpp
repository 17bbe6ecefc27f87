#include "decode/audio_decoder.h"

#include <algorithm>
#include <cmath>

#include "decode/av_handles.h"

extern "C" {
#include <libavutil/channel_layout.h>
#include <libavutil/opt.h>
#include <libswresample/swresample.h>
}

namespace ivcr::decode {

namespace {
struct SwrFreer {
  void operator()(SwrContext* s) const { swr_free(&s); }
};
using SwrPtr = std::unique_ptr<SwrContext, SwrFreer>;
}  // namespace

AudioSamples decode_audio(const std::string& path, double start, double end, int sample_rate, int stream_index) {
  if (sample_rate <= 0) throw std::invalid_argument("sample_rate must be positive");
  if (start >= 0 && end >= 0 && end < start) throw std::invalid_argument("end must not precede start");
  FormatPtr fmt = open_input(path);
  const int as = stream_index >= 0 ? stream_index : av_find_best_stream(fmt.get(), AVMEDIA_TYPE_AUDIO, -1, -1, nullptr, 0);
  if (as < 0 || as >= int(fmt->nb_streams) || fmt->streams[as]->codecpar->codec_type != AVMEDIA_TYPE_AUDIO)
    throw DecodeError("no audio stream in '" + path + "'");
  for (unsigned i = 0; i < fmt->nb_streams; ++i)
    if (int(i) != as) fmt->streams[i]->discard = AVDISCARD_ALL;
  AVStream* st = fmt->streams[as];
  CodecPtr ctx = open_decoder(st, 1);
  if (start > 0) av_seek_frame(fmt.get(), as, seconds_to_ts(start, st->time_base), AVSEEK_FLAG_BACKWARD);

  SwrPtr swr;
  AVChannelLayout mono = AV_CHANNEL_LAYOUT_MONO;
  int in_rate = -1, in_fmt = -1;
  AVChannelLayout in_layout{};

  AudioSamples out;
  out.sample_rate = sample_rate;
  bool have_t0 = false;
  PacketPtr pkt = make_packet();
  FramePtr frame = make_frame();
  std::vector<float>& s = out.samples;

  auto append = [&](const uint8_t** in, int in_count) {
    const int cap = swr_get_out_samples(swr.get(), in_count);
    if (cap <= 0) return;
    const std::size_t old = s.size();
    s.resize(old + std::size_t(cap));
    uint8_t* dst = reinterpret_cast<uint8_t*>(s.data() + old);
    const int got = swr_convert(swr.get(), &dst, cap, in, in_count);
    if (got < 0) throw_av("audio resampling failed", got);
    s.resize(old + std::size_t(got));
  };
  auto consume = [&](AVFrame* f) {
    AVChannelLayout layout{};
    if (f->ch_layout.order == AV_CHANNEL_ORDER_UNSPEC || f->ch_layout.nb_channels == 0)
      av_channel_layout_default(&layout, std::max(1, f->ch_layout.nb_channels ? f->ch_layout.nb_channels
                                                                               : ctx->ch_layout.nb_channels));
    else
      av_channel_layout_copy(&layout, &f->ch_layout);
    if (!swr || f->sample_rate != in_rate || f->format != in_fmt || av_channel_layout_compare(&layout, &in_layout)) {
      if (swr) append(nullptr, 0);  // drain the old converter before the format changes
      SwrContext* raw = nullptr;
      int err = swr_alloc_set_opts2(&raw, &mono, AV_SAMPLE_FMT_FLT, sample_rate, &layout, AVSampleFormat(f->format),
                                    f->sample_rate, 0, nullptr);
      if (err < 0 || !raw) throw_av("cannot set up audio resampling", err);
      swr.reset(raw);
      err = swr_init(raw);
      if (err < 0) throw_av("cannot set up audio resampling", err);
      in_rate = f->sample_rate;
      in_fmt = f->format;
      av_channel_layout_uninit(&in_layout);
      av_channel_layout_copy(&in_layout, &layout);
    }
    av_channel_layout_uninit(&layout);
    if (!have_t0) {
      const double t = ts_to_seconds(frame_timestamp(f), st->time_base);
      out.start_time = std::isnan(t) ? 0.0 : t;
      have_t0 = true;
    }
    append(const_cast<const uint8_t**>(f->extended_data), f->nb_samples);
  };

  bool draining = false;
  for (;;) {
    int r = avcodec_receive_frame(ctx.get(), frame.get());
    if (r == 0) {
      consume(frame.get());
      av_frame_unref(frame.get());
      // Stop reading once the decoded audio passes the end of the range.
      if (end >= 0 && have_t0 && out.start_time + double(s.size()) / sample_rate > end + 0.5) break;
      continue;
    }
    if (r == AVERROR_EOF || draining) break;
    if (r != AVERROR(EAGAIN)) {
      avcodec_send_packet(ctx.get(), nullptr);
      draining = true;
      continue;
    }
    if (av_read_frame(fmt.get(), pkt.get()) < 0) {
      avcodec_send_packet(ctx.get(), nullptr);
      draining = true;
      continue;
    }
    if (pkt->stream_index == as) avcodec_send_packet(ctx.get(), pkt.get());  // corrupt packets are skipped
    av_packet_unref(pkt.get());
  }
  if (swr) append(nullptr, 0);
  av_channel_layout_uninit(&in_layout);

  // Trim to [start, end) on the output sample clock.
  std::size_t i0 = 0, i1 = s.size();
  if (start >= 0) i0 = std::size_t(std::clamp(std::llround((start - out.start_time) * sample_rate), 0LL, (long long)s.size()));
  if (end >= 0) i1 = std::size_t(std::clamp(std::llround((end - out.start_time) * sample_rate), (long long)i0, (long long)s.size()));
  if (i0 > 0 || i1 < s.size()) {
    s = std::vector<float>(s.begin() + i0, s.begin() + i1);
    out.start_time += double(i0) / sample_rate;
  }
  return out;
}

}  // namespace ivcr::decode
