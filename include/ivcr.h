/* ivcr.h: the C ABI of ivcr_engine's native engine (libivcr).
 *
 * Open an index folder written by `ivcr index`, rank its videos for queries, and get each hit's
 * best moment with the timed lines that support it. The Python package runs on this same engine
 * (ivcr_engine/native.py calls these functions through ctypes).
 *
 * Conventions (after SQLite, llama.cpp's llama.h and ONNX Runtime's status objects):
 *  - Every object is an opaque handle with its own free function; freeing NULL does nothing.
 *  - Every fallible call returns an ivcr_status. On anything but IVCR_OK, ivcr_last_error() gives
 *    a message for the calling thread (thread-local; valid until that thread's next call into
 *    libivcr). No C++ exception ever crosses this boundary.
 *  - Strings in and out are UTF-8 and NUL-terminated. A string handed out is owned by the object
 *    it came from and valid until that object is freed.
 *  - Options are objects with setters; NULL options mean the defaults. No struct is passed by
 *    value, and the ones filled in (ivcr_hit, ivcr_line) only grow at their end: a caller states
 *    the size it was compiled with through IVCR_ABI_VERSION, checked by ivcr_index_open.
 *  - The only global state is the thread pool that searches and the native text encoder run on
 *    (IVCR_NUM_THREADS threads, default one per core; libivcr links no OpenMP runtime) and the
 *    lexical channel's language tables, read-only once loaded: read on the first lexical query of
 *    a model folder (~1-2 s, ~130 MB) and shared by every handle after it until the process ends,
 *    so a handle opened again on each refresh does not read them again.
 *
 * Threading: an ivcr_index may be searched from any number of threads at once. ivcr_index_refresh
 * may run beside those searches: a search that started before it finishes on the snapshot it
 * started with. Options, queries and results objects belong to one thread at a time.
 */
#ifndef IVCR_H
#define IVCR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define IVCR_API __attribute__((visibility("default")))
#else
#define IVCR_API
#endif

/* The ABI this header describes. Bumped on any incompatible change. */
#define IVCR_ABI_VERSION 1

typedef enum ivcr_status {
  IVCR_OK = 0,
  IVCR_INVALID_ARGUMENT = 1, /* a bad argument: NULL, k < 1, an unknown channel, a wrong dimension */
  IVCR_NOT_FOUND = 2,        /* no index at the path, no such video, no model file */
  IVCR_INDEX_DAMAGED = 3,    /* the index's files disagree with its metadata; `ivcr check --repair` */
  IVCR_OUT_OF_MEMORY = 4,
  IVCR_UNSUPPORTED = 5,      /* this build or CPU cannot do it (e.g. no native encoder for the model) */
  IVCR_INTERNAL = 6          /* a bug: please report the message */
} ivcr_status;

typedef struct ivcr_index ivcr_index;
typedef struct ivcr_open_options ivcr_open_options;
typedef struct ivcr_search_options ivcr_search_options;
typedef struct ivcr_queries ivcr_queries;
typedef struct ivcr_results ivcr_results;

/* ---- version and errors ------------------------------------------------------------------ */

/* The ABI version of the loaded library (compare with IVCR_ABI_VERSION). */
IVCR_API int ivcr_abi_version(void);
/* The calling thread's last error message ("" when none). Owned by libivcr. */
IVCR_API const char *ivcr_last_error(void);
/* A status code's name, e.g. "IVCR_NOT_FOUND". Static storage. */
IVCR_API const char *ivcr_status_name(ivcr_status status);

/* ---- opening an index -------------------------------------------------------------------- */

IVCR_API ivcr_status ivcr_open_options_new(ivcr_open_options **out);
IVCR_API void ivcr_open_options_free(ivcr_open_options *opts);
/* The ABI version the caller was compiled against (default IVCR_ABI_VERSION); open refuses a
 * version the library does not implement. */
IVCR_API ivcr_status ivcr_open_options_set_abi_version(ivcr_open_options *opts, int version);
/* Where prepared models live (`ivcr models prepare`); default $IVCR_MODEL_DIR, else
 * $XDG_CACHE_HOME/ivcr_engine/models, else ~/.cache/ivcr_engine/models. */
IVCR_API ivcr_status ivcr_open_options_set_model_dir(ivcr_open_options *opts, const char *dir);
/* Moment edges: "lines" (default: snapped to the timed lines that match the query), "snap"
 * (snapping only) or "grid" (the span scorer's clip edges). */
IVCR_API ivcr_status ivcr_open_options_set_moment_edges(ivcr_open_options *opts, const char *edges);
/* 1: load the native text encoder at open (else on the first ivcr_search). Default 0. */
IVCR_API ivcr_status ivcr_open_options_set_load_encoder(ivcr_open_options *opts, int load);

/* 1: fault every row into memory at open and at each refresh that maps new rows (a long-running
 * server: the exact stage reads rows at random, and a row first touched costs a page fault).
 * Each first stage, when first used, also moves the copies it scans whole into memory of its own
 * (on huge pages where the kernel gives them; an int4 copy in blocks of 16 rows, which its scan
 * reads in order) and locks its folded text rows in memory (mlock) where RLIMIT_MEMLOCK allows,
 * else faults them in. Default 0. */
IVCR_API ivcr_status ivcr_open_options_set_prefault(ivcr_open_options *opts, int prefault);

/* Open the index folder at `path` (the folder holding meta.sqlite). opts may be NULL. */
IVCR_API ivcr_status ivcr_index_open(const char *path, const ivcr_open_options *opts, ivcr_index **out);
/* Waits for nothing: searches still running on this handle must have returned first. */
IVCR_API void ivcr_index_close(ivcr_index *index);
/* Map what was committed since open or the last refresh. *changed (may be NULL) is set to 1 when
 * the view changed. Safe beside concurrent searches on the same handle. */
IVCR_API ivcr_status ivcr_index_refresh(ivcr_index *index, int *changed);

/* Videos in the current snapshot, removed ones included (a video's "ref" is its position here). */
IVCR_API size_t ivcr_index_video_count(const ivcr_index *index);
/* Live (not removed) videos. */
IVCR_API size_t ivcr_index_live_count(const ivcr_index *index);
/* The dimension of a channel's rows ("visual", "concept", "speech", "subtitle", "ocr", "clip"),
 * or 0 when the index lacks it. */
IVCR_API int ivcr_index_channel_dim(const ivcr_index *index, const char *channel);
/* How many videos' timed lines the current snapshot has read from the index (its kept lines'
 * misses): a turn reads each video's lines once, and the next turn's moments mostly none. */
IVCR_API size_t ivcr_index_line_reads(const ivcr_index *index);
/* The text model the index's text channels were built with when it was opened, e.g. "text_me5_small". */
IVCR_API const char *ivcr_index_text_model(const ivcr_index *index);
/* What a prefaulted handle (ivcr_open_options_set_prefault) keeps locked in memory for its current
 * view, in bytes: the folded text rows of the first stages searched so far (a text query reads a
 * few MB of them at random, and a host that reclaims cold memory would page them out between
 * queries). *unlocked: what it meant to lock but the process may not (RLIMIT_MEMLOCK; `ulimit -l`
 * or CAP_IPC_LOCK raise it): faulted in instead. Both 0 without prefault or before a text search. */
IVCR_API ivcr_status ivcr_index_locked_bytes(const ivcr_index *index, size_t *locked, size_t *unlocked);

/* ---- queries as vectors ------------------------------------------------------------------ */

/* `batch` query rows (>= 1); each channel set below holds batch x dim float32 values. */
IVCR_API ivcr_status ivcr_queries_new(size_t batch, ivcr_queries **out);
IVCR_API void ivcr_queries_free(ivcr_queries *queries);
/* Copies batch x dim row-major floats as the query rows of `channel`. */
IVCR_API ivcr_status ivcr_queries_set_channel(ivcr_queries *queries, const char *channel, const float *rows,
                                              size_t dim);
/* The lexical channel's matches for query row `row`, found by a host that searched the index's
 * lines for the query's words: video refs with their best line's coverage of the words (0..1),
 * and line rowids with theirs. Optional; weighted by the "lexical" weight. */
IVCR_API ivcr_status ivcr_queries_set_lexical(ivcr_queries *queries, size_t row, const int64_t *video_refs,
                                              const float *video_coverage, size_t n_videos,
                                              const int64_t *line_rowids, const float *line_coverage,
                                              size_t n_lines);
/* The lexical channel from the text of query row `row` (UTF-8): the engine finds the index's
 * lines that hold its words (or their dictionary translations) when it searches, as ivcr_search
 * does, and weighs them by the "lexical" weight. Needs the language tables `ivcr models prepare`
 * writes (IVCR_UNSUPPORTED at search time without them); an index whose lexical table predates
 * this engine's segmentation finds nothing. Replaces ivcr_queries_set_lexical's matches. */
IVCR_API ivcr_status ivcr_queries_set_lexical_text(ivcr_queries *queries, size_t row, const char *text);
/* The text query rows the native encoder gives for `n` texts (the same rows ivcr_search uses;
 * IVCR_UNSUPPORTED where the index's text model has no native encoder), each row with its text
 * for the lexical channel (ivcr_queries_set_lexical_text). */
IVCR_API ivcr_status ivcr_encode_queries(ivcr_index *index, const char *const *texts, size_t n,
                                         ivcr_queries **out);
/* A text model's query shaping (for a host with its own encoder of that model): its unit query
 * vectors become the rows of each text channel, calibrated on the query's own chance similarity
 * (the model's card, moved by the query's cosine to the model's mean passage) with the presence
 * baseline in the speech/subtitle/ocr rows. The rows ivcr_search uses come from the same code.
 * model_dir NULL: the default (see ivcr_open_options_set_model_dir); frame_model: the index's
 * (its settings' "frame_model", e.g. "frame_effnet_lite0"), whose class texts give the mean
 * passage; NULL or "": none (the model's chance for every query). Usable from any thread. */
typedef struct ivcr_query_shape ivcr_query_shape;
IVCR_API ivcr_status ivcr_query_shape_open(const char *model_dir, const char *text_model, const char *frame_model,
                                           ivcr_query_shape **out);
IVCR_API void ivcr_query_shape_free(ivcr_query_shape *shape);
/* The model's chance similarity (its card's; 0 where the card has none). */
IVCR_API float ivcr_query_shape_chance(const ivcr_query_shape *shape);
/* n unit vectors of dim floats -> a batch-n queries object with the rows of every text channel
 * among `channels` ("concept", "speech", "subtitle", "ocr"; others are skipped). */
IVCR_API ivcr_status ivcr_query_shape_rows(const ivcr_query_shape *shape, const float *unit, size_t n, size_t dim,
                                           const char *const *channels, size_t n_channels, ivcr_queries **out);
/* The native query encoder of `text_model` alone (ivcr_index_text_model gives an index's), from
 * the models `ivcr models prepare` wrote under model_dir (NULL: the default, as
 * ivcr_open_options_set_model_dir): for a face that caches unit vectors and shapes them itself
 * (ivcr_query_shape_rows), as the Python package does. IVCR_UNSUPPORTED where the model has no
 * native encoder or the CPU lacks AVX2, FMA and F16C; IVCR_NOT_FOUND where its weights were not
 * prepared. Usable from any thread: calls run one at a time, each over the engine's threads. */
typedef struct ivcr_text_encoder ivcr_text_encoder;
IVCR_API ivcr_status ivcr_text_encoder_open(const char *model_dir, const char *text_model, ivcr_text_encoder **out);
IVCR_API void ivcr_text_encoder_free(ivcr_text_encoder *encoder);
/* The width of its vectors. */
IVCR_API size_t ivcr_text_encoder_dim(const ivcr_text_encoder *encoder);
/* n texts (UTF-8, each a query: the model's query prefix is added) -> n x dim unit vectors into
 * `out` (out_len >= n * dim floats), the model card's language direction removed: the vectors
 * ivcr_search's rows are shaped from. Each row is the text's alone, whatever the batch. */
IVCR_API ivcr_status ivcr_text_encoder_encode(ivcr_text_encoder *encoder, const char *const *texts, size_t n,
                                              float *out, size_t out_len);
/* The rows of one channel: *rows points into the queries object, batch x *dim floats. */
IVCR_API ivcr_status ivcr_queries_channel(const ivcr_queries *queries, const char *channel, const float **rows,
                                          size_t *dim);

/* ---- search ------------------------------------------------------------------------------ */

IVCR_API ivcr_status ivcr_search_options_new(ivcr_search_options **out);
IVCR_API void ivcr_search_options_free(ivcr_search_options *opts);
/* A channel's weight in the fused score. Defaults (the Python path's): "concept", "speech",
 * "subtitle", "ocr" and "clip" 1, "lexical" 0.3, "visual" 0 (set it for a picture or a moment's
 * visual vector). */
IVCR_API ivcr_status ivcr_search_options_set_weight(ivcr_search_options *opts, const char *channel, float weight);
/* Only these video refs are eligible (replaces an earlier allow list). */
IVCR_API ivcr_status ivcr_search_options_set_allow(ivcr_search_options *opts, const int64_t *refs, size_t n);
/* These video refs are never returned (replaces an earlier deny list). */
IVCR_API ivcr_status ivcr_search_options_set_deny(ivcr_search_options *opts, const int64_t *refs, size_t n);
/* A host's first stage (FAISS IndexRefine-style): for each of `rows` query rows, `width` candidate
 * refs (-1 padded); the exact stage then ranks each row among its own candidates only. */
IVCR_API ivcr_status ivcr_search_options_set_candidates(ivcr_search_options *opts, const int64_t *refs, size_t rows,
                                                        size_t width);
/* The staged ranking's sizes: from `min_rows` clips on (default 200000) each row's exact stage
 * re-ranks the `shortlist` (400) best videos of a first stage over the compact copies the Python
 * package writes beside the vectors (vectors/first.*.npy: every `ivcr index` run leaves those of a
 * text query and a visual query ready, and a Python search builds any other on first use;
 * `coarse_shortlist`, 8000, videos pass a coarse copy first; inverted lists serve while at least
 * `lists_min_eligible`, 0.95, of the videos are eligible, each reading `clips_per_video` (8) clips
 * a wanted video). Without copies, every row is scanned exactly (`ivcr_results_stage` says
 * "exact"; at 1M clips about 8x slower). */
IVCR_API ivcr_status ivcr_search_options_set_first_stage(ivcr_search_options *opts, int64_t min_rows, int64_t shortlist,
                                                         int64_t coarse_shortlist, double lists_min_eligible,
                                                         int64_t clips_per_video);
/* Only refs with a nonzero mask[ref] are eligible (refs >= n are not): a host that holds its own
 * view of the index passes it, so no video it has not seen comes back. */
IVCR_API ivcr_status ivcr_search_options_set_eligible(ivcr_search_options *opts, const uint8_t *mask, size_t n);
/* Moments per hit (default 1); 0: rank videos only, each hit spanning its whole video. */
IVCR_API ivcr_status ivcr_search_options_set_moments(ivcr_search_options *opts, int per_video);
/* 0: no evidence lines (default 1). */
IVCR_API ivcr_status ivcr_search_options_set_evidence(ivcr_search_options *opts, int evidence);
/* Moments only inside [start, end] seconds (ivcr_moments; default: the whole video). */
IVCR_API ivcr_status ivcr_search_options_set_window(ivcr_search_options *opts, double start, double end);

/* Top k videos for a text query, each with its best moment(s) and their evidence: the dense
 * channels from the native encoder of the index's text model (IVCR_UNSUPPORTED otherwise, and on
 * a CPU without AVX2: use ivcr_search_vectors with your own encoder's rows) and the lexical
 * channel from the query's words (ivcr_queries_set_lexical_text), as the Python path searches. */
IVCR_API ivcr_status ivcr_search(ivcr_index *index, const char *query, int k, const ivcr_search_options *opts,
                                 ivcr_results **out);
/* The same for n texts; out receives n results (free each). */
IVCR_API ivcr_status ivcr_search_batch(ivcr_index *index, const char *const *queries, size_t n, int k,
                                       const ivcr_search_options *opts, ivcr_results **out);
/* Top k videos for query rows of batch 1. */
IVCR_API ivcr_status ivcr_search_vectors(ivcr_index *index, const ivcr_queries *queries, int k,
                                         const ivcr_search_options *opts, ivcr_results **out);
/* Top k videos for every row of a batch in one ranking call; out receives batch results. */
IVCR_API ivcr_status ivcr_search_vectors_batch(ivcr_index *index, const ivcr_queries *queries, int k,
                                               const ivcr_search_options *opts, ivcr_results **out);
/* The best moments inside each of n videos for one query row (batch 1), `per_video` of them
 * (ivcr_search_options_set_moments) inside the window; hits in video order, then best first. */
IVCR_API ivcr_status ivcr_moments(ivcr_index *index, const ivcr_queries *queries, const int64_t *videos, size_t n,
                                  const ivcr_search_options *opts, ivcr_results **out);
/* The evidence of [start, end] in a video, as one hit: every line overlapping it (with its match
 * to the query row when queries, batch 1, are given; NULL: none) and its clips' concepts. */
IVCR_API ivcr_status ivcr_evidence(ivcr_index *index, const ivcr_queries *queries, int64_t video, double start,
                                   double end, const ivcr_search_options *opts, ivcr_results **out);
/* The unit mean of a channel's rows over [start, end] of a video: "something like this scene".
 * out holds dim floats (ivcr_index_channel_dim). */
IVCR_API ivcr_status ivcr_moment_vector(ivcr_index *index, int64_t video, double start, double end,
                                        const char *channel, float *out, size_t dim);

/* ---- results ----------------------------------------------------------------------------- */

typedef struct ivcr_hit {
  int64_t ref;              /* the video's position in the snapshot searched */
  const char *video_id;     /* the store's video id, as a decimal string */
  const char *name;         /* the video's path as indexed */
  double start, end;        /* the moment, seconds */
  float score;              /* the video's fused score (ranking) */
  float moment_score;       /* the moment's span score (NaN for a hit without a moment) */
  double duration;          /* the video's duration, seconds */
} ivcr_hit;

typedef struct ivcr_line {
  const char *source;       /* "speech", "subtitle" or "ocr" */
  double start, end;        /* seconds */
  const char *text;
  float match;              /* calibrated match to the query above chance (NaN: not scored) */
} ivcr_line;

IVCR_API size_t ivcr_results_count(const ivcr_results *results);
IVCR_API ivcr_status ivcr_results_hit(const ivcr_results *results, size_t i, ivcr_hit *out);
/* Every hit's ref and score at once (a ranking's answer without a call per hit): fills the first
 * min(count, capacity) entries of refs and scores; returns how many it filled. */
IVCR_API size_t ivcr_results_ranking(const ivcr_results *results, int64_t *refs, float *scores, size_t capacity);
/* Evidence: the timed lines under hit i's moment, in time order. */
IVCR_API size_t ivcr_results_line_count(const ivcr_results *results, size_t i);
IVCR_API ivcr_status ivcr_results_line(const ivcr_results *results, size_t i, size_t j, ivcr_line *out);
/* Evidence: up to three concept strings of the clips under hit i's moment ("cockatoo 0.61, ..."). */
IVCR_API size_t ivcr_results_concept_count(const ivcr_results *results, size_t i);
IVCR_API const char *ivcr_results_concept(const ivcr_results *results, size_t i, size_t j);
/* Evidence: the best clip score of each channel under hit i's moment; NAN when absent. */
IVCR_API float ivcr_results_channel_score(const ivcr_results *results, size_t i, const char *channel);
/* How the ranking found these videos: "exact" (every eligible row scanned), "candidates" (the
 * host's shortlists), "lists", "coarse" or "copies" (the first stage's inverted lists, coarse copy
 * or whole copies, then the exact stage). Static storage. */
IVCR_API const char *ivcr_results_stage(const ivcr_results *results);
/* Where the ranking call that gave these results spent its time, in ms (every row of a batch
 * reports its call's): part "first" (the first stage's shortlists), "prerank" (the pre-rank on the
 * folded text rows), "exact" (the exact stage), "lexical" (the join of the lexical candidates), "words"
 * (finding the query's words, their translations and the lines that hold them, before ranking); 0
 * for a part the call did not run. Results of ivcr_moments and ivcr_evidence report 0. */
IVCR_API ivcr_status ivcr_results_stage_ms(const ivcr_results *results, const char *part, double *ms);
IVCR_API void ivcr_results_free(ivcr_results *results);

#ifdef __cplusplus
}
#endif
#endif /* IVCR_H */
