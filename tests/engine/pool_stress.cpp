// The engine's thread pool (csrc/common/thread_pool.cpp) under ThreadSanitizer: two callers run
// regions of 1-40 tasks back to back, through parallel_for and the C entry the native encoder
// uses (common/parallel_c.h), while one of them resizes the pool now and then. Every region must
// run each task exactly once and return only when all have run. Prints "bad N" (N regions that
// did not) and exits 1 when N > 0; built and run by tests/engine/test_pool.py.
#include <atomic>
#include <cstdio>
#include <thread>
#include <vector>

#include "common/parallel_c.h"
#include "common/thread_pool.h"

static void add_task(void* ctx, size_t task) { static_cast<std::atomic<long>*>(ctx)->fetch_add(long(task) + 1); }

int main() {
  std::atomic<long> bad{0};
  const auto caller = [&](int seed) {
    for (int r = 0; r < 3000; ++r) {
      const std::size_t n = 1 + std::size_t(r * 7 + seed) % 40;
      std::vector<int> ran(n, 0);  // plain ints: a task that ran twice, or after its region returned, shows
      ivcr::parallel_for(n, [&](std::size_t t, int) { ran[t] += 1; });
      for (int x : ran) bad += x != 1;
      std::atomic<long> sum{0};
      ivcr_pool_run(n, add_task, &sum);
      bad += sum.load() != long(n * (n + 1) / 2);
      if (seed == 0 && r % 250 == 0) ivcr::set_num_threads(r % 500 ? 2 : 3);
    }
  };
  std::thread a(caller, 0), b(caller, 1);
  a.join();
  b.join();
  std::printf("bad %ld\n", bad.load());
  return bad.load() != 0;
}
