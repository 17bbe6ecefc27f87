// What a search takes: query rows per channel (B rows each), the lexical channel's matches a host
// found per row, and the options (weights, allow/deny, moments, evidence, window).
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

namespace ivcr::engine {

// index/layout.py: the channels in the text encoder's space, those with a trailing presence
// dimension, the lexical channel's name and the defaults a turn fuses them with.
inline bool is_presence_channel(const std::string& c) { return c == "speech" || c == "subtitle" || c == "ocr"; }
inline bool is_text_channel(const std::string& c) { return c == "concept" || is_presence_channel(c); }
constexpr const char* kLexical = "lexical";
constexpr float kTextBaseline = 0.15f;  // layout.TEXT_BASELINE
// layout.DEFAULT_WEIGHTS: a channel missing from it (visual) weighs 0 unless a caller says otherwise.
inline std::map<std::string, float> default_weights() {
  return {{"concept", 1.0f}, {"speech", 1.0f}, {"subtitle", 1.0f}, {"ocr", 1.0f}, {"clip", 1.0f}, {kLexical, 0.3f}};
}

// A row's lexical channel: the matches a host found, or the row's text, whose matches the engine
// finds (lexical.h) before it ranks.
struct LexicalMatches {
  bool set = false;                                 // the row is a text query with a lexical search
  std::vector<std::pair<int64_t, float>> videos;    // ref -> best line's coverage (0..1]
  std::unordered_map<int64_t, float> lines;         // line rowid -> coverage
  bool from_text = false;                           // the engine finds the matches of `text`
  std::string text;
};

struct Queries {
  size_t batch = 0;
  std::map<std::string, std::vector<float>> rows;  // channel -> batch x dim
  std::map<std::string, size_t> dims;
  std::vector<LexicalMatches> lexical;             // one per row

  explicit Queries(size_t b = 0) : batch(b), lexical(b) {}
  const float* row(const std::string& channel, size_t b) const { return rows.at(channel).data() + b * dims.at(channel); }
  bool has_lexical() const {
    for (const auto& l : lexical)
      if (l.set || l.from_text) return true;
    return false;
  }
  // One row of every channel, as a batch-1 Queries.
  Queries pick(size_t b) const;
};

// index/ranking.py's constants, which a host may set per search (tests shrink them).
struct StageParams {
  int64_t min_rows = 200000;         // TWO_STAGE_MIN_ROWS: from this many clips on, rank in two stages
  int64_t shortlist = 400;           // SHORTLIST: videos each row's exact stage re-ranks
  int64_t coarse_shortlist = 8000;   // first_stage.COARSE_SHORTLIST
  double lists_min_eligible = 0.95;  // LISTS_MIN_ELIGIBLE
  int64_t clips_per_video = 8;       // inverted_lists.CLIPS_PER_SHORTLISTED_VIDEO
};

struct SearchOptions {
  std::map<std::string, float> weights = default_weights();
  bool has_allow = false, has_deny = false;
  std::vector<int64_t> allow, deny;
  // A host's first stage: per query row, `width` candidate refs (-1 padded) the exact stage ranks
  // among (FAISS IndexRefine-style); empty: the exact stage scans every eligible video.
  std::vector<int64_t> candidates;
  size_t candidate_rows = 0, candidate_width = 0;
  // Refs eligible by a host's own view (refs past its end are not): empty for every ref.
  std::vector<uint8_t> eligible;
  int per_video = 1;
  StageParams stage;  // the staged ranking's sizes
  bool evidence = true;
  double window_lo = -std::numeric_limits<double>::infinity();
  double window_hi = std::numeric_limits<double>::infinity();
  bool windowed() const { return std::isfinite(window_lo) || std::isfinite(window_hi); }
  float weight(const std::string& c) const {
    auto it = weights.find(c);
    return it == weights.end() ? 0.0f : it->second;
  }
};

}  // namespace ivcr::engine
