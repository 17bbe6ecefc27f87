// Moment edges at sub-clip precision (index/moment_edges.py's rules, the one definition now):
// snap a span cut on the clip grid to the timed lines matching the query, or let the one line
// of the window that stands out answer. Pure: lines and their scores in, edges out.
#pragma once
#include <optional>
#include <utility>
#include <vector>

#include "engine/store.h"

namespace ivcr::engine {

constexpr double kMatchAboveChance = 0.10;  // a line matches at TEXT_BASELINE + this (calibrated)
constexpr double kNearBest = 0.1;           // neighbours join while within this of the best line
constexpr double kLead = 0.02;              // best_line: the lead over every other line

using Edges = std::optional<std::pair<double, double>>;

// `lines` (pointers into a video's lines, in time order) around the span, `scores` their
// calibrated matches (NaN: unscored); `chance` the baseline, bounds the video or the window.
Edges snap_to_lines(double start, double end, const std::vector<const Line*>& lines, const std::vector<float>& scores,
                    double chance, double lo, double hi);
Edges best_line(const std::vector<const Line*>& lines, const std::vector<float>& scores, double chance, double lo,
                double hi);
// Cosine of a line's vector to the first len(vec) dims of the query row (NaN when unscorable).
float line_cosine(const float* q, size_t q_dim, const std::vector<float>& vec);

}  // namespace ivcr::engine
