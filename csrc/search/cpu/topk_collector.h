// Bounded top-k collector. Candidates go into a buffer of up to 2k; when it is full, a selection
// (nth_element) keeps the best k and their worst becomes the bar a new candidate must beat. A
// push is one comparison once the bar is set, and O(1) amortised otherwise, whatever k is: a
// binary heap paid log k per accepted push, which made the first stage's shortlists of a few
// thousand videos cost more than the scan that scored them. Order: higher score first, and on
// equal scores the lower id first (the tie rule of the whole engine).
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

namespace ivcr::search {

struct Scored {
  float score;
  int64_t id;
};

// a ranks after b (a is "worse").
inline bool ranks_after(const Scored& a, const Scored& b) {
  return a.score < b.score || (a.score == b.score && a.id > b.id);
}

class TopKCollector {
 public:
  void reset(int64_t k) {
    k_ = k;
    have_bar_ = false;
    items_.clear();
    items_.reserve(static_cast<std::size_t>(std::min<int64_t>(2 * k, 1 << 16)));
  }

  // Scores below this can never be kept (-inf until the first selection); ties are settled in push().
  float threshold() const { return have_bar_ ? bar_.score : -__builtin_inff(); }

  void push(float score, int64_t id) {
    if (score != score) return;  // NaN never ranks
    const Scored c{score, id};
    if (have_bar_ && !ranks_after(bar_, c)) return;
    items_.push_back(c);
    if (static_cast<int64_t>(items_.size()) >= 2 * k_) select();
  }

  // Pushes a run of consecutive ids [first_id, first_id + n) with scores s[0..n).
  void push_run(const float* s, int n, int64_t first_id) {
    float thr = threshold();
    for (int i = 0; i < n; ++i) {
      if (s[i] >= thr) {
        push(s[i], first_id + i);
        thr = threshold();
      }
    }
  }

  // The candidates kept: the best k among everything pushed, possibly with up to k more (callers
  // sort and take what they need).
  const std::vector<Scored>& items() const { return items_; }

 private:
  void select() {
    const auto better = [](const Scored& x, const Scored& y) { return ranks_after(y, x); };
    std::nth_element(items_.begin(), items_.begin() + (k_ - 1), items_.end(), better);
    items_.resize(static_cast<std::size_t>(k_));
    bar_ = items_.back();  // the k-th best: every kept item ranks before or is it
    have_bar_ = true;
  }

  int64_t k_ = 0;
  bool have_bar_ = false;
  Scored bar_{0.f, 0};
  std::vector<Scored> items_;
};

// The one merge of top-k candidates in the engine: writes the best k_out of `all` (reordered in
// place) to scores/ids, best first, padded with -inf / -1. O(n + k log k): shortlists run to
// thousands. Used by the scans' per-worker collectors and by merge_topk (shards, the batcher).
inline void write_best(std::vector<Scored>& all, int64_t k_out, float* scores, int64_t* ids) {
  const auto better = [](const Scored& x, const Scored& y) { return ranks_after(y, x); };
  const std::size_t keep = std::min<std::size_t>(all.size(), std::size_t(k_out));
  if (keep < all.size()) std::nth_element(all.begin(), all.begin() + keep, all.end(), better);
  std::sort(all.begin(), all.begin() + keep, better);
  for (int64_t i = 0; i < k_out; ++i) {
    const bool have = std::size_t(i) < keep;
    scores[i] = have ? all[i].score : -__builtin_inff();
    ids[i] = have ? all[i].id : -1;
  }
}

}  // namespace ivcr::search
