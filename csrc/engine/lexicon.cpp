#include "engine/lexicon.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <mutex>

#include "engine/error.h"
#include "engine/json.h"

namespace ivcr::engine {
namespace {

constexpr double kRarityMax = 14.0;  // words.RARITY_MAX

bool in_cjk(char32_t c) {  // words._CJK
  return (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0xF900 && c <= 0xFAFF);
}

bool in_han(char32_t c) { return c >= 0x4E00 && c <= 0x9FD5; }  // jieba's re_han_default, within a CJK run

std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> out;
  size_t a = 0;
  for (;;) {
    size_t b = line.find('\t', a);
    out.push_back(line.substr(a, b == std::string::npos ? std::string::npos : b - a));
    if (b == std::string::npos) return out;
    a = b + 1;
  }
}

template <class F>
void each_line(const std::string& path, F&& f) {
  std::ifstream in(path);
  if (!in) fail(Status::Unsupported, "the lexical channel's tables are missing (" + path + "); run `ivcr models prepare`");
  std::string line;
  while (std::getline(in, line)) f(split_tabs(line));
}

std::string phrase(const std::string& text) {  // words.phrase: one FTS5 phrase, safe from its syntax
  std::string out = "\"";
  for (char c : text) {
    out += c;
    if (c == '"') out += '"';
  }
  return out + "\"";
}

}  // namespace

bool has_cjk(const std::u32string& s) { return std::any_of(s.begin(), s.end(), in_cjk); }

std::shared_ptr<const Lexicon> Lexicon::load(const std::string& model_dir) {
  static std::mutex mu;
  // ~1-2 s to read, so once per folder and process (include/ivcr.h: the one global besides the
  // thread pool; read-only once loaded): a host that opens a new handle on each refresh, as the
  // Python package does, reads them once
  static std::map<std::string, std::shared_ptr<const Lexicon>> loaded;
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = loaded[model_dir];
  if (!slot) slot = std::make_shared<const Lexicon>(model_dir + "/lexicon");
  return slot;
}

Lexicon::Lexicon(const std::string& folder) {
  Json card;
  if (!Json::load(folder + "/card.json", card))
    fail(Status::Unsupported, "the lexical channel's tables are not prepared (no " + folder +
                                  "/card.json); run `ivcr models prepare`");
  version_ = card.str("version");
  each_line(folder + "/jieba.tsv", [&](const std::vector<std::string>& f) {
    if (f.size() != 2) fail(Status::Unsupported, folder + "/jieba.tsv is damaged; run `ivcr models prepare --force`");
    if (f[0] == "#total") {
      total_ = double(std::stoll(f[1]));
      log_total_ = std::log(total_);
    } else {
      freq_[f[0]] = std::stoll(f[1]);
    }
  });
  each_line(folder + "/english.tsv", [&](const std::vector<std::string>& f) {
    if (f.size() != 2) fail(Status::Unsupported, folder + "/english.tsv is damaged; run `ivcr models prepare --force`");
    if (f[0] == "#n")
      log_n_ = std::log(double(std::stoll(f[1])));
    else
      rank_[f[0]] = std::stoll(f[1]);
  });
  each_line(folder + "/translations.tsv", [&](const std::vector<std::string>& f) {
    translations_[f[0]] = std::vector<std::string>(f.begin() + 1, f.end());
  });
  each_line(folder + "/chars.tsv", [&](const std::vector<std::string>& f) {
    if (f.size() != 3) return;
    Ranges* ranges = f[0] == "w" ? &word_ : f[0] == "c" ? &cased_ : f[0] == "i" ? &case_ignorable_ : nullptr;
    if (ranges)
      ranges->r.emplace_back(char32_t(std::stoul(f[1])), char32_t(std::stoul(f[2])));
    else if (f[0] == "l")
      lower_[char32_t(std::stoul(f[1]))] = utf8_decode(f[2]);
  });
  for (Ranges* ranges : {&word_, &cased_, &case_ignorable_}) std::sort(ranges->r.begin(), ranges->r.end());
  each_line(folder + "/stop.txt", [&](const std::vector<std::string>& f) { stop_.insert(f[0]); });
  if (total_ <= 0 || log_n_ <= 0 || word_.r.empty() || cased_.r.empty() || case_ignorable_.r.empty())
    fail(Status::Unsupported, "the lexical channel's tables under " + folder + " are incomplete; run `ivcr models prepare --force`");
}

bool Lexicon::Ranges::has(char32_t c) const {
  auto it = std::upper_bound(r.begin(), r.end(), std::make_pair(c, char32_t(0x10FFFF)));
  return it != r.begin() && std::prev(it)->first <= c && c <= std::prev(it)->second;
}

std::u32string Lexicon::lower(const std::u32string& part, size_t begin, size_t end) const {
  std::u32string w;
  for (size_t i = begin; i < end; ++i) {
    if (part[i] == U'\u03A3') {  // CPython's handle_capital_sigma, within the word as words.py lowers it
      size_t j = i;
      while (j > begin && case_ignorable_.has(part[j - 1])) --j;
      bool final = j > begin && cased_.has(part[j - 1]);
      for (j = i + 1; final && j < end && case_ignorable_.has(part[j]);) ++j;
      final = final && (j == end || !cased_.has(part[j]));
      w.push_back(final ? U'\u03C2' : U'\u03C3');
      continue;
    }
    auto low = lower_.find(part[i]);
    if (low == lower_.end())
      w.push_back(part[i]);
    else
      w += low->second;
  }
  return w;
}

// jieba's __cut_DAG_NO_HMM over one block of han characters: each position's dictionary words
// (the DAG), then from the end the route of the highest summed log probability, ties to the
// longer word (Python's max over (log p, end) tuples).
void Lexicon::route(const std::u32string& block, std::vector<std::u32string>& out) const {
  const size_t n = block.size();
  // dag[k]: the ends of the dictionary words starting at k, each with its count (1 for the lone
  // character jieba falls back to when none is a word)
  std::vector<std::vector<std::pair<size_t, int64_t>>> dag(n);
  for (size_t k = 0; k < n; ++k) {
    std::u32string frag(1, block[k]);
    for (size_t i = k; i < n;) {
      auto it = freq_.find(utf8_encode(frag));
      if (it == freq_.end()) break;
      if (it->second) dag[k].emplace_back(i, it->second);
      ++i;
      if (i < n) frag.push_back(block[i]);
    }
    if (dag[k].empty()) dag[k].emplace_back(k, 1);
  }
  std::vector<std::pair<double, size_t>> best(n + 1, {0.0, 0});
  for (size_t idx = n; idx-- > 0;) {
    bool first = true;
    for (const auto& [x, f] : dag[idx]) {
      const std::pair<double, size_t> cand{std::log(double(f)) - log_total_ + best[x + 1].first, x};
      if (first || cand > best[idx]) best[idx] = cand;
      first = false;
    }
  }
  for (size_t x = 0; x < n;) {
    const size_t y = best[x].second + 1;
    out.push_back(block.substr(x, y - x));
    x = y;
  }
}

void Lexicon::cut(const std::u32string& run, std::vector<std::u32string>& out) const {
  // jieba.cut: han blocks through the DAG, any other character of the run on its own
  for (size_t i = 0; i < run.size();) {
    if (!in_han(run[i])) {
      out.push_back(run.substr(i, 1));
      ++i;
      continue;
    }
    size_t j = i;
    while (j < run.size() && in_han(run[j])) ++j;
    route(run.substr(i, j - i), out);
    i = j;
  }
}

std::vector<std::string> Lexicon::query_words(const std::string& text) const {
  const std::u32string s = utf8_decode(text);
  std::vector<std::u32string> parts;  // words._split(text, search=False)
  size_t at = 0;
  for (size_t i = 0; i < s.size();) {
    if (!in_cjk(s[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < s.size() && in_cjk(s[j])) ++j;
    parts.push_back(s.substr(at, i - at));
    cut(s.substr(i, j - i), parts);
    at = i = j;
  }
  parts.push_back(s.substr(at));
  std::vector<std::string> words;
  std::unordered_set<std::string> seen;
  for (const std::u32string& part : parts)
    for (size_t i = 0; i < part.size();) {  // \w+, lowercased
      if (!word_.has(part[i])) {
        ++i;
        continue;
      }
      const size_t begin = i;
      while (i < part.size() && word_.has(part[i])) ++i;
      std::string word = utf8_encode(lower(part, begin, i));
      if (word == "_" || stop_.count(word) || !seen.insert(word).second) continue;
      words.push_back(std::move(word));
    }
  return words;
}

double Lexicon::rarity(const std::string& word) const {
  if (has_cjk(utf8_decode(word))) {
    auto it = freq_.find(word);
    const int64_t f = it == freq_.end() ? 0 : it->second;
    return f ? std::min(kRarityMax, std::log(total_ / double(f))) : kRarityMax;
  }
  auto it = rank_.find(word);
  return it == rank_.end() ? kRarityMax : std::min(kRarityMax, std::log(double(it->second) * log_n_));
}

std::vector<Term> Lexicon::terms(const std::string& text) const {
  std::vector<Term> out;
  for (std::string& w : query_words(text)) {
    Term t;
    t.forms.push_back(w);
    auto it = translations_.find(w);
    if (it != translations_.end())
      for (const std::string& f : it->second)
        if (std::find(t.forms.begin(), t.forms.end(), f) == t.forms.end()) t.forms.push_back(f);
    t.rarity = rarity(w);
    t.match = "(";
    for (size_t i = 0; i < t.forms.size(); ++i) t.match += (i ? " OR " : "") + phrase(t.forms[i]);
    t.match += ")";
    t.word = std::move(w);
    out.push_back(std::move(t));
  }
  return out;
}

}  // namespace ivcr::engine
