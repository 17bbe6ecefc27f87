#include "decode/subtitles.h"

#include <algorithm>
#include <cmath>

#include "decode/av_handles.h"

namespace ivcr::decode {

namespace {

bool is_text_subtitle(const AVStream* st) {
  if (st->codecpar->codec_type != AVMEDIA_TYPE_SUBTITLE) return false;
  const AVCodecDescriptor* d = avcodec_descriptor_get(st->codecpar->codec_id);
  return d && (d->props & AV_CODEC_PROP_TEXT_SUB);
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

}  // namespace

std::string ass_to_text(const std::string& ass) {
  // FFmpeg hands text subtitles over as ASS events; the text is after the 8th comma.
  std::size_t pos = 0;
  int commas = 0;
  for (std::size_t i = 0; i < ass.size() && commas < 8; ++i)
    if (ass[i] == ',') {
      ++commas;
      pos = i + 1;
    }
  if (commas < 8) pos = 0;  // already plain text
  const std::string body = ass.substr(pos);
  std::string out;
  int depth = 0;
  for (std::size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    if (c == '{') { ++depth; continue; }
    if (c == '}' && depth > 0) { --depth; continue; }
    if (depth > 0) continue;
    if (c == '\\' && i + 1 < body.size()) {
      const char n = body[i + 1];
      if (n == 'N' || n == 'n') { out += '\n'; ++i; continue; }
      if (n == 'h') { out += ' '; ++i; continue; }
    }
    out += c;
  }
  return trim(out);
}

std::vector<int> text_subtitle_streams(const std::string& path) {
  FormatPtr fmt = open_input(path);
  std::vector<int> out;
  for (unsigned i = 0; i < fmt->nb_streams; ++i)
    if (is_text_subtitle(fmt->streams[i])) out.push_back(int(i));
  return out;
}

std::vector<SubtitleCue> read_subtitle_stream(const std::string& path, int stream) {
  FormatPtr fmt = open_input(path);
  int ss = stream;
  if (ss < 0) {
    for (unsigned i = 0; i < fmt->nb_streams && ss < 0; ++i)
      if (is_text_subtitle(fmt->streams[i])) ss = int(i);
    if (ss < 0) return {};
  }
  if (ss >= int(fmt->nb_streams)) throw DecodeError("no stream " + std::to_string(ss) + " in '" + path + "'");
  AVStream* st = fmt->streams[ss];
  if (!is_text_subtitle(st))
    throw DecodeError("stream " + std::to_string(ss) + " of '" + path + "' is not a text subtitle stream (" +
                      avcodec_get_name(st->codecpar->codec_id) + ")");
  for (unsigned i = 0; i < fmt->nb_streams; ++i)
    if (int(i) != ss) fmt->streams[i]->discard = AVDISCARD_ALL;
  CodecPtr ctx = open_decoder(st, 1);
  PacketPtr pkt = make_packet();
  std::vector<SubtitleCue> cues;
  while (av_read_frame(fmt.get(), pkt.get()) >= 0) {
    if (pkt->stream_index == ss && pkt->pts != AV_NOPTS_VALUE) {
      AVSubtitle sub{};
      int got = 0;
      const int r = avcodec_decode_subtitle2(ctx.get(), &sub, &got, pkt.get());
      if (r >= 0 && got) {
        const double pts = ts_to_seconds(pkt->pts, st->time_base);
        SubtitleCue cue;
        cue.start = pts + sub.start_display_time / 1000.0;
        if (pkt->duration > 0)
          cue.end = pts + ts_to_seconds(pkt->duration, st->time_base);
        else if (sub.end_display_time > 0 && sub.end_display_time != UINT32_MAX)
          cue.end = pts + sub.end_display_time / 1000.0;
        else
          cue.end = cue.start;
        std::string text;
        for (unsigned i = 0; i < sub.num_rects; ++i) {
          const AVSubtitleRect* rect = sub.rects[i];
          std::string piece;
          if (rect->type == SUBTITLE_ASS && rect->ass) piece = ass_to_text(rect->ass);
          else if (rect->type == SUBTITLE_TEXT && rect->text) piece = trim(rect->text);
          if (piece.empty()) continue;
          if (!text.empty()) text += '\n';
          text += piece;
        }
        if (!text.empty()) {  // mov_text marks gaps with empty samples
          cue.text = std::move(text);
          cues.push_back(std::move(cue));
        }
        avsubtitle_free(&sub);
      }
    }
    av_packet_unref(pkt.get());
  }
  std::stable_sort(cues.begin(), cues.end(), [](const SubtitleCue& a, const SubtitleCue& b) { return a.start < b.start; });
  return cues;
}

}  // namespace ivcr::decode
