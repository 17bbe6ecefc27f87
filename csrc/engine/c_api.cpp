// The C ABI (include/ivcr.h) over the engine: every entry point catches everything, so no C++
// exception crosses into C; a failure sets the calling thread's last error and returns its code.
#include "ivcr.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <string>

#include "engine/error.h"
#include "engine/index.h"
#include "engine/utf8.h"
#include "engine/query_shape.h"
#include "engine/text_encoder.h"

using namespace ivcr::engine;

struct ivcr_index {
  std::unique_ptr<Index> index;
  std::string text_model;  // what ivcr_index_text_model hands out (as opened)
};
struct ivcr_open_options {
  OpenOptions opts;
  int abi = IVCR_ABI_VERSION;
};
struct ivcr_search_options {
  SearchOptions opts;
};
struct ivcr_queries {
  Queries q;
};
struct ivcr_results {
  Results r;
};
struct ivcr_query_shape {
  QueryShape shape;
};

struct ivcr_text_encoder {
  std::unique_ptr<TextEncoder> encoder;
};

namespace {

thread_local std::string last_error;

ivcr_status set_error(ivcr_status s, const std::string& msg) {
  last_error = msg;
  return s;
}

template <class F>
ivcr_status guard(F&& f) {
  try {
    last_error.clear();
    f();
    return IVCR_OK;
  } catch (const Error& e) {
    return set_error(static_cast<ivcr_status>(e.status), e.what());
  } catch (const std::bad_alloc&) {
    return set_error(IVCR_OUT_OF_MEMORY, "out of memory");
  } catch (const std::exception& e) {
    return set_error(IVCR_INTERNAL, std::string("internal error: ") + e.what());
  } catch (...) {
    return set_error(IVCR_INTERNAL, "internal error: unknown exception");
  }
}

void need(const void* p, const char* what) {
  if (!p) fail(Status::InvalidArgument, std::string(what) + " is NULL");
}

std::string text(const char* s, const char* what) {
  need(s, what);
  return s;
}

std::vector<std::string> texts(const char* const* queries, size_t n) {
  need(queries, "queries");
  std::vector<std::string> out;
  for (size_t i = 0; i < n; ++i) out.push_back(text(queries[i], "a query"));
  return out;
}

const SearchOptions& options_of(const ivcr_search_options* opts) {
  static const SearchOptions defaults;
  return opts ? opts->opts : defaults;
}

// Results of a batch into out[0..n): all or nothing.
void hand_out(std::vector<Results>&& all, ivcr_results** out) {
  std::vector<ivcr_results*> made;
  try {
    for (Results& r : all) made.push_back(new ivcr_results{std::move(r)});
  } catch (...) {
    for (ivcr_results* r : made) delete r;
    throw;
  }
  for (size_t i = 0; i < made.size(); ++i) out[i] = made[i];
}

const Hit& hit_of(const ivcr_results* results, size_t i) {
  need(results, "results");
  if (i >= results->r.hits.size())
    fail(Status::InvalidArgument, "hit " + std::to_string(i) + " is out of range (" +
                                      std::to_string(results->r.hits.size()) + " hits)");
  return results->r.hits[i];
}

}  // namespace

extern "C" {

int ivcr_abi_version(void) { return IVCR_ABI_VERSION; }
const char* ivcr_last_error(void) { return last_error.c_str(); }

const char* ivcr_status_name(ivcr_status s) {
  switch (s) {
    case IVCR_OK: return "IVCR_OK";
    case IVCR_INVALID_ARGUMENT: return "IVCR_INVALID_ARGUMENT";
    case IVCR_NOT_FOUND: return "IVCR_NOT_FOUND";
    case IVCR_INDEX_DAMAGED: return "IVCR_INDEX_DAMAGED";
    case IVCR_OUT_OF_MEMORY: return "IVCR_OUT_OF_MEMORY";
    case IVCR_UNSUPPORTED: return "IVCR_UNSUPPORTED";
    case IVCR_INTERNAL: return "IVCR_INTERNAL";
  }
  return "IVCR_UNKNOWN_STATUS";
}

ivcr_status ivcr_open_options_new(ivcr_open_options** out) {
  return guard([&] {
    need(out, "out");
    *out = new ivcr_open_options();
  });
}
void ivcr_open_options_free(ivcr_open_options* opts) { delete opts; }

ivcr_status ivcr_open_options_set_abi_version(ivcr_open_options* opts, int version) {
  return guard([&] {
    need(opts, "opts");
    opts->abi = version;
  });
}
ivcr_status ivcr_open_options_set_model_dir(ivcr_open_options* opts, const char* dir) {
  return guard([&] {
    need(opts, "opts");
    opts->opts.model_dir = text(dir, "dir");
  });
}
ivcr_status ivcr_open_options_set_moment_edges(ivcr_open_options* opts, const char* edges) {
  return guard([&] {
    need(opts, "opts");
    const std::string e = text(edges, "edges");
    if (e == "lines") opts->opts.edges = EdgeMode::Lines;
    else if (e == "snap") opts->opts.edges = EdgeMode::Snap;
    else if (e == "grid") opts->opts.edges = EdgeMode::Grid;
    else fail(Status::InvalidArgument, "moment edges must be lines, snap or grid, got '" + e + "'");
  });
}
ivcr_status ivcr_open_options_set_load_encoder(ivcr_open_options* opts, int load) {
  return guard([&] {
    need(opts, "opts");
    opts->opts.load_encoder = load != 0;
  });
}

ivcr_status ivcr_open_options_set_prefault(ivcr_open_options* opts, int prefault) {
  return guard([&] {
    need(opts, "opts");
    opts->opts.prefault = prefault != 0;
  });
}

ivcr_status ivcr_index_open(const char* path, const ivcr_open_options* opts, ivcr_index** out) {
  return guard([&] {
    need(out, "out");
    *out = nullptr;
    const std::string p = text(path, "path");
    if (opts && opts->abi != IVCR_ABI_VERSION)
      fail(Status::Unsupported, "the caller was built for ABI " + std::to_string(opts->abi) + "; this libivcr is ABI " +
                                    std::to_string(IVCR_ABI_VERSION));
    auto made = std::make_unique<ivcr_index>();
    made->index = std::make_unique<Index>(p, opts ? opts->opts : OpenOptions{});
    made->text_model = made->index->view()->text_model;
    *out = made.release();
  });
}
void ivcr_index_close(ivcr_index* index) { delete index; }

ivcr_status ivcr_index_refresh(ivcr_index* index, int* changed) {
  return guard([&] {
    need(index, "index");
    const bool c = index->index->refresh();
    if (changed) *changed = c;
  });
}

size_t ivcr_index_video_count(const ivcr_index* index) {
  return index ? index->index->view()->snap->videos.size() : 0;
}
size_t ivcr_index_live_count(const ivcr_index* index) { return index ? index->index->view()->live_count : 0; }
int ivcr_index_channel_dim(const ivcr_index* index, const char* channel) {
  if (!index || !channel) return 0;
  auto v = index->index->view();
  auto it = v->snap->channels.find(channel);
  return it == v->snap->channels.end() ? 0 : it->second.dim;
}
size_t ivcr_index_line_reads(const ivcr_index* index) {
  return index ? index->index->view()->moments->line_reads() : 0;
}
const char* ivcr_index_text_model(const ivcr_index* index) { return index ? index->text_model.c_str() : ""; }
ivcr_status ivcr_index_locked_bytes(const ivcr_index* index, size_t* locked, size_t* unlocked) {
  return guard([&] {
    need(index, "index");
    need(locked, "locked");
    need(unlocked, "unlocked");
    *locked = *unlocked = 0;
    index->index->view()->ranking->locked_bytes(*locked, *unlocked);
  });
}

ivcr_status ivcr_queries_new(size_t batch, ivcr_queries** out) {
  return guard([&] {
    need(out, "out");
    if (batch == 0) fail(Status::InvalidArgument, "batch must be >= 1");
    *out = new ivcr_queries{Queries(batch)};
  });
}
void ivcr_queries_free(ivcr_queries* queries) { delete queries; }

ivcr_status ivcr_queries_set_channel(ivcr_queries* queries, const char* channel, const float* rows, size_t dim) {
  return guard([&] {
    need(queries, "queries");
    const std::string c = text(channel, "channel");
    need(rows, "rows");
    if (dim == 0) fail(Status::InvalidArgument, "dim must be >= 1");
    if (c == kLexical) fail(Status::InvalidArgument, "the lexical channel has no rows: use ivcr_queries_set_lexical");
    Queries& q = queries->q;
    q.rows[c].assign(rows, rows + q.batch * dim);
    q.dims[c] = dim;
  });
}

ivcr_status ivcr_queries_set_lexical(ivcr_queries* queries, size_t row, const int64_t* video_refs,
                                     const float* video_coverage, size_t n_videos, const int64_t* line_rowids,
                                     const float* line_coverage, size_t n_lines) {
  return guard([&] {
    need(queries, "queries");
    if (row >= queries->q.batch) fail(Status::InvalidArgument, "row " + std::to_string(row) + " is out of range");
    if (n_videos) {
      need(video_refs, "video_refs");
      need(video_coverage, "video_coverage");
    }
    if (n_lines) {
      need(line_rowids, "line_rowids");
      need(line_coverage, "line_coverage");
    }
    LexicalMatches m;
    m.set = true;
    for (size_t i = 0; i < n_videos; ++i) {
      if (!(video_coverage[i] >= 0.0f && video_coverage[i] <= 1.0f))
        fail(Status::InvalidArgument, "a coverage lies in [0, 1]");
      m.videos.emplace_back(video_refs[i], video_coverage[i]);
    }
    for (size_t i = 0; i < n_lines; ++i) {
      if (!(line_coverage[i] >= 0.0f && line_coverage[i] <= 1.0f))
        fail(Status::InvalidArgument, "a coverage lies in [0, 1]");
      m.lines[line_rowids[i]] = line_coverage[i];
    }
    queries->q.lexical[row] = std::move(m);
  });
}

ivcr_status ivcr_queries_set_lexical_text(ivcr_queries* queries, size_t row, const char* text) {
  return guard([&] {
    need(queries, "queries");
    need(text, "text");
    if (row >= queries->q.batch) fail(Status::InvalidArgument, "row " + std::to_string(row) + " is out of range");
    utf8_decode(text);  // malformed UTF-8 is refused here, not at search time
    LexicalMatches m;
    m.from_text = true;
    m.text = text;
    queries->q.lexical[row] = std::move(m);
  });
}

ivcr_status ivcr_encode_queries(ivcr_index* index, const char* const* queries, size_t n, ivcr_queries** out) {
  return guard([&] {
    need(index, "index");
    need(out, "out");
    *out = new ivcr_queries{index->index->encode(texts(queries, n))};
  });
}

ivcr_status ivcr_query_shape_open(const char* model_dir, const char* text_model, const char* frame_model,
                                  ivcr_query_shape** out) {
  return guard([&] {
    need(out, "out");
    const std::string dir = model_dir ? model_dir : default_model_dir();
    *out = new ivcr_query_shape{QueryShape(dir, text(text_model, "text_model"), frame_model ? frame_model : "")};
  });
}
void ivcr_query_shape_free(ivcr_query_shape* shape) { delete shape; }
float ivcr_query_shape_chance(const ivcr_query_shape* shape) { return shape ? shape->shape.chance() : NAN; }

ivcr_status ivcr_text_encoder_open(const char* model_dir, const char* text_model, ivcr_text_encoder** out) {
  return guard([&] {
    need(out, "out");
    const std::string dir = model_dir ? model_dir : default_model_dir();
    Json settings, model;  // the settings an index of that model has, as far as the encoder reads them
    settings.kind = Json::Kind::Object;
    model.kind = Json::Kind::String;
    model.string = text(text_model, "text_model");
    settings.object["text_model"] = model;
    *out = new ivcr_text_encoder{std::make_unique<TextEncoder>(dir, settings)};
  });
}
void ivcr_text_encoder_free(ivcr_text_encoder* encoder) { delete encoder; }
size_t ivcr_text_encoder_dim(const ivcr_text_encoder* encoder) { return encoder ? encoder->encoder->dim() : 0; }

ivcr_status ivcr_text_encoder_encode(ivcr_text_encoder* encoder, const char* const* queries, size_t n, float* out,
                                     size_t out_len) {
  return guard([&] {
    need(encoder, "encoder");
    const std::vector<std::string> t = texts(queries, n);
    const size_t dim = encoder->encoder->dim();
    if (n && !out) fail(Status::InvalidArgument, "out is NULL");
    if (out_len < n * dim)
      fail(Status::InvalidArgument, "out holds " + std::to_string(out_len) + " floats; " + std::to_string(n) +
                                        " texts need " + std::to_string(n * dim));
    const std::vector<float> unit = encoder->encoder->unit(t);
    std::copy(unit.begin(), unit.end(), out);
  });
}

ivcr_status ivcr_query_shape_rows(const ivcr_query_shape* shape, const float* unit, size_t n, size_t dim,
                                  const char* const* channels, size_t n_channels, ivcr_queries** out) {
  return guard([&] {
    need(shape, "shape");
    need(out, "out");
    if (n == 0 || dim == 0) fail(Status::InvalidArgument, "no query vectors given");
    need(unit, "unit");
    if (n_channels) need(channels, "channels");
    std::vector<std::string> names;
    for (size_t i = 0; i < n_channels; ++i) names.push_back(text(channels[i], "a channel"));
    *out = new ivcr_queries{shape->shape.rows(unit, n, dim, names)};
  });
}

ivcr_status ivcr_queries_channel(const ivcr_queries* queries, const char* channel, const float** rows, size_t* dim) {
  return guard([&] {
    need(queries, "queries");
    need(rows, "rows");
    need(dim, "dim");
    const std::string c = text(channel, "channel");
    auto it = queries->q.rows.find(c);
    if (it == queries->q.rows.end()) fail(Status::NotFound, "the queries have no channel '" + c + "'");
    *rows = it->second.data();
    *dim = queries->q.dims.at(c);
  });
}

ivcr_status ivcr_search_options_new(ivcr_search_options** out) {
  return guard([&] {
    need(out, "out");
    *out = new ivcr_search_options();
  });
}
void ivcr_search_options_free(ivcr_search_options* opts) { delete opts; }

ivcr_status ivcr_search_options_set_weight(ivcr_search_options* opts, const char* channel, float weight) {
  return guard([&] {
    need(opts, "opts");
    if (!std::isfinite(weight)) fail(Status::InvalidArgument, "a weight must be finite");
    opts->opts.weights[text(channel, "channel")] = weight;
  });
}
ivcr_status ivcr_search_options_set_allow(ivcr_search_options* opts, const int64_t* refs, size_t n) {
  return guard([&] {
    need(opts, "opts");
    if (n) need(refs, "refs");
    opts->opts.has_allow = true;
    opts->opts.allow.assign(refs, refs + n);
  });
}
ivcr_status ivcr_search_options_set_deny(ivcr_search_options* opts, const int64_t* refs, size_t n) {
  return guard([&] {
    need(opts, "opts");
    if (n) need(refs, "refs");
    opts->opts.has_deny = true;
    opts->opts.deny.assign(refs, refs + n);
  });
}
ivcr_status ivcr_search_options_set_candidates(ivcr_search_options* opts, const int64_t* refs, size_t rows,
                                              size_t width) {
  return guard([&] {
    need(opts, "opts");
    if (rows != 0 && width != 0) need(refs, "refs");
    opts->opts.candidates.assign(refs, refs + rows * width);
    opts->opts.candidate_rows = rows;
    opts->opts.candidate_width = width;
    if (rows * width == 0) opts->opts.candidates.clear();
  });
}
ivcr_status ivcr_search_options_set_first_stage(ivcr_search_options* opts, int64_t min_rows, int64_t shortlist,
                                               int64_t coarse_shortlist, double lists_min_eligible,
                                               int64_t clips_per_video) {
  return guard([&] {
    need(opts, "opts");
    if (min_rows < 1 || shortlist < 1 || coarse_shortlist < 1 || clips_per_video < 1 || !(lists_min_eligible >= 0.0))
      fail(Status::InvalidArgument, "the first stage's sizes must be positive");
    opts->opts.stage = StageParams{min_rows, shortlist, coarse_shortlist, lists_min_eligible, clips_per_video};
  });
}
ivcr_status ivcr_search_options_set_eligible(ivcr_search_options* opts, const uint8_t* mask, size_t n) {
  return guard([&] {
    need(opts, "opts");
    if (n) need(mask, "mask");
    opts->opts.eligible.assign(mask, mask + n);
    if (n == 0) opts->opts.eligible.assign(1, 0);  // nothing eligible
  });
}
ivcr_status ivcr_search_options_set_moments(ivcr_search_options* opts, int per_video) {
  return guard([&] {
    need(opts, "opts");
    if (per_video < 0) fail(Status::InvalidArgument, "moments per video must be >= 0");
    opts->opts.per_video = per_video;
  });
}
ivcr_status ivcr_search_options_set_evidence(ivcr_search_options* opts, int evidence) {
  return guard([&] {
    need(opts, "opts");
    opts->opts.evidence = evidence != 0;
  });
}
ivcr_status ivcr_search_options_set_window(ivcr_search_options* opts, double start, double end) {
  return guard([&] {
    need(opts, "opts");
    if (std::isnan(start) || std::isnan(end) || start > end)
      fail(Status::InvalidArgument, "a window needs start <= end");
    opts->opts.window_lo = start;
    opts->opts.window_hi = end;
  });
}

ivcr_status ivcr_search(ivcr_index* index, const char* query, int k, const ivcr_search_options* opts,
                        ivcr_results** out) {
  return ivcr_search_batch(index, &query, 1, k, opts, out);
}

ivcr_status ivcr_search_batch(ivcr_index* index, const char* const* queries, size_t n, int k,
                              const ivcr_search_options* opts, ivcr_results** out) {
  return guard([&] {
    need(index, "index");
    need(out, "out");
    const Queries q = index->index->encode(texts(queries, n));
    hand_out(index->index->search(q, k, options_of(opts)), out);
  });
}

ivcr_status ivcr_search_vectors(ivcr_index* index, const ivcr_queries* queries, int k,
                                const ivcr_search_options* opts, ivcr_results** out) {
  return guard([&] {
    need(index, "index");
    need(queries, "queries");
    need(out, "out");
    if (queries->q.batch != 1)
      fail(Status::InvalidArgument, "ivcr_search_vectors takes one query row; use ivcr_search_vectors_batch");
    hand_out(index->index->search(queries->q, k, options_of(opts)), out);
  });
}

ivcr_status ivcr_search_vectors_batch(ivcr_index* index, const ivcr_queries* queries, int k,
                                      const ivcr_search_options* opts, ivcr_results** out) {
  return guard([&] {
    need(index, "index");
    need(queries, "queries");
    need(out, "out");
    hand_out(index->index->search(queries->q, k, options_of(opts)), out);
  });
}

ivcr_status ivcr_moments(ivcr_index* index, const ivcr_queries* queries, const int64_t* videos, size_t n,
                         const ivcr_search_options* opts, ivcr_results** out) {
  return guard([&] {
    need(index, "index");
    need(queries, "queries");
    need(out, "out");
    if (n) need(videos, "videos");
    Results r = index->index->moments(queries->q, std::vector<int64_t>(videos, videos + n), options_of(opts));
    *out = new ivcr_results{std::move(r)};
  });
}

ivcr_status ivcr_evidence(ivcr_index* index, const ivcr_queries* queries, int64_t video, double start, double end,
                          const ivcr_search_options* opts, ivcr_results** out) {
  return guard([&] {
    need(index, "index");
    need(out, "out");
    Results r = index->index->evidence(queries ? &queries->q : nullptr, video, start, end, options_of(opts));
    *out = new ivcr_results{std::move(r)};
  });
}

ivcr_status ivcr_moment_vector(ivcr_index* index, int64_t video, double start, double end, const char* channel,
                               float* out, size_t dim) {
  return guard([&] {
    need(index, "index");
    need(out, "out");
    std::vector<float> v = index->index->moment_vector(video, start, end, text(channel, "channel"));
    if (dim != v.size())
      fail(Status::InvalidArgument, "the channel's rows are " + std::to_string(v.size()) + "-d, out holds " +
                                        std::to_string(dim));
    std::memcpy(out, v.data(), v.size() * sizeof(float));
  });
}

size_t ivcr_results_count(const ivcr_results* results) { return results ? results->r.hits.size() : 0; }

ivcr_status ivcr_results_hit(const ivcr_results* results, size_t i, ivcr_hit* out) {
  return guard([&] {
    need(out, "out");
    const Hit& h = hit_of(results, i);
    const Video& v = results->r.snapshot->videos[size_t(h.ref)];
    out->ref = h.ref;
    out->video_id = v.id_text.c_str();
    out->name = v.path.c_str();
    out->start = h.start;
    out->end = h.end;
    out->score = h.score;
    out->moment_score = h.moment_score;
    out->duration = v.duration;
  });
}

size_t ivcr_results_ranking(const ivcr_results* results, int64_t* refs, float* scores, size_t capacity) {
  if (!results || !refs || !scores) return 0;
  const size_t n = std::min(capacity, results->r.hits.size());
  for (size_t i = 0; i < n; ++i) {
    refs[i] = results->r.hits[i].ref;
    scores[i] = results->r.hits[i].score;
  }
  return n;
}

size_t ivcr_results_line_count(const ivcr_results* results, size_t i) {
  return results && i < results->r.hits.size() ? results->r.hits[i].evidence.lines.size() : 0;
}

ivcr_status ivcr_results_line(const ivcr_results* results, size_t i, size_t j, ivcr_line* out) {
  return guard([&] {
    need(out, "out");
    const Hit& h = hit_of(results, i);
    if (j >= h.evidence.lines.size()) fail(Status::InvalidArgument, "line " + std::to_string(j) + " is out of range");
    const EvidenceLine& l = h.evidence.lines[j];
    out->source = l.source.c_str();
    out->start = l.start;
    out->end = l.end;
    out->text = l.text.c_str();
    out->match = l.match;
  });
}

size_t ivcr_results_concept_count(const ivcr_results* results, size_t i) {
  return results && i < results->r.hits.size() ? results->r.hits[i].evidence.concepts.size() : 0;
}
const char* ivcr_results_concept(const ivcr_results* results, size_t i, size_t j) {
  if (!results || i >= results->r.hits.size() || j >= results->r.hits[i].evidence.concepts.size()) return nullptr;
  return results->r.hits[i].evidence.concepts[j].c_str();
}
float ivcr_results_channel_score(const ivcr_results* results, size_t i, const char* channel) {
  if (!results || !channel || i >= results->r.hits.size()) return NAN;
  const auto& s = results->r.hits[i].evidence.channel_scores;
  auto it = s.find(channel);
  return it == s.end() ? NAN : it->second;
}

const char* ivcr_results_stage(const ivcr_results* results) { return results ? results->r.stage : ""; }

ivcr_status ivcr_results_stage_ms(const ivcr_results* results, const char* part, double* ms) {
  return guard([&] {
    need(results, "results");
    need(part, "part");
    need(ms, "ms");
    const StageTimes& t = results->r.times;
    const std::string p = part;
    if (p == "first") *ms = t.first;
    else if (p == "prerank") *ms = t.prerank;
    else if (p == "exact") *ms = t.exact;
    else if (p == "lexical") *ms = t.lexical;
    else if (p == "words") *ms = t.words;
    else
      fail(Status::InvalidArgument,
           "part must be \"first\", \"prerank\", \"exact\", \"lexical\" or \"words\", got \"" + p + "\"");
  });
}

void ivcr_results_free(ivcr_results* results) { delete results; }

}  // extern "C"
