// Video ranking over one snapshot: B query rows -> each row's top k eligible videos by their best
// clip's fused score (index/ranking.py's exact path, the one implementation now), with the
// lexical channel's candidates scored exactly and their coverage added.
//
// From StageParams::min_rows clips on the ranking is staged, as FAISS's IndexRefine is: the first
// stage (first_stage.h) gives each row a shortlist over compact copies, which the exact stage
// re-ranks (a host may hand its own shortlists instead); without copies, every row is scanned.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/first_stage.h"
#include "engine/query.h"
#include "engine/results.h"
#include "engine/store.h"
#include "search/cpu/corpus.h"

namespace ivcr::engine {

constexpr size_t kLexicalJoin = 16;  // ranking.LEXICAL_JOIN: lexical candidates a row's exact stage takes
// How far a clip's score on the folded float16 rows may be from its exact score, per unit of
// |q| norms[r] (index/folded_rows.py): float16's rounding of the folded row (2^-11 of each value)
// and the float32 sums of both scores (under 2^-13 each up to 2,000 dims) stay under 2^-10; values
// below float16's normal range are rounded by 2^-25 at most, under kFoldedSubnormal per unit of sum |q|.
constexpr double kFoldedBound = 1.0 / 1024;
constexpr double kFoldedSubnormal = 1.0 / (1 << 24);

class Ranking {
 public:
  // `folder`: the index's vectors folder (where the first-stage copies live).
  Ranking(std::shared_ptr<const SnapshotData> snap, const std::string& folder, bool prefault);
  // ids (B x k, padded -1) and scores (B x k, padded -inf); `eligible` has one flag per ref.
  // `candidates` (B x width, -1 padded; null: none): each row's exact stage ranks only these.
  // `how` receives each row's path: "exact" (every eligible row scanned), "candidates" (the
  // host's), or the first stage's ("lists", "coarse", "copies"); `times`, where the call's time went.
  void rank(const Queries& q, const std::map<std::string, float>& weights, int64_t k,
            const std::vector<uint8_t>& eligible, const int64_t* candidates, size_t width, const StageParams& p,
            int64_t* ids, float* scores, std::vector<const char*>& how, StageTimes& times) const;
  // FirstStage::locked_bytes of this snapshot's first stages.
  void locked_bytes(size_t& locked, size_t& unlocked) const { first_->locked_bytes(locked, unlocked); }

 private:
  search::QueryBatch batch(const Queries& q, const std::map<std::string, float>& weights,
                           std::vector<std::vector<float>>& zeros) const;
  // The shortlists (B x width, -1 padded) cut to the videos that can still be in each row's exact
  // top k_out after a pre-rank on the folded rows; `width` becomes the new one.
  std::vector<int64_t> within_reach(const Prerank& pre, const std::vector<int64_t>& keep, size_t& width,
                                    int64_t k_out) const;

  std::shared_ptr<const SnapshotData> snap_;
  std::vector<int64_t> offsets_;
  std::vector<std::string> names_;  // the corpus's channels, in order
  std::unique_ptr<search::CpuCorpus> corpus_;
  std::unique_ptr<FirstStage> first_;
};

}  // namespace ivcr::engine
