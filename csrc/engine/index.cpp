#include "engine/index.h"

#include <chrono>
#include <cmath>

#include "engine/error.h"
#include "engine/query_shape.h"

namespace ivcr::engine {

Index::Index(const std::string& path, OpenOptions opts) : opts_(std::move(opts)) {
  if (opts_.model_dir.empty()) opts_.model_dir = default_model_dir();
  store_ = std::make_unique<Store>(path);
  view_ = make_view(store_->snapshot(opts_.prefault));
  if (opts_.load_encoder) encode({"warm-up"});
}

std::shared_ptr<const View> Index::make_view(std::shared_ptr<const SnapshotData> snap) {
  auto v = std::make_shared<View>();
  v->snap = snap;
  v->text_model = snap->settings.str("text_model", "text_minilm_l6");
  LineScale scale;
  scale.usable = snap->settings.str("line_text_model") == v->text_model;
  scale.chance = QueryShape(opts_.model_dir, v->text_model, "").chance();  // the card's, as queries use it
  const double clip_seconds = snap->settings.num("clip_seconds", 2.0);
  v->ranking = std::make_unique<Ranking>(snap, store_->root() + "/vectors", opts_.prefault);
  v->moments = std::make_unique<Moments>(snap, store_.get(), clip_seconds, opts_.edges, scale);
  for (const Video& video : snap->videos) {
    v->live.push_back(!video.removed);
    v->live_count += !video.removed;
  }
  return v;
}

std::shared_ptr<const View> Index::view() const {
  std::lock_guard<std::mutex> lock(view_mu_);
  return view_;
}

bool Index::refresh() {
  std::lock_guard<std::mutex> one(refresh_mu_);
  auto old = view();
  if (store_->data_version() == old->snap->data_version) return false;
  auto snap = store_->snapshot(opts_.prefault);
  if (snap->key == old->snap->key) return false;
  auto fresh = make_view(snap);
  std::lock_guard<std::mutex> lock(view_mu_);
  view_ = fresh;
  return true;
}

void Index::check_ref(const View& v, int64_t ref) const {
  if (ref < 0 || size_t(ref) >= v.snap->videos.size())
    fail(Status::InvalidArgument, "video ref " + std::to_string(ref) + " is out of range (the index has " +
                                      std::to_string(v.snap->videos.size()) + " videos)");
}

void Index::check(const View& v, const Queries& q) const {
  if (q.batch == 0) fail(Status::InvalidArgument, "no query rows given");
  if (q.rows.empty() && !q.has_lexical())
    fail(Status::InvalidArgument, "the queries set no channel (ivcr_queries_set_channel)");
  for (const auto& [c, rows] : q.rows) {
    auto it = v.snap->channels.find(c);
    if (it == v.snap->channels.end()) {
      std::string have;
      for (const auto& [name, _] : v.snap->channels) have += (have.empty() ? "" : ", ") + name;
      fail(Status::InvalidArgument, "no channel '" + c + "' in this index; it has " + have);
    }
    if (q.dims.at(c) != size_t(it->second.dim))
      fail(Status::InvalidArgument, "channel '" + c + "' has " + std::to_string(it->second.dim) +
                                        "-d rows; the query's are " + std::to_string(q.dims.at(c)) + "-d");
    for (float x : rows)
      if (!std::isfinite(x)) fail(Status::InvalidArgument, "query rows of '" + c + "' hold a NaN or infinity");
  }
}

const Queries& Index::with_lexical(const View& v, const Queries& q, Queries& storage) {
  bool any = false;
  for (const auto& l : q.lexical) any = any || l.from_text;
  if (!any) return q;
  std::shared_ptr<LexicalSearch> search;
  {
    std::lock_guard<std::mutex> lock(v.lexical_mu);
    if (!v.lexical_made) {
      auto lexicon = Lexicon::load(opts_.model_dir);  // Unsupported where `ivcr models prepare` has not made them
      if (store_->lexical_ready(lexicon->version())) {
        std::unordered_map<int64_t, int64_t> ref_of;
        for (size_t r = 0; r < v.snap->videos.size(); ++r) ref_of[v.snap->videos[r].id] = int64_t(r);
        v.lexical = std::make_shared<LexicalSearch>(store_.get(), lexicon, std::move(ref_of));
      }
      v.lexical_made = true;
    }
    search = v.lexical;
  }
  storage = q;
  for (auto& l : storage.lexical) {
    if (!l.from_text) continue;
    // a table that is not current (an index made before it, read-only) finds nothing, as in Python
    LexicalMatches found = search ? search->matches(l.text) : LexicalMatches{};
    found.set = true;
    l = std::move(found);
  }
  return storage;
}

std::map<std::string, float> Index::weights(const Queries& q, const SearchOptions& opts) const {
  std::map<std::string, float> w;
  for (const auto& [c, _] : q.rows) w[c] = opts.weight(c);
  if (q.has_lexical()) w[kLexical] = opts.weight(kLexical);
  return w;
}

std::vector<Results> Index::search(const Queries& query, int64_t k, const SearchOptions& opts) {
  if (k < 1) fail(Status::InvalidArgument, "k must be >= 1, got " + std::to_string(k));
  if (opts.per_video < 0) fail(Status::InvalidArgument, "moments per video must be >= 0");
  auto v = view();
  check(*v, query);
  Queries storage;
  const auto t_words = std::chrono::steady_clock::now();
  const Queries& q = with_lexical(*v, query, storage);
  // (Looked up beside a staged ranking's first stage, on a thread of its own, the words made the
  // turn slower here: the 2 cores the scan reads memory with were shared, its 4.2 ms became 5.3.)
  const double words_ms = &q == &query ? 0.0  // no word to look up: the query itself came back
                                        : std::chrono::duration<double, std::milli>(
                                              std::chrono::steady_clock::now() - t_words).count();
  std::vector<Results> out(q.batch);
  for (auto& r : out) r.snapshot = v->snap;
  if (v->live_count == 0) return out;
  k = std::min<int64_t>(k, int64_t(v->snap->videos.size()));  // k beyond the index is the whole index
  std::vector<uint8_t> eligible = v->live;  // a copy of the live mask (100k videos: ~10 us)
  if (opts.has_allow) {
    std::vector<uint8_t> allow(eligible.size(), 0);
    for (int64_t r : opts.allow) {
      check_ref(*v, r);
      allow[size_t(r)] = 1;
    }
    for (size_t i = 0; i < eligible.size(); ++i) eligible[i] &= allow[i];
  }
  if (opts.has_deny)
    for (int64_t r : opts.deny) {
      check_ref(*v, r);
      eligible[size_t(r)] = 0;
    }
  if (!opts.eligible.empty()) {  // branch-free, so it vectorises (a per-byte test cost 0.2 ms at 100k videos)
    const size_t m = std::min(eligible.size(), opts.eligible.size());
    for (size_t i = 0; i < m; ++i) eligible[i] &= uint8_t(opts.eligible[i] != 0);
    std::fill(eligible.begin() + long(m), eligible.end(), uint8_t(0));
  }
  const int64_t* candidates = nullptr;
  if (!opts.candidates.empty()) {
    if (opts.candidate_rows != q.batch)
      fail(Status::InvalidArgument, "candidates have " + std::to_string(opts.candidate_rows) + " rows for " +
                                        std::to_string(q.batch) + " queries");
    for (int64_t r : opts.candidates)
      if (r != -1) check_ref(*v, r);
    candidates = opts.candidates.data();
  }
  const auto w = weights(q, opts);
  std::vector<int64_t> ids(q.batch * size_t(k));
  std::vector<float> scores(q.batch * size_t(k));
  std::vector<const char*> how;
  StageTimes times;
  v->ranking->rank(q, w, k, eligible, candidates, opts.candidate_width, opts.stage, ids.data(), scores.data(), how,
                   times);
  times.words = words_ms;
  for (size_t b = 0; b < q.batch; ++b) {
    out[b].stage = how[b];
    out[b].times = times;
  }
  for (size_t b = 0; b < q.batch; ++b) {
    std::vector<int64_t> refs;
    std::vector<float> s;
    for (int64_t j = 0; j < k; ++j)
      if (ids[b * size_t(k) + size_t(j)] >= 0) {
        refs.push_back(ids[b * size_t(k) + size_t(j)]);
        s.push_back(scores[b * size_t(k) + size_t(j)]);
      }
    if (opts.per_video == 0) {
      for (size_t i = 0; i < refs.size(); ++i) {
        Hit h;
        h.ref = refs[i];
        h.score = s[i];
        h.end = v->snap->videos[size_t(refs[i])].duration;
        out[b].hits.push_back(std::move(h));
      }
      continue;
    }
    const Queries row = q.batch == 1 ? q : q.pick(b);
    auto found = v->moments->find(row, w, refs, -INFINITY, INFINITY, opts.per_video, opts.evidence);
    for (size_t i = 0; i < refs.size(); ++i)
      for (Hit& h : found[i]) {
        h.score = s[i];
        out[b].hits.push_back(std::move(h));
      }
  }
  return out;
}

Results Index::moments(const Queries& query, const std::vector<int64_t>& videos, const SearchOptions& opts) {
  auto v = view();
  check(*v, query);
  Queries storage;
  const Queries& q = with_lexical(*v, query, storage);
  if (q.batch != 1) fail(Status::InvalidArgument, "moments take one query row (batch 1)");
  if (opts.per_video < 1) fail(Status::InvalidArgument, "moments per video must be >= 1");
  if (!(opts.window_lo <= opts.window_hi)) fail(Status::InvalidArgument, "the window's start is after its end");
  for (int64_t r : videos) check_ref(*v, r);
  Results out;
  out.snapshot = v->snap;
  auto found = v->moments->find(q, weights(q, opts), videos, opts.window_lo, opts.window_hi, opts.per_video,
                                opts.evidence);
  for (auto& hits : found)
    for (Hit& h : hits) out.hits.push_back(std::move(h));
  return out;
}

Results Index::evidence(const Queries* query, int64_t video, double start, double end, const SearchOptions& opts) {
  auto v = view();
  Queries storage;
  const Queries* q = query;
  if (query) {
    check(*v, *query);
    if (query->batch != 1) fail(Status::InvalidArgument, "evidence takes one query row (batch 1)");
    q = &with_lexical(*v, *query, storage);
  }
  check_ref(*v, video);
  if (!(start <= end)) fail(Status::InvalidArgument, "evidence needs start <= end");
  Results out;
  out.snapshot = v->snap;
  out.hits.push_back(v->moments->evidence(q, q ? weights(*q, opts) : std::map<std::string, float>{}, video, start, end));
  return out;
}

std::vector<float> Index::moment_vector(int64_t video, double start, double end, const std::string& channel) {
  auto v = view();
  check_ref(*v, video);
  auto it = v->snap->channels.find(channel);
  if (it == v->snap->channels.end()) fail(Status::InvalidArgument, "no channel '" + channel + "' in this index");
  const std::vector<int64_t> rows = v->moments->clip_rows(video, start, end, true);
  if (rows.empty())
    fail(Status::InvalidArgument, "video " + std::to_string(video) + " has no clip between " + std::to_string(start) +
                                      "s and " + std::to_string(end) + "s");
  const ChannelRows& ch = it->second;
  std::vector<float> mean(size_t(ch.dim), 0.0f);
  for (int64_t r : rows)
    for (int j = 0; j < ch.dim; ++j) mean[size_t(j)] += ch.at(r, j);
  float n = 0.0f;
  for (float& x : mean) {
    x /= float(rows.size());
    n += x * x;
  }
  n = std::max(std::sqrt(n), 1e-12f);
  for (float& x : mean) x /= n;
  return mean;
}

Queries Index::encode(const std::vector<std::string>& texts) {
  if (texts.empty()) fail(Status::InvalidArgument, "no queries given");
  for (const std::string& t : texts)
    if (t.find_first_not_of(" \t\r\n") == std::string::npos) fail(Status::InvalidArgument, "the query is empty");
  auto v = view();
  if (v->snap->channels.count("clip"))
    fail(Status::Unsupported, "this index has a CLIP channel and the engine has no native CLIP text encoder; "
                              "use ivcr_search_vectors with the CLIP text rows");
  std::shared_ptr<TextEncoder> enc;
  {
    std::lock_guard<std::mutex> lock(encoder_mu_);
    if (!encoder_ || encoder_model_ != v->text_model) {
      encoder_ = std::make_shared<TextEncoder>(opts_.model_dir, v->snap->settings);
      encoder_model_ = v->text_model;
    }
    enc = encoder_;
  }
  std::vector<std::string> channels;
  for (const auto& [c, _] : v->snap->channels) channels.push_back(c);
  Queries q = enc->rows(texts, channels);
  for (size_t b = 0; b < texts.size(); ++b) {  // the lexical channel: found from the text at search time
    q.lexical[b].from_text = true;
    q.lexical[b].text = texts[b];
  }
  return q;
}

Queries Queries::pick(size_t b) const {
  Queries one(1);
  for (const auto& [c, r] : rows) {
    const size_t d = dims.at(c);
    one.rows[c].assign(r.begin() + long(b * d), r.begin() + long((b + 1) * d));
    one.dims[c] = d;
  }
  one.lexical[0] = lexical.at(b);
  return one;
}

}  // namespace ivcr::engine
