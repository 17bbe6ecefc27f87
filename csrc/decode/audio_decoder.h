// Audio track -> mono float32 at a fixed rate (16 kHz for speech recognition) via swresample,
// optionally only a time range (seek near the start, then trim on the sample clock).
#pragma once
#include <string>
#include <vector>

namespace ivcr::decode {

struct AudioSamples {
  std::vector<float> samples;
  int sample_rate = 16000;
  double start_time = 0;  // seconds of samples[0] on the media timeline
};

// start/end < 0: from the beginning / to the end. Throws DecodeError when there is no audio.
AudioSamples decode_audio(const std::string& path, double start, double end, int sample_rate = 16000,
                          int stream_index = -1);

}  // namespace ivcr::decode
