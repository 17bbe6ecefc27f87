// What a search hands back: hits (a video, its score, one moment) with their evidence. Strings
// point into the snapshot's records or the evidence held here, so a result set keeps its
// snapshot alive and stays valid until it is freed.
#pragma once
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/store.h"

namespace ivcr::engine {

struct EvidenceLine {
  std::string source, text;
  double start = 0.0, end = 0.0;
  float match = NAN;
};

struct Evidence {
  std::vector<EvidenceLine> lines;
  std::vector<std::string> concepts;            // up to three clips' top concepts
  std::map<std::string, float> channel_scores;  // best clip score per channel under the moment
};

struct Hit {
  int64_t ref = -1;
  float score = NAN;         // the video's fused ranking score
  double start = 0.0, end = 0.0;
  float moment_score = NAN;  // the span scorer's score (NaN: no moment, the whole video)
  Evidence evidence;
};

// Where a search call's time went, ms (every row of a batch shares its call's): the query's words
// looked up (Index::search, before the ranking: SQLite reads), then Ranking::rank's first stage,
// pre-rank on the folded rows, exact stage and lexical join.
struct StageTimes {
  double words = 0, first = 0, prerank = 0, exact = 0, lexical = 0;
};

struct Results {
  std::shared_ptr<const SnapshotData> snapshot;
  std::vector<Hit> hits;
  const char* stage = "exact";  // how the ranking found these videos (Ranking::rank's `how`)
  StageTimes times;
};

}  // namespace ivcr::engine
