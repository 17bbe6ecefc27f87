// The first stage of a large index's ranking, over the compact copies Python builds beside the
// vectors (index/first_stage.py, inverted_lists.py: the writer of these derived files, as ingest is
// of the index): each query row's shortlist of candidate videos, which the exact stage re-ranks.
//
// A query's text channels fold into one "text" channel when they share its embedding; a stage
// is one copy per remaining channel (first.<tag>.<rows>.{values,scales,basis}.npy), and when it
// is one copy, the inverted lists over it (first.<tag>.lists.<rows>.*) where the build kept them
// and a coarse copy in front of it (first.<tag>.coarse<N>.<rows>.*) where it is wide. A stage
// whose copies are missing is absent: the exact stage then scans every row (still exact).
//
// A folded text stage may also have the folded rows in float16 (first.<tag>.folded.<rows>.
// {values,norms}.npy, index/folded_rows.py): one row a clip where the exact stage reads one per
// text channel. The exact stage pre-ranks a text query's shortlist on them and re-ranks exactly only
// the videos that their rounding bound leaves in reach of the top k (Ranking::rank).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/npy.h"
#include "engine/query.h"
#include "engine/store.h"
#include "search/cpu/corpus.h"

namespace ivcr::engine {

struct Copy {
  Npy values, scales, basis;  // basis.data null: no projection (a plain int8 copy)
  bool int4 = false;
  bool blocked = false;       // int4 rows in blocks of 16 (resident: what a query scans whole)
  int width = 0;              // the copy's dims
  search::Channel channel(int64_t rows) const;
  // B query rows of the channel's dim -> B rows of the copy's width.
  std::vector<float> project(const float* q, size_t batch, size_t dim) const;
};

struct Lists {
  Npy centroids, bounds, order, scales, values;
  int probe = 0;
  std::unique_ptr<search::CpuCorpus> corpus;  // the permuted copy, its "videos" the lists
};

// The folded text rows (values: rows x dim float16) and each row's bound factor (norms: float32,
// sum_c |w_c| |e_c[r]|, so |score on the folded row - exact score| <= kFoldedBound |q| norms[r]).
struct FoldedRows {
  Npy values, norms;
  std::unique_ptr<search::CpuCorpus> corpus;
  size_t locked = 0, unlocked = 0;  // bytes a prefaulted handle locked / could not lock (RLIMIT_MEMLOCK)
};

// What the exact stage pre-ranks a query's shortlist with: the folded rows and the query's row in
// their space (the presence channel's row, B x dim), where the query is the folded text alone.
struct Prerank {
  std::shared_ptr<const FoldedRows> rows;
  const float* query = nullptr;
  size_t dim = 0;
};

struct Stage {
  std::vector<std::string> channels;  // first-stage channels ("text" for the folded ones)
  std::map<std::string, Copy> copies;
  std::unique_ptr<search::CpuCorpus> corpus;
  std::unique_ptr<Copy> coarse;
  std::unique_ptr<search::CpuCorpus> coarse_corpus;
  std::unique_ptr<Lists> lists;
  std::shared_ptr<const FoldedRows> folded;  // null: none written (the exact stage reads every text channel)
};

class FirstStage {
 public:
  // `prefault`: fault a stage's copies in when it is first used (a long-running server).
  FirstStage(std::shared_ptr<const SnapshotData> snap, std::string folder, const int64_t* offsets, bool prefault);
  // Each row's shortlist (B x width, -1 padded) into `out`, or false when the query's stage has no
  // copies (then nothing is written). `dense_weights` covers the query's dense channels.
  // `how` (one per row) says which path gave each row's shortlist: "lists" (its inverted lists),
  // "coarse" (a coarse copy, then the copy), "copies" (a whole scan of the copies).
  // `prerank` receives the stage's folded rows where the query's only dense channels are the
  // folded text ones and the rows were written (else its rows stay null).
  bool shortlists(const Queries& q, const std::map<std::string, float>& dense_weights, int64_t k,
                  const std::vector<uint8_t>& eligible, const StageParams& p, std::vector<int64_t>& out,
                  size_t& width, std::vector<const char*>& how, Prerank& prerank);
  // Bytes of the stages read so far that a prefaulted handle locked in memory, and that it meant
  // to lock but the process's RLIMIT_MEMLOCK refused (faulted in instead).
  void locked_bytes(size_t& locked, size_t& unlocked);

 private:
  static constexpr int kStageRetries = 3;  // generations removed while one stage is read (see stage)
  // The stage of `channels` (with `dims`: each one's query width) under `fold_tag`, from the cache
  // or read; null where a copy is missing.
  std::shared_ptr<Stage> stage(const std::vector<std::string>& channels, const std::string& fold_tag,
                               const std::map<std::string, size_t>& dims);
  std::shared_ptr<Stage> load_stage(const std::vector<std::string>& channels, const std::string& fold_tag,
                                    const std::map<std::string, size_t>& dims, std::vector<std::string>& used) const;
  std::shared_ptr<const SnapshotData> snap_;
  std::string folder_;
  const int64_t* offsets_;
  bool prefault_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Stage>> stages_;  // by channels + fold; null: absent (checked again)
};

}  // namespace ivcr::engine
