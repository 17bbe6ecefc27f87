#include "engine/lexical.h"

#include <algorithm>

namespace ivcr::engine {
namespace {

constexpr size_t kLinesRead = 64;     // lexical.LINES_READ
constexpr size_t kMaxTerms = 4;       // lexical.MAX_TERMS
constexpr double kCommonShare = 0.005;  // lexical.COMMON_SHARE, COMMON_MIN, COMMON_MAX
constexpr int64_t kCommonMin = 50, kCommonMax = 1000;
constexpr size_t kKept = 256;         // lexical.KEPT

// itertools.combinations(range(n), r), in its order
void combinations(size_t n, size_t r, std::vector<std::vector<size_t>>& out) {
  std::vector<size_t> c(r);
  for (size_t i = 0; i < r; ++i) c[i] = i;
  for (;;) {
    out.push_back(c);
    size_t i = r;
    while (i-- > 0 && c[i] == i + n - r) {
    }
    if (i == size_t(-1)) return;
    ++c[i];
    for (size_t j = i + 1; j < r; ++j) c[j] = c[j - 1] + 1;
  }
}

}  // namespace

LexicalSearch::LexicalSearch(Store* store, std::shared_ptr<const Lexicon> lexicon,
                             std::unordered_map<int64_t, int64_t> ref_of)
    : store_(store), lexicon_(std::move(lexicon)), ref_of_(std::move(ref_of)) {}

bool LexicalSearch::common(const Term& t) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = common_.find(t.match);
    if (it != common_.end()) return it->second;
  }
  std::call_once(cap_once_, [&] {
    cap_ = std::min(kCommonMax, std::max(kCommonMin, int64_t(kCommonShare * double(store_->line_total()))));
  });
  const bool is = store_->count_matching(t.match, cap_ + 1) > cap_;
  std::lock_guard<std::mutex> lock(mu_);
  common_[t.match] = is;
  return is;
}

FoundLines LexicalSearch::find(const std::string& text) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = kept_at_.find(text);
    if (it != kept_at_.end()) {
      kept_.splice(kept_.begin(), kept_, it->second);
      return it->second->second;
    }
  }
  FoundLines got;
  std::vector<Term> terms = lexicon_->terms(text);
  if (!terms.empty()) {
    double total = 0.0;
    for (const Term& t : terms) total += t.rarity;
    std::vector<const Term*> used;
    for (const Term& t : terms)
      if (!common(t)) used.push_back(&t);
    std::stable_sort(used.begin(), used.end(), [](const Term* a, const Term* b) { return a->rarity > b->rarity; });
    if (used.size() > kMaxTerms) used.resize(kMaxTerms);
    if (!used.empty()) {
      std::vector<std::vector<size_t>> steps;
      std::vector<size_t> all(used.size());
      for (size_t i = 0; i < all.size(); ++i) all[i] = i;
      steps.push_back(all);
      if (used.size() > 2) combinations(used.size(), used.size() - 1, steps);
      else if (used.size() == 2) steps.push_back({0}), steps.push_back({1});
      const auto weight = [&](const std::vector<size_t>& s) {
        double w = 0.0;  // summed in the step's order, as Python's sum()
        for (size_t i : s) w += used[i]->rarity;
        return w;
      };
      std::stable_sort(steps.begin(), steps.end(),
                       [&](const std::vector<size_t>& a, const std::vector<size_t>& b) { return weight(a) > weight(b); });
      for (const auto& step : steps) {
        if (got.coverage.size() >= kLinesRead) break;
        const double c = weight(step) / total;
        std::string match;
        for (size_t i = 0; i < step.size(); ++i) match += (i ? " AND " : "") + used[step[i]]->match;
        for (const auto& [rowid, vid] : store_->lines_with(match, int64_t(kLinesRead - got.coverage.size()))) {
          if (!got.video_of.emplace(rowid, vid).second) continue;  // found by a better step already
          got.coverage.emplace_back(rowid, c);
        }
      }
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (!kept_at_.count(text)) {
    kept_.emplace_front(text, got);
    kept_at_[text] = kept_.begin();
    while (kept_.size() > kKept) {
      kept_at_.erase(kept_.back().first);
      kept_.pop_back();
    }
  }
  return got;
}

LexicalMatches LexicalSearch::matches(const std::string& text) {
  const FoundLines found = find(text);
  LexicalMatches m;
  m.set = true;
  std::unordered_map<int64_t, size_t> at;  // ref -> its place in m.videos
  for (const auto& [rowid, c] : found.coverage) {
    auto ref = ref_of_.find(found.video_of.at(rowid));
    if (ref == ref_of_.end()) continue;
    auto it = at.find(ref->second);
    if (it == at.end()) {
      at[ref->second] = m.videos.size();
      m.videos.emplace_back(ref->second, float(c));
    } else {
      m.videos[it->second].second = std::max(m.videos[it->second].second, float(c));
    }
  }
  for (const auto& [rowid, c] : found.coverage) m.lines[rowid] = float(c);
  return m;
}

}  // namespace ivcr::engine
