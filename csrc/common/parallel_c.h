/* The engine's thread pool (common/thread_pool.h) for its C sources (the native text encoder):
 * one pool for the whole engine, so a query's encoding and its scan share the same threads, and
 * libivcr needs no OpenMP runtime (whose workers kept spinning on one of two cores for
 * milliseconds after the encoder, while the scan that followed ran on the pool's). */
#ifndef IVCR_PARALLEL_C_H
#define IVCR_PARALLEL_C_H
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* (Hidden: libivcr exports ivcr_* as its ABI, and these are not part of it.) */
#define IVCR_POOL_API __attribute__((visibility("hidden")))

/* Threads a region runs on (the caller included). */
IVCR_POOL_API int ivcr_pool_threads(void);
/* Runs fn(ctx, task) for every task in [0, n_tasks), on the pool's workers and the calling
 * thread; returns when all have run. Regions run one at a time (a second caller waits), and a
 * task must not start a region itself. fn must not unwind (it is C). */
IVCR_POOL_API void ivcr_pool_run(size_t n_tasks, void (*fn)(void *ctx, size_t task), void *ctx);

#ifdef __cplusplus
}
#endif
#endif
