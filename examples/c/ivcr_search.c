/* ivcr_search: search an ivcr index from C, through libivcr's C ABI alone.
 *
 *   ivcr_search INDEX "QUERY" [K]              text in (the index's native encoder)
 *   ivcr_search INDEX --like REF START END [K]  "something like this": a moment's visual vector
 *
 * Prints each hit with its moment and the evidence behind it. Exit status: 0, or 2 with the
 * engine's status name and message on stderr.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ivcr.h"

static int failed(ivcr_status s, const char *what) {
  fprintf(stderr, "error: %s: %s: %s\n", what, ivcr_status_name(s), ivcr_last_error());
  return 2;
}

static void print_hits(const ivcr_results *res) {
  for (size_t i = 0; i < ivcr_results_count(res); ++i) {
    ivcr_hit h;
    if (ivcr_results_hit(res, i, &h) != IVCR_OK) continue;
    printf("%zu. video %s ref %lld %s %.2f-%.2fs score %.4f\n", i + 1, h.video_id, (long long)h.ref, h.name, h.start,
           h.end, h.score);
    for (size_t j = 0; j < ivcr_results_line_count(res, i); ++j) {
      ivcr_line l;
      if (ivcr_results_line(res, i, j, &l) != IVCR_OK) continue;
      if (isnan(l.match)) printf("   [%s %.2f-%.2f] %s\n", l.source, l.start, l.end, l.text);
      else printf("   [%s %.2f-%.2f %+.3f] %s\n", l.source, l.start, l.end, l.match, l.text);
    }
    for (size_t j = 0; j < ivcr_results_concept_count(res, i); ++j)
      printf("   seen: %s\n", ivcr_results_concept(res, i, j));
  }
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s INDEX \"QUERY\" [K]\n       %s INDEX --like REF START END [K]\n", argv[0], argv[0]);
    return 1;
  }
  if (ivcr_abi_version() != IVCR_ABI_VERSION) {
    fprintf(stderr, "error: libivcr implements ABI %d, this program was built for %d\n", ivcr_abi_version(),
            IVCR_ABI_VERSION);
    return 2;
  }
  ivcr_index *index = NULL;
  ivcr_status s = ivcr_index_open(argv[1], NULL, &index);
  if (s != IVCR_OK) return failed(s, "open");
  printf("index: %zu videos, text model %s\n", ivcr_index_live_count(index), ivcr_index_text_model(index));

  ivcr_results *res = NULL;
  int rc = 0;
  if (strcmp(argv[2], "--like") == 0) {
    if (argc < 6) {
      ivcr_index_close(index);
      fprintf(stderr, "usage: %s INDEX --like REF START END [K]\n", argv[0]);
      return 1;
    }
    int k = argc > 6 ? atoi(argv[6]) : 5;
    int dim = ivcr_index_channel_dim(index, "visual");
    float *row = calloc(dim > 0 ? (size_t)dim : 1, sizeof(float));
    ivcr_queries *q = NULL;
    ivcr_search_options *opts = NULL;
    if ((s = ivcr_moment_vector(index, atoll(argv[3]), atof(argv[4]), atof(argv[5]), "visual", row, (size_t)dim)) ||
        (s = ivcr_queries_new(1, &q)) || (s = ivcr_queries_set_channel(q, "visual", row, (size_t)dim)) ||
        (s = ivcr_search_options_new(&opts)) || (s = ivcr_search_options_set_weight(opts, "visual", 1.0f)) ||
        (s = ivcr_search_vectors(index, q, k, opts, &res)))
      rc = failed(s, "search by a moment");
    ivcr_search_options_free(opts);
    ivcr_queries_free(q);
    free(row);
  } else {
    int k = argc > 3 ? atoi(argv[3]) : 5;
    if ((s = ivcr_search(index, argv[2], k, NULL, &res)) != IVCR_OK) rc = failed(s, "search");
  }
  if (rc == 0) {
    // "exact" on a large index means its first-stage copies are missing: `ivcr index --index DIR` builds them
    printf("ranked by: %s\n", ivcr_results_stage(res));
    print_hits(res);
  }
  ivcr_results_free(res);
  ivcr_index_close(index);
  return rc;
}
