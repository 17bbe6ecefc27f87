#include "engine/moment_edges.h"

#include <algorithm>
#include <cmath>

namespace ivcr::engine {

float line_cosine(const float* q, size_t q_dim, const std::vector<float>& vec) {
  if (vec.empty() || q_dim < vec.size()) return NAN;
  float dot = 0.0f, qq = 0.0f, vv = 0.0f;
  for (size_t j = 0; j < vec.size(); ++j) {
    dot += q[j] * vec[j];
    qq += q[j] * q[j];
    vv += vec[j] * vec[j];
  }
  const double norm = double(std::sqrt(qq)) * double(std::sqrt(vv));
  return norm > 0 ? float(double(dot) / norm) : NAN;
}

Edges snap_to_lines(double start, double end, const std::vector<const Line*>& lines, const std::vector<float>& scores,
                    double chance, double lo, double hi) {
  int best = -1;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (!(lines[i]->start < end && lines[i]->end > start) || !std::isfinite(scores[i])) continue;
    if (best < 0 || scores[i] > scores[size_t(best)]) best = int(i);  // ties: the earlier line
  }
  if (best < 0) return std::nullopt;
  const double match = chance + kMatchAboveChance;
  if (double(scores[size_t(best)]) < match) return std::nullopt;
  const double near = std::max(match, double(scores[size_t(best)]) - kNearBest);
  std::vector<size_t> same;  // the best line's source, in time order
  for (size_t i = 0; i < lines.size(); ++i)
    if (lines[i]->source == lines[size_t(best)]->source) same.push_back(i);
  size_t p = size_t(std::find(same.begin(), same.end(), size_t(best)) - same.begin()), q = p;
  while (p > 0 && double(scores[same[p - 1]]) >= near) --p;
  while (q + 1 < same.size() && double(scores[same[q + 1]]) >= near) ++q;
  double a = lines[same[p]]->start, b = lines[same[p]]->end;
  for (size_t k = p; k <= q; ++k) {
    a = std::min(a, lines[same[k]]->start);
    b = std::max(b, lines[same[k]]->end);
  }
  a = std::max(a, lo);
  b = std::min(b, hi);
  if (!(b > a)) return std::nullopt;
  return std::make_pair(a, b);
}

Edges best_line(const std::vector<const Line*>& lines, const std::vector<float>& scores, double chance, double lo,
                double hi) {
  int best = -1, second = -1;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (!std::isfinite(scores[i])) continue;
    if (best < 0 || scores[i] > scores[size_t(best)]) {
      second = best;
      best = int(i);
    } else if (second < 0 || scores[i] > scores[size_t(second)]) {
      second = int(i);
    }
  }
  if (best < 0) return std::nullopt;
  if (double(scores[size_t(best)]) < chance) return std::nullopt;
  if (second >= 0 && double(scores[size_t(best)] - scores[size_t(second)]) < kLead) return std::nullopt;
  const double a = std::max(lines[size_t(best)]->start, lo), b = std::min(lines[size_t(best)]->end, hi);
  if (!(b > a)) return std::nullopt;
  return std::make_pair(a, b);
}

}  // namespace ivcr::engine
