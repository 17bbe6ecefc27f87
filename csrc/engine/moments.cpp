#include "engine/moments.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/error.h"
#include "engine/moment_edges.h"
#include "span/span_scorer.h"

namespace ivcr::engine {
namespace {

constexpr size_t kLinesKept = 256;   // videos whose lines a snapshot keeps (a turn touches ten)
constexpr float kLineLexical = 0.3f;  // a line holding all the query's words scores this above the baseline

float calibrated(float cosine, float chance) { return (cosine - chance) / float(1.0 - double(chance)); }

double iou(double a0, double a1, double b0, double b1) {
  const double inter = std::max(0.0, std::min(a1, b1) - std::max(a0, b0));
  const double uni = (a1 - a0) + (b1 - b0) - inter;
  return uni > 0 ? inter / uni : 0.0;
}

// A video's lines overlapping [lo, hi] and their scores against one query (moments.VideoLines).
struct VideoLines {
  std::vector<const Line*> lines;
  std::vector<float> scores;
  bool text_query = false, scored = false;

  std::vector<size_t> within(double start, double end) const {
    std::vector<size_t> keep;
    for (size_t i = 0; i < lines.size(); ++i)
      if (lines[i]->start < end && lines[i]->end > start) keep.push_back(i);
    return keep;
  }
};

// A video's lines overlapping [lo, hi] scored against one query (null: none): the line's channel
// row, calibrated; with the lexical matches, TEXT_BASELINE + kLineLexical x coverage where better.
VideoLines score_lines(const std::vector<Line>& every, double lo, double hi, const Queries* q,
                       const std::map<std::string, float>& weights, const LexicalMatches* lex, const LineScale& scale) {
  VideoLines vl;
  for (const Line& line : every)
    if (line.start < hi && line.end > lo) vl.lines.push_back(&line);
  vl.scores.assign(vl.lines.size(), NAN);
  if (!q) return vl;
  bool text_query = q->lexical.at(0).set;
  for (const auto& [c, _] : q->rows) text_query = text_query || is_presence_channel(c);
  vl.text_query = text_query;
  vl.scored = text_query && scale.usable && !q->rows.empty();
  if (vl.scored) {
    for (size_t i = 0; i < vl.lines.size(); ++i) {
      const Line& line = *vl.lines[i];
      auto qc = q->rows.find(line.source);
      auto w = weights.find(line.source);
      if (qc == q->rows.end() || w == weights.end() || w->second <= 0.0f) continue;
      const float cos = line_cosine(qc->second.data(), q->dims.at(line.source), line.vec);
      if (std::isfinite(cos)) vl.scores[i] = calibrated(cos, scale.chance);
    }
  }
  if (lex) {
    bool hit = false;
    for (size_t i = 0; i < vl.lines.size(); ++i) {
      auto c = lex->lines.find(vl.lines[i]->rowid);
      if (c == lex->lines.end() || !(c->second > 0.0f)) continue;
      vl.scores[i] = std::fmax(vl.scores[i], kTextBaseline + kLineLexical * c->second);
      hit = true;
    }
    vl.scored = vl.scored || hit;
  }
  return vl;
}

}  // namespace

Moments::Moments(std::shared_ptr<const SnapshotData> snap, Store* store, double clip_seconds, EdgeMode edges,
                 LineScale scale)
    : snap_(std::move(snap)), store_(store), clip_seconds_(clip_seconds), edges_(edges), scale_(scale) {}

std::shared_ptr<const std::vector<Line>> Moments::lines_of(int64_t video) {
  const int64_t id = snap_->videos[size_t(video)].id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = kept_.find(id);
    if (it != kept_.end()) {
      order_.splice(order_.begin(), order_, it->second.second);
      return it->second.first;
    }
  }
  auto got = std::make_shared<const std::vector<Line>>(store_->lines(id, scale_.usable));
  ++line_reads_;
  std::lock_guard<std::mutex> lock(mu_);
  if (kept_.find(id) == kept_.end()) {
    order_.push_front(id);
    kept_.emplace(id, std::make_pair(got, order_.begin()));
    while (kept_.size() > kLinesKept) {
      kept_.erase(order_.back());
      order_.pop_back();
    }
  }
  return got;
}

std::vector<int64_t> Moments::clip_rows(int64_t video, double start, double end, bool overlap) const {
  const Video& v = snap_->videos[size_t(video)];
  const double* t = snap_->times();
  std::vector<int64_t> rows;
  for (int64_t r = v.first_row; r < v.first_row + v.n_clips; ++r) {
    const double a = t[2 * r], b = t[2 * r + 1];
    if (overlap ? (b > start && a < end) : (a >= start - 1e-6 && b <= end + 1e-6)) rows.push_back(r);
  }
  return rows;
}

std::vector<std::vector<Hit>> Moments::find(const Queries& q, const std::map<std::string, float>& weights,
                                            const std::vector<int64_t>& videos, double win_lo, double win_hi, int top,
                                            bool evidence) {
  std::vector<std::vector<Hit>> out(videos.size());
  std::vector<std::vector<int64_t>> per_video;
  std::vector<int64_t> rows, offsets{0};
  for (int64_t v : videos) {
    per_video.push_back(clip_rows(v, win_lo, win_hi, false));
    rows.insert(rows.end(), per_video.back().begin(), per_video.back().end());
    offsets.push_back(int64_t(rows.size()));
  }
  if (rows.empty()) return out;
  const double* t = snap_->times();
  const size_t n = rows.size();
  std::vector<double> starts(n), ends(n);
  for (size_t i = 0; i < n; ++i) {
    starts[i] = t[2 * rows[i]];
    ends[i] = t[2 * rows[i] + 1];
  }
  // The fused clip scores and each channel's (a few videos' clips: a plain loop is enough).
  std::vector<float> scores(n, 0.0f);
  std::map<std::string, std::vector<float>> parts;
  for (const auto& [c, _] : q.rows) {
    const ChannelRows& ch = snap_->channels.at(c);
    const float* qr = q.row(c, 0);
    std::vector<float>& s = parts[c];
    s.resize(n);
    for (size_t i = 0; i < n; ++i) {
      float acc = 0.0f;
      for (int j = 0; j < ch.dim; ++j) acc += ch.at(rows[i], j) * qr[j];
      s[i] = acc;
    }
    auto w = weights.find(c);
    const float wc = w == weights.end() ? 0.0f : w->second;
    for (size_t i = 0; i < n; ++i) scores[i] += wc * s[i];
  }
  // The lexical channel: each clip gains weight x the best coverage among the lines it overlaps.
  const LexicalMatches& lex = q.lexical.at(0);
  auto lw = weights.find(kLexical);
  const bool words = lex.set && lw != weights.end() && lw->second != 0.0f && !lex.lines.empty();
  std::vector<std::shared_ptr<const std::vector<Line>>> read(videos.size());
  auto lines_for = [&](size_t r) -> const std::vector<Line>& {
    if (!read[r]) read[r] = lines_of(videos[r]);
    return *read[r];
  };
  if (words) {
    std::vector<float> cover(n, 0.0f);
    for (size_t r = 0; r < videos.size(); ++r) {
      if (per_video[r].empty()) continue;
      for (const Line& line : lines_for(r)) {
        auto c = lex.lines.find(line.rowid);
        if (c == lex.lines.end() || c->second == 0.0f) continue;
        for (int64_t i = offsets[r]; i < offsets[r + 1]; ++i)
          if (ends[size_t(i)] > line.start && starts[size_t(i)] < line.end) cover[size_t(i)] = std::max(cover[size_t(i)], c->second);
      }
    }
    for (size_t i = 0; i < n; ++i) scores[i] += lw->second * cover[i];
    parts[kLexical] = std::move(cover);
  }
  span::SpanParams p;
  p.method = span::Method::Contrast;
  p.min_len = 1;
  p.max_len = std::max(1, int(std::lround(60.0 / clip_seconds_)));
  p.top_m = 3;
  p.nms_iou = 0.5;
  p.length_weight = 0.05;
  const size_t nv = videos.size(), m_per = size_t(p.top_m);
  std::vector<double> s_start(nv * m_per), s_end(nv * m_per);
  std::vector<float> s_score(nv * m_per);
  std::vector<int64_t> s_first(nv * m_per), s_last(nv * m_per);
  span::SpanBatch batch{scores.data(), offsets.data(), int64_t(nv), starts.data(), ends.data()};
  span::score_spans(batch, p, s_start.data(), s_end.data(), s_score.data(), s_first.data(), s_last.data());

  std::vector<Evidence*> named;
  std::vector<std::vector<int64_t>> named_rows;
  for (size_t r = 0; r < nv; ++r) {
    if (per_video[r].empty()) continue;
    const int64_t v = videos[r];
    double lo = 0.0, hi = snap_->videos[size_t(v)].duration;
    lo = std::max(lo, win_lo);
    hi = std::min(hi, win_hi);
    double first = lo, last = hi;
    for (int64_t i = offsets[r]; i < offsets[r + 1]; ++i) {
      first = std::min(first, starts[size_t(i)]);
      last = std::max(last, ends[size_t(i)]);
    }
    VideoLines vl;
    const bool want_lines = !(edges_ == EdgeMode::Grid && !evidence);
    if (want_lines)
      vl = score_lines(lines_for(r), first - clip_seconds_, last + clip_seconds_, &q, weights, words ? &lex : nullptr,
                       scale_);
    auto edges = [&](double start, double end) -> std::pair<double, double> {
      if (edges_ == EdgeMode::Grid || !scale_.usable || !want_lines || !vl.scored) return {start, end};
      std::vector<const Line*> near;
      std::vector<float> ns;
      for (size_t i : vl.within(start - clip_seconds_, end + clip_seconds_)) {
        near.push_back(vl.lines[i]);
        ns.push_back(vl.scores[i]);
      }
      if (!near.empty())
        if (Edges s = snap_to_lines(start, end, near, ns, kTextBaseline, lo, hi)) return *s;
      if (edges_ != EdgeMode::Lines) return {start, end};
      std::vector<const Line*> every;
      std::vector<float> es;
      for (size_t i : vl.within(lo, hi)) {
        every.push_back(vl.lines[i]);
        es.push_back(vl.scores[i]);
      }
      if (every.empty()) return {start, end};
      if (Edges s = best_line(every, es, kTextBaseline, lo, hi)) return *s;
      return {start, end};
    };
    std::vector<Hit>& kept = out[r];
    for (size_t m = 0; m < m_per; ++m) {
      if (int(kept.size()) == top) break;
      const size_t at = r * m_per + m;
      if (s_first[at] < 0) continue;
      auto [a, b] = edges(s_start[at], s_end[at]);
      bool repeats = false;
      for (const Hit& h : kept) repeats = repeats || iou(a, b, h.start, h.end) > p.nms_iou;
      if (repeats) continue;
      Hit hit;
      hit.ref = v;
      hit.start = a;
      hit.end = b;
      hit.moment_score = s_score[at];
      if (evidence) {
        std::vector<int64_t> own;  // positions in this call's rows of the clips under the moment
        for (int64_t i = offsets[r]; i < offsets[r + 1]; ++i)
          if (ends[size_t(i)] > a && starts[size_t(i)] < b) own.push_back(i);
        if (own.empty())  // cannot happen while clips tile the video; the span's own clips then
          for (int64_t i = s_first[at]; i <= s_last[at]; ++i) own.push_back(i);
        for (size_t i : vl.within(a, b)) {
          const Line& line = *vl.lines[i];
          hit.evidence.lines.push_back(
              {line.source, line.text, line.start, line.end, vl.text_query ? vl.scores[i] - kTextBaseline : NAN});
        }
        for (const auto& [c, s] : parts) {
          float best = -std::numeric_limits<float>::infinity();
          for (int64_t i : own) best = std::max(best, s[size_t(i)]);
          hit.evidence.channel_scores[c] = best;
        }
        std::vector<int64_t> under;
        if (std::isfinite(win_lo) || std::isfinite(win_hi)) {
          under = clip_rows(v, a, b, true);
        } else {
          for (int64_t i : own) under.push_back(rows[size_t(i)]);
        }
        named_rows.push_back(std::move(under));
      }
      kept.push_back(std::move(hit));
    }
  }
  if (evidence) {  // the clips' concepts: the first three that have any, from one pass over the store
    std::vector<int64_t> all;
    for (const auto& rs : named_rows) all.insert(all.end(), rs.begin(), rs.end());
    const std::vector<std::string> names = store_->concepts(all);
    size_t at = 0, k = 0;
    for (auto& hits : out)
      for (Hit& h : hits) {
        for (size_t j = 0; j < named_rows[k].size(); ++j, ++at)
          if (!names[at].empty() && h.evidence.concepts.size() < 3) h.evidence.concepts.push_back(names[at]);
        ++k;
      }
  }
  return out;
}

Hit Moments::evidence(const Queries* q, const std::map<std::string, float>& weights, int64_t video, double start,
                      double end) {
  const LexicalMatches* lex = nullptr;
  if (q) {
    auto lw = weights.find(kLexical);
    const LexicalMatches& l = q->lexical.at(0);
    if (l.set && lw != weights.end() && lw->second != 0.0f && !l.lines.empty()) lex = &l;
  }
  auto read = lines_of(video);
  VideoLines vl = score_lines(*read, start, end, q, weights, lex, scale_);
  Hit hit;
  hit.ref = video;
  hit.start = start;
  hit.end = end;
  for (size_t i = 0; i < vl.lines.size(); ++i) {
    const Line& line = *vl.lines[i];
    hit.evidence.lines.push_back(
        {line.source, line.text, line.start, line.end, vl.text_query ? vl.scores[i] - kTextBaseline : NAN});
  }
  for (const std::string& c : store_->concepts(clip_rows(video, start, end, true)))
    if (!c.empty() && hit.evidence.concepts.size() < 3) hit.evidence.concepts.push_back(c);
  return hit;
}

}  // namespace ivcr::engine
