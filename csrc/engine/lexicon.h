// A query's words for the lexical channel, as ivcr_engine/index/words.py and lexicon.py define
// them, from the tables `ivcr models prepare` exports through those modules
// (models/prepare_lexicon.py: jieba's dictionary, wordninja's ranks, the dictionary translations,
// Python's \w and lowercase): Latin runs split into \w+ words and lowercased, CJK runs cut by
// jieba's precise cut without its HMM (the DAG of dictionary words, the most probable route),
// stop words and repeats dropped; each word a term with its translations and its rarity.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "engine/utf8.h"

namespace ivcr::engine {

struct Term {
  std::string word;                // the query's word
  std::vector<std::string> forms;  // it and its translations
  double rarity = 0.0;             // words.rarity
  std::string match;               // the FTS5 query of any form: ("a" OR "b")
};

class Lexicon {
 public:
  // The tables under <model_dir>/lexicon, read once per folder; throws Unsupported when they
  // are not prepared.
  static std::shared_ptr<const Lexicon> load(const std::string& model_dir);
  explicit Lexicon(const std::string& folder);

  // words.VERSION of the segmentation the tables follow (an index's lexical table must match).
  const std::string& version() const { return version_; }
  std::vector<std::string> query_words(const std::string& text) const;  // words.query_words
  std::vector<Term> terms(const std::string& text) const;               // lexical.query_terms
  double rarity(const std::string& word) const;                         // words.rarity

 private:
  // One CJK run's words by jieba's precise cut, appended to `out` (route: one block of han characters).
  void cut(const std::u32string& run, std::vector<std::u32string>& out) const;
  void route(const std::u32string& block, std::vector<std::u32string>& out) const;
  // Python's str.lower() of one \w+ word: each character's lowercase, except that a capital sigma
  // ends as the final form where Unicode's Final_Sigma condition holds inside the word.
  std::u32string lower(const std::u32string& part, size_t begin, size_t end) const;

  // Sorted, disjoint code point ranges [first, last].
  struct Ranges {
    std::vector<std::pair<char32_t, char32_t>> r;
    bool has(char32_t c) const;
  };

  std::string version_;
  std::unordered_map<std::string, int64_t> freq_;  // jieba's FREQ (prefixes at 0)
  double log_total_ = 0.0, total_ = 0.0;
  std::unordered_map<std::string, int64_t> rank_;  // English word -> rank
  double log_n_ = 0.0;
  std::unordered_map<std::string, std::vector<std::string>> translations_;
  Ranges word_;                   // Python's \w
  Ranges cased_, case_ignorable_;  // as str.lower()'s Final_Sigma test sees them (prepare_lexicon.py)
  std::unordered_map<char32_t, std::u32string> lower_;
  std::unordered_set<std::string> stop_;
};

bool has_cjk(const std::u32string& s);

}  // namespace ivcr::engine
