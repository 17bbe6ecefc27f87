/* Encodes its arguments' texts through libivcr's native encoder twice: all in one call (one
 * batched forward pass, several passes when long) and one by one; then once more through the lone
 * encoder (ivcr_text_encoder_*), whose unit vectors are the directions of those rows. Prints
 * "rows N same S lone L" (S: rows equal to the bit; L: unit vectors within 1e-6 of their row's
 * direction) and exits 0, or prints the failure and exits 2. Built with ASan and UBSan and run by
 * tests/engine/test_hosts.py. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ivcr.h"

static int failed(const char *what) {
  fprintf(stderr, "%s: %s\n", what, ivcr_last_error());
  return 2;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s INDEX TEXT...\n", argv[0]);
    return 2;
  }
  ivcr_index *index = NULL;
  if (ivcr_index_open(argv[1], NULL, &index) != IVCR_OK) return failed("open");
  const size_t n = (size_t)(argc - 2);
  const char *const *texts = (const char *const *)(argv + 2);
  ivcr_queries *all = NULL;
  if (ivcr_encode_queries(index, texts, n, &all) != IVCR_OK) return failed("encode all");
  const float *rows = NULL;
  size_t dim = 0, same = 0;
  if (ivcr_queries_channel(all, "concept", &rows, &dim) != IVCR_OK) return failed("rows");
  for (size_t i = 0; i < n; ++i) {
    ivcr_queries *one = NULL;
    const float *row = NULL;
    size_t d = 0;
    if (ivcr_encode_queries(index, texts + i, 1, &one) != IVCR_OK) return failed("encode one");
    if (ivcr_queries_channel(one, "concept", &row, &d) != IVCR_OK || d != dim) return failed("row");
    same += memcmp(row, rows + i * dim, dim * sizeof(float)) == 0;
    ivcr_queries_free(one);
  }
  ivcr_text_encoder *enc = NULL;
  if (ivcr_text_encoder_open(NULL, ivcr_index_text_model(index), &enc) != IVCR_OK) return failed("lone open");
  if (ivcr_text_encoder_dim(enc) != dim) return failed("lone dim");
  float *unit = malloc(n * dim * sizeof(float));
  if (!unit || ivcr_text_encoder_encode(enc, texts, n, unit, n * dim) != IVCR_OK) return failed("lone encode");
  size_t lone = 0;
  for (size_t i = 0; i < n; ++i) {
    double norm = 0, worst = 0;
    for (size_t j = 0; j < dim; ++j) norm += (double)rows[i * dim + j] * rows[i * dim + j];
    norm = sqrt(norm);
    for (size_t j = 0; j < dim; ++j) worst = fmax(worst, fabs(rows[i * dim + j] / norm - unit[i * dim + j]));
    lone += worst <= 1e-6;
  }
  free(unit);
  ivcr_text_encoder_free(enc);
  printf("rows %zu same %zu lone %zu\n", n, same, lone);
  ivcr_queries_free(all);
  ivcr_index_close(index);
  return 0;
}
