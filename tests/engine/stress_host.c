/* 8 threads search one libivcr handle while a refresher thread maps what another process
 * commits. Runs for the seconds given, then prints "searches N refreshes_changed M videos V
 * staged S" and exits 0, or prints the first failure and exits 2. With "staged" after the
 * seconds, every other thread searches text through the staged ranking (a first stage from one
 * clip on, over the copies and folded rows the committing process writes, grows and removes
 * generations of); S counts those searches. With "prefault" after that, the handle is opened
 * as `ivcr serve` opens it: each stage's whole-scanned copies and folded rows moved into resident
 * memory (an int4 copy in blocks of 16 rows) as it is read. Built (also with ASan and UBSan) and
 * run by tests/engine/test_hosts.py. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ivcr.h"

static ivcr_index *index_;
static atomic_int stop, failures;
static atomic_long searches, changed_count, staged_count;
static int staged;
static ivcr_queries *text_query;
static int dim;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* A search's status, its results checked: at least one hit, each a span that ends after it starts. */
static ivcr_status checked(ivcr_status s, const ivcr_results *res) {
  if (s == IVCR_OK && ivcr_results_count(res) == 0) s = IVCR_INTERNAL;
  for (size_t i = 0; s == IVCR_OK && i < ivcr_results_count(res); ++i) {
    ivcr_hit h;
    s = ivcr_results_hit(res, i, &h);
    if (s == IVCR_OK && !(h.end > h.start)) s = IVCR_INTERNAL;
  }
  return s;
}

/* A text query's rows (the native encoder's, encoded once) through the first stage, whose
 * shortlist is smaller than the index. */
static ivcr_status staged_search(const ivcr_search_options *opts) {
  ivcr_results *res = NULL;
  ivcr_status s = ivcr_search_vectors(index_, text_query, 3, opts, &res);
  s = checked(s, res);
  if (s == IVCR_OK && strcmp(ivcr_results_stage(res), "exact") != 0) atomic_fetch_add(&staged_count, 1);
  ivcr_results_free(res);
  return s;
}

static void *searcher(void *arg) {
  long id = (long)arg;
  if (staged && id % 2) {
    ivcr_search_options *opts = NULL;
    ivcr_search_options_new(&opts);
    ivcr_search_options_set_first_stage(opts, 1, 4, 8000, 0.95, 8);
    while (!atomic_load(&stop)) {
      ivcr_status s = staged_search(opts);
      if (s != IVCR_OK) {
        fprintf(stderr, "thread %ld: %s: %s\n", id, ivcr_status_name(s), ivcr_last_error());
        atomic_fetch_add(&failures, 1);
      }
      atomic_fetch_add(&searches, 1);
    }
    ivcr_search_options_free(opts);
    return NULL;
  }
  float *row = calloc((size_t)dim, sizeof(float));
  ivcr_search_options *opts = NULL;
  ivcr_search_options_new(&opts);
  ivcr_search_options_set_weight(opts, "visual", 1.0f);
  while (!atomic_load(&stop)) {
    size_t n = ivcr_index_video_count(index_);
    ivcr_queries *q = NULL;
    ivcr_results *res = NULL;
    ivcr_status s = ivcr_moment_vector(index_, (int64_t)((id + atomic_load(&searches)) % (long)n), 0.0, 4.0, "visual",
                                       row, (size_t)dim);
    if (s == IVCR_OK) s = ivcr_queries_new(1, &q);
    if (s == IVCR_OK) s = ivcr_queries_set_channel(q, "visual", row, (size_t)dim);
    if (s == IVCR_OK) s = ivcr_search_vectors(index_, q, 5, opts, &res);
    s = checked(s, res);
    if (s != IVCR_OK && s != IVCR_INVALID_ARGUMENT) {  /* a ref past a moment's end is the only allowed refusal */
      fprintf(stderr, "thread %ld: %s: %s\n", id, ivcr_status_name(s), ivcr_last_error());
      atomic_fetch_add(&failures, 1);
    }
    ivcr_results_free(res);
    ivcr_queries_free(q);
    atomic_fetch_add(&searches, 1);
  }
  ivcr_search_options_free(opts);
  free(row);
  return NULL;
}

static void *refresher(void *arg) {
  (void)arg;
  while (!atomic_load(&stop)) {
    int changed = 0;
    ivcr_status s = ivcr_index_refresh(index_, &changed);
    if (s != IVCR_OK) {
      fprintf(stderr, "refresh: %s: %s\n", ivcr_status_name(s), ivcr_last_error());
      atomic_fetch_add(&failures, 1);
    }
    atomic_fetch_add(&changed_count, changed);
    struct timespec t = {0, 20 * 1000 * 1000};
    nanosleep(&t, NULL);
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 3) return 1;
  double seconds = atof(argv[2]);
  staged = argc > 3 && strcmp(argv[3], "staged") == 0;
  ivcr_open_options *opts = NULL;
  ivcr_status s = ivcr_open_options_new(&opts);
  if (s == IVCR_OK && argc > 4 && strcmp(argv[4], "prefault") == 0) s = ivcr_open_options_set_prefault(opts, 1);
  if (s == IVCR_OK) s = ivcr_index_open(argv[1], opts, &index_);
  ivcr_open_options_free(opts);
  if (s != IVCR_OK) {
    fprintf(stderr, "open: %s: %s\n", ivcr_status_name(s), ivcr_last_error());
    return 2;
  }
  dim = ivcr_index_channel_dim(index_, "visual");
  const char *text = "a bird on a branch";
  if (staged && (s = ivcr_encode_queries(index_, &text, 1, &text_query)) != IVCR_OK) {
    fprintf(stderr, "encode: %s: %s\n", ivcr_status_name(s), ivcr_last_error());
    return 2;
  }
  pthread_t t[9];
  for (long i = 0; i < 8; ++i) pthread_create(&t[i], NULL, searcher, (void *)i);
  pthread_create(&t[8], NULL, refresher, NULL);
  printf("ready\n");
  fflush(stdout);
  double end = now() + seconds;
  while (now() < end) {
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < 9; ++i) pthread_join(t[i], NULL);
  int changed = 0;
  ivcr_index_refresh(index_, &changed);
  printf("searches %ld refreshes_changed %ld videos %zu staged %ld\n", atomic_load(&searches),
         atomic_load(&changed_count), ivcr_index_video_count(index_), atomic_load(&staged_count));
  ivcr_queries_free(text_query);
  ivcr_index_close(index_);
  return atomic_load(&failures) ? 2 : 0;
}
