// The rules that snap a grid span to the text lines matching a query (csrc/engine/moment_edges.cpp),
// on hand-made lines and scores: who may start a match, who joins it, what stays on the grid.
// Built and run by tests/engine/test_moment_edges.py; prints each failed check and exits 1.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "engine/moment_edges.h"

using namespace ivcr::engine;

static int failures = 0;
#define CHECK(cond)                                                  \
  do {                                                               \
    if (!(cond)) {                                                   \
      std::printf("FAILED line %d: %s\n", __LINE__, #cond);          \
      ++failures;                                                    \
    }                                                                \
  } while (0)

static const double CHANCE = 0.15, MATCH = CHANCE + kMatchAboveChance, V0 = 0.0, V1 = 60.0;

static std::vector<Line> make(const std::vector<std::tuple<const char*, double, double>>& spec) {
  std::vector<Line> out;
  for (const auto& [src, a, b] : spec) {
    Line l;
    l.source = src;
    l.start = a;
    l.end = b;
    out.push_back(l);
  }
  return out;
}
static std::vector<const Line*> ptrs(const std::vector<Line>& lines) {
  std::vector<const Line*> p;
  for (const Line& l : lines) p.push_back(&l);
  return p;
}
static bool is(const Edges& e, double a, double b) {
  return e && std::fabs(e->first - a) < 1e-6 && std::fabs(e->second - b) < 1e-6;
}

int main() {
  const auto store = make({{"speech", 1.0, 4.0}, {"speech", 4.3, 7.9}, {"speech", 8.2, 11.0}, {"speech", 12.2, 16.2},
                           {"speech", 16.5, 19.0}});
  const auto L = ptrs(store);
  // the best matching line inside the span gives the edges
  CHECK(is(snap_to_lines(12, 18, L, {0.1f, 0.2f, 0.1f, 0.8f, 0.2f}, CHANCE, V0, V1), 12.2, 16.2));
  // neighbours of the same source join while they score near the best (b, c: one sentence split)
  const std::vector<float> split = {0.1f, 0.75f, 0.8f, 0.1f, 0.72f};
  CHECK(is(snap_to_lines(4, 12, L, split, CHANCE, V0, V1), 4.3, 11.0));
  CHECK(is(snap_to_lines(4, 20, L, split, CHANCE, V0, V1), 4.3, 11.0));  // no jump over d
  const std::vector<float> far = {0.1f, float(0.8 - kNearBest - 0.01), 0.8f, 0.1f, 0.1f};
  CHECK(is(snap_to_lines(4, 12, L, far, CHANCE, V0, V1), 8.2, 11.0));
  // no line above the match level keeps the grid
  CHECK(!snap_to_lines(0, 20, L, {0.1f, 0.2f, float(MATCH - 0.01), 0.2f, 0.1f}, CHANCE, V0, V1));
  CHECK(!snap_to_lines(0, 20, L, std::vector<float>(5, NAN), CHANCE, V0, V1));
  CHECK(!snap_to_lines(0, 20, {}, {}, CHANCE, V0, V1));
  // a line only near the span may join a match but never starts one
  const std::vector<float> near = {0.1f, 0.1f, 0.1f, 0.9f, 0.85f};
  CHECK(!snap_to_lines(8, 12, L, near, CHANCE, V0, V1));
  CHECK(is(snap_to_lines(14, 16, L, near, CHANCE, V0, V1), 12.2, 19.0));
  // other sources do not join, and ties go to the earlier line
  const auto mixed_store = make({{"subtitle", 12.0, 14.0}, {"speech", 12.2, 16.2}, {"subtitle", 14.0, 16.4}});
  const auto M = ptrs(mixed_store);
  CHECK(is(snap_to_lines(12, 18, M, {0.6f, 0.8f, 0.75f}, CHANCE, V0, V1), 12.2, 16.2));
  CHECK(is(snap_to_lines(12, 18, M, {0.8f, 0.8f, 0.1f}, CHANCE, V0, V1), 12.0, 14.0));
  // edges stay inside the video and the window
  const std::vector<float> one = {0.1f, 0.1f, 0.1f, 0.8f, 0.1f};
  CHECK(is(snap_to_lines(12, 14, L, one, CHANCE, 0.0, 13.0), 12.2, 13.0));
  CHECK(is(snap_to_lines(14, 16, L, one, CHANCE, 14.0, 60.0), 14.0, 16.2));
  CHECK(!snap_to_lines(12, 14, L, one, CHANCE, 16.5, 60.0));
  // line cosines: the first len(vec) dims of the query row (a presence dimension after them)
  const std::vector<float> q = {0.6f, 0.8f, -0.15f}, v = {0.8f, 0.6f};
  CHECK(std::fabs(line_cosine(q.data(), 3, v) - 0.96f) < 1e-6);
  CHECK(std::isnan(line_cosine(q.data(), 3, {})));              // no stored vector
  CHECK(std::isnan(line_cosine(q.data(), 1, v)));               // a query row shorter than the line's
  // with no match in the span, the one line that stands out answers (paraphrases inside a video)
  const float w1 = float(CHANCE + 0.04);
  const std::vector<float> weak = {0.05f, w1, 0.1f, float(CHANCE + 0.04 - kLead - 0.005), NAN};
  CHECK(!snap_to_lines(30, 40, L, weak, CHANCE, V0, V1));
  CHECK(is(best_line(L, weak, CHANCE, V0, V1), 4.3, 7.9));
  std::vector<float> flat = weak;
  flat[3] = float(w1 - kLead / 2);
  CHECK(!best_line(L, flat, CHANCE, V0, V1));
  CHECK(!best_line(L, {0.05f, float(CHANCE - 0.01), 0.1f, 0.0f, 0.0f}, CHANCE, V0, V1));
  CHECK(!best_line(L, std::vector<float>(5, NAN), CHANCE, V0, V1));
  CHECK(is(best_line(L, weak, CHANCE, 5.0, 60.0), 5.0, 7.9));
  CHECK(!best_line(L, weak, CHANCE, 8.0, 60.0));
  std::printf("%d failed\n", failures);
  return failures ? 1 : 0;
}
