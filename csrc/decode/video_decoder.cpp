#include "decode/video_decoder.h"

#include "common/thread_pool.h"

#include <algorithm>
#include <cmath>

namespace ivcr::decode {

namespace {
// Without a complete keyframe index, seek only when the gap is larger than this: decoding a few
// seconds forward is cheaper than a blind seek that may land far before the target.
constexpr double kBlindSeekGap = 6.0;
constexpr int kMaxSeekRetries = 6;
// A seek flushes the decoder (and its frame threads); it pays off only when it skips more than
// this many frames of forward decoding (plus one per codec thread that must refill).
constexpr double kMinFramesSkippedBySeek = 8;
}  // namespace

VideoDecoder::VideoDecoder(const std::string& path, int codec_threads, int stream_index)
    : path_(path), threads_(codec_threads > 0 ? codec_threads : ivcr::num_threads()) {
  fmt_ = open_input(path);
  info_ = probe_format(fmt_.get(), path);
  vs_ = stream_index >= 0 ? stream_index : info_.video_stream;
  if (vs_ < 0 || vs_ >= int(fmt_->nb_streams) || fmt_->streams[vs_]->codecpar->codec_type != AVMEDIA_TYPE_VIDEO)
    throw DecodeError("no video stream in '" + path + "'");
  if (vs_ != info_.video_stream) {
    const StreamInfo& s = info_.streams[vs_];
    info_.video_stream = vs_;
    info_.start_time = std::isnan(s.start_time) ? 0.0 : s.start_time;
    info_.duration = std::isnan(s.duration) ? info_.duration : s.duration;
  }
  st_ = fmt_->streams[vs_];
  for (unsigned i = 0; i < fmt_->nb_streams; ++i)
    if (int(i) != vs_) fmt_->streams[i]->discard = AVDISCARD_ALL;  // demux only what we decode
  rotation_ = stream_rotation(st_);
  ctx_ = open_decoder(st_, threads_);
  // Formats whose demuxer builds its index while reading only know the keyframes behind the
  // read position; those rely on a distance rule instead.
  index_complete_ = avformat_index_get_entries_count(st_) > 0 && !(fmt_->iformat->flags & AVFMT_GENERIC_INDEX);
  const double fps = info_.streams[vs_].avg_fps > 0 ? info_.streams[vs_].avg_fps : info_.streams[vs_].real_fps;
  frame_step_ = fps > 0 ? 1.0 / fps : 0.04;
  pkt_ = make_packet();
  held_ = make_frame();
  pending_ = make_frame();
  tmp_ = make_frame();
}

double VideoDecoder::duration() {
  if (info_.duration > 0 || duration_scanned_) return info_.duration;
  duration_scanned_ = true;
  // No duration in the header (raw or broken streams): read packets, decode nothing.
  double last_end = info_.start_time;
  bool any = false;
  while (av_read_frame(fmt_.get(), pkt_.get()) >= 0) {
    if (pkt_->stream_index == vs_) {
      const int64_t ts = pkt_->pts != AV_NOPTS_VALUE ? pkt_->pts : pkt_->dts;
      if (ts != AV_NOPTS_VALUE) {
        const double end = ts_to_seconds(ts + std::max<int64_t>(pkt_->duration, 0), st_->time_base);
        if (!any || end > last_end) last_end = end;
        any = true;
      }
    }
    av_packet_unref(pkt_.get());
  }
  rewind();
  info_.duration = std::max(0.0, last_end - info_.start_time);
  return info_.duration;
}

void VideoDecoder::reset_state() {
  av_frame_unref(held_.get());
  av_frame_unref(pending_.get());
  held_ok_ = pending_ok_ = false;
  draining_ = eof_ = false;
  last_pts_ = -1e300;
  max_sent_pts_ = -1e300;
}

void VideoDecoder::rewind() {
  // Reopening is the one way back to the true start that works for every demuxer.
  FormatPtr fresh = open_input(path_);
  for (unsigned i = 0; i < fresh->nb_streams; ++i)
    if (int(i) != vs_) fresh->streams[i]->discard = AVDISCARD_ALL;
  fmt_ = std::move(fresh);
  st_ = fmt_->streams[vs_];
  avcodec_flush_buffers(ctx_.get());
  reset_state();
  need_key_ = false;
  need_ts_ = false;
  at_start_ = true;
}

void VideoDecoder::seek_raw(double t) {
  ++seeks_;
  const int err = av_seek_frame(fmt_.get(), vs_, seconds_to_ts(t, st_->time_base), AVSEEK_FLAG_BACKWARD);
  if (err < 0) {
    rewind();
    return;
  }
  avcodec_flush_buffers(ctx_.get());
  reset_state();
  need_key_ = true;
  need_ts_ = true;
  at_start_ = false;
}

double VideoDecoder::pts_of(const AVFrame* f) {
  const int64_t ts = frame_timestamp(f);
  double s = ts_to_seconds(ts, st_->time_base);
  // Streams without timestamps: continue from the previous frame at the nominal rate.
  if (std::isnan(s)) s = last_pts_ > -1e299 ? last_pts_ + frame_step_ : info_.start_time;
  last_pts_ = s;
  return s;
}

bool VideoDecoder::decode_next(AVFrame* out) {
  for (;;) {
    int r = avcodec_receive_frame(ctx_.get(), out);
    if (r == 0) {
      ++frames_decoded_;
      return true;
    }
    if (r == AVERROR_EOF) return false;
    if (r != AVERROR(EAGAIN)) {
      // A decoder that fails outright ends the stream here, like the ffmpeg tool does.
      if (draining_) return false;
      avcodec_send_packet(ctx_.get(), nullptr);
      draining_ = true;
      continue;
    }
    if (draining_) return false;
    r = av_read_frame(fmt_.get(), pkt_.get());
    if (r < 0) {  // end of file, or a truncated/unreadable tail: flush what was decoded
      avcodec_send_packet(ctx_.get(), nullptr);
      draining_ = true;
      continue;
    }
    if (pkt_->stream_index == vs_) {
      choose_skip(pkt_.get());
      r = avcodec_send_packet(ctx_.get(), pkt_.get());
      if (r < 0 && r != AVERROR(EAGAIN)) ++bad_packets_;  // corrupt packet: skip it
    }
    av_packet_unref(pkt_.get());
  }
}

void VideoDecoder::choose_skip(const AVPacket* pkt) {
  const double p = ts_to_seconds(pkt->pts, st_->time_base);
  // A non-reference frame (e.g. a B-frame) can be skipped outright when it is certainly not the
  // frame shown at the next target: a packet demuxed before it (its forward reference) already
  // has a later pts that is still <= the target. Reference frames are decoded regardless.
  const bool skip = !all_mode_ && !std::isnan(p) && p < skip_target_ && max_sent_pts_ > p &&
                    max_sent_pts_ <= skip_target_;
  ctx_->skip_frame = skip ? AVDISCARD_NONREF : AVDISCARD_DEFAULT;
  if (!std::isnan(p)) max_sent_pts_ = std::max(max_sent_pts_, p);
}

bool VideoDecoder::decode_accepted(AVFrame* out) {
  for (;;) {
    if (!decode_next(out)) return false;
    if (need_key_) {
      // After a seek, frames before the first keyframe reference pictures we never decoded.
      if (!out->key_frame && out->pict_type != AV_PICTURE_TYPE_I) {
        av_frame_unref(out);
        continue;
      }
      need_key_ = false;
    }
    if (need_ts_) {
      // Some demuxers (AVI, raw MPEG-4) lose the pts of the first packets after a seek; a frame
      // whose time is unknown cannot be placed, so wait for one that carries its own.
      if (frame_timestamp(out) == AV_NOPTS_VALUE) {
        av_frame_unref(out);
        continue;
      }
      need_ts_ = false;
    }
    return true;
  }
}

bool VideoDecoder::should_seek(double t) {
  if (eof_) return false;
  if (pending_ok_ && pending_pts_ > t) return false;  // the answer is already held
  const double pos = pending_ok_ ? pending_pts_ : (held_ok_ ? held_pts_ : (at_start_ ? info_.start_time : -1e300));
  if (t <= pos) return false;
  const int idx = av_index_search_timestamp(st_, seconds_to_ts(t, st_->time_base), AVSEEK_FLAG_BACKWARD);
  if (idx >= 0) {
    const AVIndexEntry* e = avformat_index_get_entry(st_, idx);
    const double key = ts_to_seconds(e->timestamp, st_->time_base);
    // A keyframe after the current position and before t: jumping there skips decoding the
    // frames in between, worth it when they are more than a seek costs.
    const double skipped = (key - pos) / frame_step_;
    if (skipped > kMinFramesSkippedBySeek + std::max(1, ctx_->thread_count)) return true;
    if (index_complete_) return false;
  }
  return t - pos > kBlindSeekGap;
}

void VideoDecoder::position_before(double t) {
  double back = 0;
  for (int attempt = 0;; ++attempt) {
    const double where = t - back;
    if (attempt > kMaxSeekRetries || where <= info_.start_time) {
      rewind();
      break;
    }
    seek_raw(where);
    if (at_start_) break;  // the seek failed and rewound
    if (decode_accepted(pending_.get())) {
      pending_pts_ = pts_of(pending_.get());
      pending_ok_ = true;
      if (pending_pts_ <= t + 1e-9) return;
      av_frame_unref(pending_.get());
      pending_ok_ = false;
    }
    // The demuxer landed after t (odd timestamps, open GOPs): go further back.
    back = back == 0 ? 1.0 : back * 2;
  }
}

void VideoDecoder::begin_targets(std::vector<double> sorted_targets) {
  targets_ = std::move(sorted_targets);
  next_target_ = 0;
  all_mode_ = false;
}

void VideoDecoder::begin_all(double start, double end) {
  all_mode_ = true;
  all_started_ = false;
  all_start_ = start;
  all_end_ = end;
}

bool VideoDecoder::next(const AVFrame** frame, double* pts) {
  if (all_mode_) {
    if (!all_started_) {
      all_started_ = true;
      if (all_start_ > info_.start_time && should_seek(all_start_)) position_before(all_start_);
    }
    for (;;) {
      if (pending_ok_) {
        av_frame_unref(held_.get());
        av_frame_move_ref(held_.get(), pending_.get());
        held_pts_ = pending_pts_;
        pending_ok_ = false;
      } else {
        av_frame_unref(held_.get());
        if (eof_ || !decode_accepted(held_.get())) {
          eof_ = true;
          held_ok_ = false;
          return false;
        }
        held_pts_ = pts_of(held_.get());
      }
      held_ok_ = true;
      if (held_pts_ + 1e-9 < all_start_) continue;
      if (all_end_ >= 0 && held_pts_ >= all_end_) return false;
      *frame = held_.get();
      *pts = held_pts_;
      return true;
    }
  }

  if (next_target_ >= targets_.size()) return false;
  const double t = targets_[next_target_];
  skip_target_ = t;
  if (should_seek(t)) position_before(t);
  for (;;) {
    if (pending_ok_) {
      if (pending_pts_ > t + 1e-9) break;
      av_frame_unref(held_.get());
      av_frame_move_ref(held_.get(), pending_.get());
      held_pts_ = pending_pts_;
      held_ok_ = true;
      pending_ok_ = false;
      continue;
    }
    if (eof_) break;
    if (!decode_accepted(tmp_.get())) {
      eof_ = true;
      break;
    }
    av_frame_move_ref(pending_.get(), tmp_.get());
    pending_pts_ = pts_of(pending_.get());
    pending_ok_ = true;
  }
  ++next_target_;
  if (held_ok_) {
    *frame = held_.get();
    *pts = held_pts_;
    return true;
  }
  if (pending_ok_) {  // the target precedes the first frame of the stream
    *frame = pending_.get();
    *pts = pending_pts_;
    return true;
  }
  throw DecodeError("no decodable video frames in '" + path_ + "'");
}

}  // namespace ivcr::decode
