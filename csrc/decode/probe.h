// Container and stream facts read from headers only: no packet is decoded, so probing is cheap.
#pragma once
#include <string>
#include <vector>

extern "C" {
#include <libavformat/avformat.h>
}

namespace ivcr::decode {

struct StreamInfo {
  int index = -1;
  std::string type;   // "video", "audio", "subtitle", "data", "attachment", "unknown"
  std::string codec;  // FFmpeg codec name
  double start_time = 0, duration = 0;  // seconds; NaN when unknown
  // video
  int width = 0, height = 0;
  double avg_fps = 0, real_fps = 0;  // avg_frame_rate and r_frame_rate (0 when unknown)
  long long num_frames = 0;          // from the header; 0 when the container does not say
  int rotation = 0;                  // clockwise degrees to display upright: 0, 90, 180, 270
  std::string pix_fmt;
  // audio
  int sample_rate = 0, channels = 0;
  std::string language;
};

struct VideoInfo {
  std::string path, format;
  double duration = 0;    // seconds, of the best video stream when known, else the container
  double start_time = 0;  // seconds, of the best video stream
  double bit_rate = 0;
  int video_stream = -1;  // index of the best video stream, -1 when there is none
  long long frame_count_estimate = 0;
  std::vector<StreamInfo> streams;
};

// Rotation (clockwise degrees, multiple of 90) needed to show a stream upright.
int stream_rotation(const AVStream* st);

VideoInfo probe_format(AVFormatContext* fmt, const std::string& path);
VideoInfo probe(const std::string& path);

}  // namespace ivcr::decode
