// The engine over one index folder: the committed snapshot mapped for reading, its ranking and
// its moments, swapped as one by refresh() so a search that started on the old view finishes on
// it; and the native text encoder of the index's model, loaded on first use.
//
// Thread-safe: any number of threads may search one Index while another refreshes it.
#pragma once
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/lexical.h"
#include "engine/moments.h"
#include "engine/query.h"
#include "engine/ranking.h"
#include "engine/results.h"
#include "engine/store.h"
#include "engine/text_encoder.h"

namespace ivcr::engine {

struct OpenOptions {
  std::string model_dir;  // empty: default_model_dir()
  EdgeMode edges = EdgeMode::Lines;
  bool load_encoder = false;
  bool prefault = false;  // fault every row in at open and refresh (a long-running server)
};

struct View {
  std::shared_ptr<const SnapshotData> snap;
  std::unique_ptr<Ranking> ranking;
  std::unique_ptr<Moments> moments;
  std::string text_model;
  std::vector<uint8_t> live;  // ref -> 1 unless removed
  size_t live_count = 0;
  // The lexical channel's search over this snapshot, made when a row first asks for it (the
  // language tables take a second to load): null while the index's lexical table is not current.
  mutable std::mutex lexical_mu;
  mutable bool lexical_made = false;
  mutable std::shared_ptr<LexicalSearch> lexical;
};

class Index {
 public:
  Index(const std::string& path, OpenOptions opts);

  bool refresh();
  std::shared_ptr<const View> view() const;

  // One result set per query row: the top k videos with their moments and evidence.
  std::vector<Results> search(const Queries& q, int64_t k, const SearchOptions& opts);
  // Query rows for texts from the native encoder (Unsupported where the model has none).
  Queries encode(const std::vector<std::string>& texts);
  // The best moments inside each of `videos` for row 0 of q; hits in video order.
  Results moments(const Queries& q, const std::vector<int64_t>& videos, const SearchOptions& opts);
  // Every line overlapping [start, end] of a video (matched against q's row when given) and the
  // concepts of its clips, as one hit.
  Results evidence(const Queries* q, int64_t video, double start, double end, const SearchOptions& opts);
  std::vector<float> moment_vector(int64_t video, double start, double end, const std::string& channel);

 private:
  std::shared_ptr<const View> make_view(std::shared_ptr<const SnapshotData> snap);
  void check(const View& v, const Queries& q) const;
  std::map<std::string, float> weights(const Queries& q, const SearchOptions& opts) const;
  void check_ref(const View& v, int64_t ref) const;
  // `q` with every row that gives its text for the lexical channel given its matches (in
  // `storage`), or `q` itself when none does.
  const Queries& with_lexical(const View& v, const Queries& q, Queries& storage);

  OpenOptions opts_;
  std::unique_ptr<Store> store_;
  mutable std::mutex view_mu_, refresh_mu_, encoder_mu_;
  std::shared_ptr<const View> view_;
  std::shared_ptr<TextEncoder> encoder_;
  std::string encoder_model_;
};

}  // namespace ivcr::engine
