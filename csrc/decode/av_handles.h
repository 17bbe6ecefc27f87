// RAII owners for FFmpeg objects and the error type every decode failure becomes, so a bad file
// unwinds cleanly into an error value for that video instead of leaking or crashing the batch.
#pragma once
#include <memory>
#include <stdexcept>
#include <string>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/frame.h>
}

namespace ivcr::decode {

// Every failure while opening or decoding one file; the message names the file and the cause.
class DecodeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

std::string av_error_string(int errnum);
[[noreturn]] void throw_av(const std::string& what, int errnum);

struct FormatCloser {
  void operator()(AVFormatContext* f) const { avformat_close_input(&f); }
};
struct CodecFreer {
  void operator()(AVCodecContext* c) const { avcodec_free_context(&c); }
};
struct PacketFreer {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};
struct FrameFreer {
  void operator()(AVFrame* f) const { av_frame_free(&f); }
};

using FormatPtr = std::unique_ptr<AVFormatContext, FormatCloser>;
using CodecPtr = std::unique_ptr<AVCodecContext, CodecFreer>;
using PacketPtr = std::unique_ptr<AVPacket, PacketFreer>;
using FramePtr = std::unique_ptr<AVFrame, FrameFreer>;

PacketPtr make_packet();
FramePtr make_frame();

// Opens a container and reads stream info; throws DecodeError with a clear message.
FormatPtr open_input(const std::string& path);

// Opens a decoder for one stream; threads <= 0 lets FFmpeg choose, 1 disables threading.
CodecPtr open_decoder(const AVStream* st, int threads);

// Seconds of a timestamp in a stream's time base (NaN when it has none).
double ts_to_seconds(int64_t ts, AVRational tb);
int64_t seconds_to_ts(double s, AVRational tb);

// Best timestamp of a decoded frame: its pts, else FFmpeg's best effort guess.
int64_t frame_timestamp(const AVFrame* f);

// Quiets FFmpeg's console logging once per process (errors come back as values instead).
void quiet_ffmpeg_logs();

}  // namespace ivcr::decode
