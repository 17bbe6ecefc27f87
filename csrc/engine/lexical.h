// The lexical channel's lines for a query text (the Python path's definition, kept as the suite's
// reference in tests/engine/reference_lexical.py). A query's terms (lexicon.h) weigh by their
// rarity in their language, not in the index, so every shard weighs a word alike; a line's
// coverage is the weight of the terms it holds over the query's (0..1 whatever the corpus, so the
// ranking adds it to the dense scores with one weight). A term in more than `cap` lines (0.5 % of
// the index's, within 50..1000, counted once per word and snapshot) finds no line, since reading a
// common word's doclist cost milliseconds, but still weighs in the total. FTS5 intersects the
// rarest four of the others (all, then all but one; one at a time for queries of one or two
// terms), best possible coverage first, until 64 lines are found. Kept per text, so the moments
// of the same turn read no more.
#pragma once
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/lexicon.h"
#include "engine/query.h"
#include "engine/store.h"

namespace ivcr::engine {

struct FoundLines {
  std::vector<std::pair<int64_t, double>> coverage;  // line rowid -> coverage, in the order found
  std::unordered_map<int64_t, int64_t> video_of;     // line rowid -> video id
};

class LexicalSearch {
 public:
  // `ref_of`: the view's video id -> ref (lines of videos the view lacks are skipped).
  LexicalSearch(Store* store, std::shared_ptr<const Lexicon> lexicon, std::unordered_map<int64_t, int64_t> ref_of);
  FoundLines find(const std::string& text);
  // The matches the ranking, moments and evidence take: ref -> best line's coverage, rowid -> coverage.
  LexicalMatches matches(const std::string& text);

 private:
  bool common(const Term& t);
  Store* store_;
  std::shared_ptr<const Lexicon> lexicon_;
  std::unordered_map<int64_t, int64_t> ref_of_;
  std::mutex mu_;
  std::once_flag cap_once_;  // the cap is counted on the first query that needs it
  int64_t cap_ = 0;
  std::unordered_map<std::string, bool> common_;
  std::list<std::pair<std::string, FoundLines>> kept_;  // most recent first
  std::unordered_map<std::string, std::list<std::pair<std::string, FoundLines>>::iterator> kept_at_;
};

}  // namespace ivcr::engine
