// Text subtitles with their times: embedded streams (mov_text, subrip, ass/ssa, webvtt) and
// sidecar .srt/.vtt files, both read through FFmpeg's demuxers and decoders.
#pragma once
#include <string>
#include <vector>

namespace ivcr::decode {

struct SubtitleCue {
  double start = 0, end = 0;  // seconds
  std::string text;           // plain text, styling removed, lines joined with '\n'
};

// Indices of text subtitle streams in a file (a sidecar .srt/.vtt has one).
std::vector<int> text_subtitle_streams(const std::string& path);

// Cues of one text subtitle stream (stream < 0: the first text one); empty when there is none.
std::vector<SubtitleCue> read_subtitle_stream(const std::string& path, int stream = -1);

// ASS dialogue payload ("ReadOrder,Layer,Style,Name,MarginL,MarginR,MarginV,Effect,Text") or
// plain text -> plain text. Exposed for tests.
std::string ass_to_text(const std::string& ass);

}  // namespace ivcr::decode
