// One video stream, decoded in presentation order, answering "which frame is shown at time t"
// for sorted target times with keyframe-aware seeking, or walking every frame of a range.
#pragma once
#include <string>
#include <vector>

#include "decode/av_handles.h"
#include "decode/probe.h"

namespace ivcr::decode {

class VideoDecoder {
 public:
  // codec_threads: FFmpeg frame/slice threads inside this video (<= 0: the native pool size,
  // not FFmpeg's cores + 1, so one video does not oversubscribe the machine).
  VideoDecoder(const std::string& path, int codec_threads, int stream_index = -1);

  const VideoInfo& info() const { return info_; }
  int rotation() const { return rotation_; }
  // Start and duration of the stream in seconds; the duration comes from the header, or when the
  // header has none from one demux-only pass over the packets (no decoding).
  double start_time() const { return info_.start_time; }
  double duration();

  // Targets mode: `sorted_targets` ascending. Each next() returns the frame shown at the next
  // target: the last frame with pts <= target, or the first frame when the target precedes it.
  void begin_targets(std::vector<double> sorted_targets);
  // All mode: every frame with start <= pts < end (end < 0: to the end of the stream).
  void begin_all(double start, double end);
  // The next sampled frame (valid until the following call) and its pts in seconds.
  bool next(const AVFrame** frame, double* pts);

  // Counters for tests and diagnostics.
  long frames_decoded() const { return frames_decoded_; }
  long seeks() const { return seeks_; }

 private:
  bool decode_next(AVFrame* out);   // next frame in presentation order; false at the end
  bool decode_accepted(AVFrame* out);  // decode_next, dropping non-key frames right after a seek
  double pts_of(const AVFrame* f);
  bool should_seek(double t);
  void position_before(double t);  // seek so that `pending_` holds a frame with pts <= t
  void seek_raw(double t);
  void rewind();
  void reset_state();
  void choose_skip(const AVPacket* pkt);  // decode or skip a non-reference frame

  std::string path_;
  int threads_;
  FormatPtr fmt_;
  CodecPtr ctx_;
  AVStream* st_ = nullptr;
  int vs_ = -1;
  VideoInfo info_;
  int rotation_ = 0;
  bool duration_scanned_ = false;
  bool index_complete_ = false;

  PacketPtr pkt_;
  FramePtr held_, pending_, tmp_;
  bool held_ok_ = false, pending_ok_ = false;
  double held_pts_ = 0, pending_pts_ = 0;
  bool draining_ = false, eof_ = false;
  bool need_key_ = false;   // right after a seek: frames before the first keyframe are unusable
  bool need_ts_ = false;   // right after a seek: frames without a timestamp cannot be placed
  bool at_start_ = true;    // decoding from the true start of the stream (no seek since)
  double last_pts_ = -1e300, frame_step_ = 0;
  double max_sent_pts_ = -1e300;  // latest pts handed to the decoder since the last seek
  double skip_target_ = -1e300;   // the target being answered (non-ref frames before it may go)

  bool all_mode_ = false, all_started_ = false;
  double all_start_ = 0, all_end_ = -1;
  std::vector<double> targets_;
  std::size_t next_target_ = 0;

  long frames_decoded_ = 0, seeks_ = 0, bad_packets_ = 0;
};

}  // namespace ivcr::decode
