#include "engine/ranking.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <unordered_map>

namespace ivcr::engine {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Each row's best k of (ref -> score), ties to the lower ref, into the padded outputs.
void best_of(const std::vector<std::unordered_map<int64_t, float>>& rows, int64_t k, int64_t* ids, float* scores) {
  for (size_t r = 0; r < rows.size(); ++r) {
    std::vector<std::pair<int64_t, float>> top(rows[r].begin(), rows[r].end());
    std::sort(top.begin(), top.end(), [](const auto& a, const auto& b) {
      return a.second != b.second ? a.second > b.second : a.first < b.first;
    });
    for (size_t i = 0; i < top.size() && int64_t(i) < k; ++i) {
      ids[int64_t(r) * k + int64_t(i)] = top[i].first;
      scores[int64_t(r) * k + int64_t(i)] = top[i].second;
    }
  }
}

}  // namespace

std::vector<int64_t> Ranking::within_reach(const Prerank& pre, const std::vector<int64_t>& keep, size_t& width,
                                           int64_t k_out) const {
  // Each row's candidates scored on the folded rows (a video: its best clip), all of them, best first.
  const size_t B = keep.size() / width;
  search::QueryBatch fq;
  fq.batch = int64_t(B);
  fq.per_channel = {pre.query};
  fq.weights = {1.0f};
  std::vector<float> fs(keep.size());
  std::vector<int64_t> fi(keep.size());
  pre.rows->corpus->topk_videos_among(fq, int64_t(width), keep.data(), int64_t(width), fs.data(), fi.data());
  // A clip's folded score is within kFoldedBound |q| norms[r] (+ a float16 subnormal's share) of
  // its exact one, so a video's best clip is within its clips' largest such bound. With T the
  // k-th best of (score - bound), k videos score >= T exactly, so every video of the exact top k
  // has score + bound >= T: those are kept, in their shortlist's order.
  const float* norms = pre.rows->norms.as<float>();
  std::vector<std::vector<int64_t>> kept(B);
  size_t most = 0;
  for (size_t b = 0; b < B; ++b) {
    const float* qr = pre.query + b * pre.dim;
    double q2 = 0, q1 = 0;
    for (size_t d = 0; d < pre.dim; ++d) {
      q2 += double(qr[d]) * qr[d];
      q1 += std::fabs(double(qr[d]));
    }
    const double qn = std::sqrt(q2), floor = q1 * kFoldedSubnormal;
    std::vector<double> lo, hi;
    std::vector<int64_t> ids;
    for (size_t j = 0; j < width; ++j) {
      const int64_t v = fi[b * width + j];
      if (v < 0) continue;
      float m = 0.0f;
      for (int64_t r = offsets_[size_t(v)]; r < offsets_[size_t(v) + 1]; ++r) m = std::max(m, norms[r]);
      const double bound = kFoldedBound * qn * double(m) + floor;
      lo.push_back(double(fs[b * width + j]) - bound);
      hi.push_back(double(fs[b * width + j]) + bound);
      ids.push_back(v);
    }
    if (int64_t(ids.size()) > k_out && k_out > 0) {
      std::vector<double> order(lo);
      std::nth_element(order.begin(), order.begin() + (k_out - 1), order.end(), std::greater<double>());
      const double t = order[size_t(k_out - 1)];
      for (size_t j = 0; j < ids.size(); ++j)
        if (hi[j] >= t) kept[b].push_back(ids[j]);
    } else {
      kept[b] = ids;
    }
    most = std::max(most, kept[b].size());
  }
  width = std::max<size_t>(most, 1);
  std::vector<int64_t> out(B * width, -1);
  for (size_t b = 0; b < B; ++b) std::copy(kept[b].begin(), kept[b].end(), out.begin() + long(b * width));
  return out;
}

Ranking::Ranking(std::shared_ptr<const SnapshotData> snap, const std::string& folder, bool prefault)
    : snap_(std::move(snap)) {
  for (const Video& v : snap_->videos) offsets_.push_back(v.first_row);
  offsets_.push_back(snap_->rows);
  std::vector<search::Channel> channels;
  for (const auto& [name, ch] : snap_->channels) {
    search::Channel c;
    c.dtype = ch.f16 ? search::DType::F16 : search::DType::F32;
    c.data = ch.data();
    c.rows = snap_->rows;
    c.dim = ch.dim;
    channels.push_back(c);
    names_.push_back(name);
  }
  if (!channels.empty() && snap_->rows > 0)
    corpus_ = std::make_unique<search::CpuCorpus>(channels, offsets_.data(), int64_t(snap_->videos.size()));
  first_ = std::make_unique<FirstStage>(snap_, folder, offsets_.data(), prefault);
}

search::QueryBatch Ranking::batch(const Queries& q, const std::map<std::string, float>& weights,
                                  std::vector<std::vector<float>>& zeros) const {
  search::QueryBatch b;
  b.batch = int64_t(q.batch);
  for (const std::string& name : names_) {
    auto it = q.rows.find(name);
    if (it != q.rows.end()) {  // a channel the query does not use costs a zero weight, not a pass
      b.per_channel.push_back(it->second.data());
      auto w = weights.find(name);
      b.weights.push_back(w == weights.end() ? 0.0f : w->second);
    } else {
      zeros.emplace_back(q.batch * size_t(snap_->channels.at(name).dim), 0.0f);
      b.per_channel.push_back(zeros.back().data());
      b.weights.push_back(0.0f);
    }
  }
  return b;
}

void Ranking::rank(const Queries& q, const std::map<std::string, float>& weights, int64_t k,
                   const std::vector<uint8_t>& eligible, const int64_t* candidates, size_t width,
                   const StageParams& p, int64_t* ids, float* scores, std::vector<const char*>& how,
                   StageTimes& times) const {
  using Clock = std::chrono::steady_clock;
  const auto ms = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
  };
  const size_t B = q.batch;
  how.assign(B, candidates ? "candidates" : "exact");
  times = StageTimes{};
  std::fill(ids, ids + B * size_t(k), int64_t(-1));
  std::fill(scores, scores + B * size_t(k), kNegInf);
  // flags are 0 or 1: memchr finds either in a few microseconds where a byte loop took 0.2 ms
  const bool any = std::memchr(eligible.data(), 1, eligible.size()) != nullptr;
  const bool all = std::memchr(eligible.data(), 0, eligible.size()) == nullptr;
  if (!corpus_ || !any) return;
  // The lexical candidates of each row: eligible refs, best coverage first, at most kLexicalJoin.
  std::vector<std::unordered_map<int64_t, float>> bonus(B);
  bool has_bonus = false;
  auto lw = weights.find(kLexical);
  if (lw != weights.end() && lw->second != 0.0f) {
    for (size_t r = 0; r < B; ++r) {
      if (!q.lexical[r].set) continue;
      std::vector<std::pair<int64_t, float>> refs;
      for (const auto& [ref, c] : q.lexical[r].videos)
        if (ref >= 0 && size_t(ref) < eligible.size() && eligible[size_t(ref)]) refs.emplace_back(ref, c);
      std::sort(refs.begin(), refs.end(), [](const auto& a, const auto& b) {
        return a.second != b.second ? a.second > b.second : a.first < b.first;
      });
      for (size_t i = 0; i < refs.size() && i < kLexicalJoin; ++i) bonus[r][refs[i].first] = lw->second * refs[i].second;
      has_bonus = has_bonus || !bonus[r].empty();
    }
  }
  if (q.rows.empty()) {  // words alone: the lexical scores are the ranking
    if (has_bonus) best_of(bonus, k, ids, scores);
    return;
  }
  std::vector<int64_t> staged;  // the first stage's shortlists, on a large index
  Prerank prerank;
  if (!candidates && snap_->rows >= p.min_rows) {
    const Clock::time_point t = Clock::now();
    std::map<std::string, float> dense;
    for (const auto& [c, w] : weights)
      if (c != kLexical) dense[c] = w;
    if (first_->shortlists(q, dense, k, eligible, p, staged, width, how, prerank)) candidates = staged.data();
    times.first = ms(t, Clock::now());
  }
  const Clock::time_point t_exact = Clock::now();
  std::vector<std::vector<float>> zeros;
  const search::QueryBatch qb = batch(q, weights, zeros);
  std::vector<uint64_t> bits;
  search::VideoFilter filter;
  if (!all) {  // an allow mask that admits every video runs as an unfiltered scan
    bits.assign((eligible.size() + 63) / 64, 0);
    for (size_t v = 0; v < eligible.size(); ++v)
      if (eligible[v]) bits[v >> 6] |= uint64_t(1) << (v & 63);
    filter.bits = bits.data();
    filter.n_words = int64_t(bits.size());
    filter.allow = true;
  }
  const int64_t k_out = std::min<int64_t>(k, int64_t(snap_->videos.size()));
  std::vector<float> s(B * size_t(k_out));
  std::vector<int64_t> i(B * size_t(k_out));
  if (candidates) {  // the exact stage of a staged ranking: each row among its own shortlist
    std::vector<int64_t> keep(candidates, candidates + B * width);
    for (int64_t& c : keep)
      if (c >= 0 && (size_t(c) >= eligible.size() || !eligible[size_t(c)])) c = -1;
    if (prerank.rows) {
      const Clock::time_point t = Clock::now();
      keep = within_reach(prerank, keep, width, k_out);
      times.prerank = ms(t, Clock::now());
    }
    corpus_->topk_videos_among(qb, k_out, keep.data(), int64_t(width), s.data(), i.data());
  } else {
    corpus_->topk_videos(qb, k_out, search::Agg::Max, 0.1f, filter, s.data(), i.data());
  }
  const Clock::time_point t_lexical = Clock::now();
  times.exact = ms(t_exact, t_lexical) - times.prerank;
  if (!has_bonus) {
    for (size_t r = 0; r < B; ++r)
      for (int64_t j = 0; j < k_out; ++j) {
        const int64_t id = i[r * size_t(k_out) + size_t(j)];
        ids[int64_t(r) * k + j] = id;
        scores[int64_t(r) * k + j] = id < 0 ? kNegInf : s[r * size_t(k_out) + size_t(j)];
      }
    return;
  }
  // The dense top k and the lexical candidates scored exactly, each with its bonus; the best k of
  // both. Any other video's score is its dense score, which the dense top k beat.
  size_t lex_width = 0;
  for (const auto& b : bonus) lex_width = std::max(lex_width, b.size());
  std::vector<int64_t> lex(B * lex_width, -1);
  for (size_t r = 0; r < B; ++r) {
    size_t j = 0;
    for (const auto& [ref, _] : bonus[r]) lex[r * lex_width + j++] = ref;
  }
  std::vector<float> ls(B * lex_width);
  std::vector<int64_t> li(B * lex_width);
  corpus_->topk_videos_among(qb, int64_t(lex_width), lex.data(), int64_t(lex_width), ls.data(), li.data());
  std::vector<std::unordered_map<int64_t, float>> fused(B);
  for (size_t r = 0; r < B; ++r) {
    for (int64_t j = 0; j < k_out; ++j) {
      const int64_t id = i[r * size_t(k_out) + size_t(j)];
      if (id >= 0) fused[r][id] = s[r * size_t(k_out) + size_t(j)];
    }
    for (size_t j = 0; j < lex_width; ++j) {
      const int64_t id = li[r * lex_width + j];
      if (id >= 0) fused[r][id] = ls[r * lex_width + j] + bonus[r].at(id);
    }
  }
  best_of(fused, k, ids, scores);
  times.lexical = ms(t_lexical, Clock::now());
}

}  // namespace ivcr::engine
