// A small persistent thread pool. parallel_for hands task indices to workers with an atomic
// counter; the calling thread works too, so one call on 2 cores uses both.
#pragma once
#include <cstddef>
#include <functional>

namespace ivcr {

// Number of threads parallel_for uses (default: hardware concurrency, or IVCR_NUM_THREADS).
int num_threads();
void set_num_threads(int n);

// Runs fn(task, worker) for task in [0, n_tasks); worker is in [0, num_threads()).
// Exceptions thrown by fn are re-thrown in the caller (the first one wins).
void parallel_for(std::size_t n_tasks, const std::function<void(std::size_t, int)>& fn);

}  // namespace ivcr
