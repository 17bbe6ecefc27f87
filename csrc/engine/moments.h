// Moments inside videos with the evidence behind them (index/moments.py's MomentService, the one
// implementation now): one clip scoring and one span-scorer call for all the videos of a query,
// edges snapped to the lines that match it (moment_edges.h), and evidence from the same lines.
// A video's lines are read from SQLite once and kept for the snapshot's life (an LRU of
// kLinesKept videos): a turn asks about the same videos twice, the next turn mostly again.
#pragma once
#include <atomic>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/query.h"
#include "engine/results.h"
#include "engine/store.h"

namespace ivcr::engine {

enum class EdgeMode { Lines, Snap, Grid };

struct LineScale {
  bool usable = false;  // the lines' vectors are in the queries' text model
  float chance = 0.0f;  // that model's chance similarity (lines are scored on the calibrated scale)
};

class Moments {
 public:
  Moments(std::shared_ptr<const SnapshotData> snap, Store* store, double clip_seconds, EdgeMode edges, LineScale scale);

  // Up to `top` moments of each video (refs, checked by the caller) from its clips inside the
  // window, best first, for row 0 of `q`; `weights` covers the query's channels. One list per video.
  std::vector<std::vector<Hit>> find(const Queries& q, const std::map<std::string, float>& weights,
                                     const std::vector<int64_t>& videos, double win_lo, double win_hi, int top,
                                     bool evidence);
  // The evidence of [start, end] in a video: every line overlapping it (matched against row 0 of
  // q when given) and its clips' concepts.
  Hit evidence(const Queries* q, const std::map<std::string, float>& weights, int64_t video, double start, double end);
  // Videos whose lines were read from the store (misses of the kept lines) since this snapshot opened.
  size_t line_reads() const { return line_reads_.load(); }
  // Clip rows of one video overlapping [start, end] (overlap) or lying inside it.
  std::vector<int64_t> clip_rows(int64_t video, double start, double end, bool overlap) const;

 private:
  std::shared_ptr<const std::vector<Line>> lines_of(int64_t video);

  std::shared_ptr<const SnapshotData> snap_;
  Store* store_;
  double clip_seconds_;
  EdgeMode edges_;
  LineScale scale_;
  std::mutex mu_;
  std::atomic<size_t> line_reads_{0};
  std::list<int64_t> order_;  // video ids, most recent first
  std::unordered_map<int64_t, std::pair<std::shared_ptr<const std::vector<Line>>, std::list<int64_t>::iterator>> kept_;
};

}  // namespace ivcr::engine
