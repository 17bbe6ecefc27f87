// Bounded top-k collector: a binary heap with the worst kept candidate at the root, so a new
// score is rejected with one comparison once the heap is full. Order: higher score first, and
// on equal scores the lower id first (the tie rule of the whole engine).
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

class TopKHeap {
 public:
  void reset(int64_t k) {
    k_ = k;
    items_.clear();
    items_.reserve(static_cast<std::size_t>(std::min<int64_t>(k, 1 << 16)));
  }

  bool full() const { return static_cast<int64_t>(items_.size()) >= k_; }

  // Fast reject for the common case; exact tie handling happens in push().
  float threshold() const { return full() ? items_.front().score : -__builtin_inff(); }

  void push(float score, int64_t id) {
    if (score != score) return;  // NaN never ranks
    const Scored c{score, id};
    if (!full()) {
      items_.push_back(c);
      std::push_heap(items_.begin(), items_.end(), worse_on_top);
    } else if (ranks_after(items_.front(), c)) {
      std::pop_heap(items_.begin(), items_.end(), worse_on_top);
      items_.back() = c;
      std::push_heap(items_.begin(), items_.end(), worse_on_top);
    }
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

  const std::vector<Scored>& items() const { return items_; }

 private:
  // std heap functions keep the "largest" at the front; "largest" here is the worst candidate.
  static bool worse_on_top(const Scored& a, const Scored& b) { return ranks_after(b, a); }

  int64_t k_ = 0;
  std::vector<Scored> items_;
};

}  // namespace ivcr::search
