// Video ranking over one snapshot: B query rows -> each row's top k eligible videos by their best
// clip's fused score (index/ranking.py's exact path, the one implementation now), with the
// lexical channel's candidates scored exactly and their coverage added.
//
// Not here yet: the staged ranking Python runs from 200k clips on (first-stage copies, coarse
// copies, inverted lists). This engine scans every row exactly at any size, so its answers are
// the exact ones the staged ranking approximates.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/query.h"
#include "engine/store.h"
#include "search/cpu/corpus.h"

namespace ivcr::engine {

constexpr size_t kLexicalJoin = 16;  // ranking.LEXICAL_JOIN: lexical candidates a row's exact stage takes

class Ranking {
 public:
  explicit Ranking(std::shared_ptr<const SnapshotData> snap);
  // ids (B x k, padded -1) and scores (B x k, padded -inf); `eligible` has one flag per ref.
  // `candidates` (B x width, -1 padded; null: none): each row's exact stage ranks only these.
  void rank(const Queries& q, const std::map<std::string, float>& weights, int64_t k,
            const std::vector<uint8_t>& eligible, const int64_t* candidates, size_t width, int64_t* ids,
            float* scores) const;

 private:
  search::QueryBatch batch(const Queries& q, const std::map<std::string, float>& weights,
                           std::vector<std::vector<float>>& zeros) const;

  std::shared_ptr<const SnapshotData> snap_;
  std::vector<int64_t> offsets_;
  std::vector<std::string> names_;  // the corpus's channels, in order
  std::unique_ptr<search::CpuCorpus> corpus_;
};

}  // namespace ivcr::engine
