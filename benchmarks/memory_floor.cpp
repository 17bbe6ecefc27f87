// The physical floor of a whole scan: how fast this machine reads a file's bytes that are already
// in memory, with as many threads as the engine's pool (IVCR_NUM_THREADS, else one per core), each
// summing its contiguous share 64 bytes at a time, with and without a prefetch ahead. A first-stage
// scan of the same bytes can go no faster; benchmarks/bench_engine.py sets the text copy's scan against it.
//
//   ivcr_memory_floor FILE [REPS]
//     ->  {"bytes": N, "threads": T, "p50_ms": .., "plain_p50_ms": .., "ahead_p50_ms": .., "gb_per_s": ..}
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "floor_read.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s FILE [REPS]\n", argv[0]);
    return 2;
  }
  const int reps = argc > 2 ? std::atoi(argv[2]) : 30;
  size_t n = 0;
  const uint64_t* words = floor_read::resident_copy(argv[1], n);
  if (!words) {
    std::fprintf(stderr, "cannot read %s\n", argv[1]);
    return 1;
  }
  const size_t bytes = n * 8;

  int threads = int(std::thread::hardware_concurrency());
  if (const char* e = std::getenv("IVCR_NUM_THREADS")) threads = std::atoi(e);
  threads = std::max(threads, 1);
  std::vector<uint64_t> sums(size_t(threads) * 8);
  // Each way of reading: a plain one, and one that also prefetches 8 KB ahead (on the Xeon of
  // docs/BENCHMARKS.md the faster back to back; the engine's scan does not, since it gained
  // nothing in turns); the floor is the faster of the two.
  const auto p50_of = [&](size_t ahead) {
    std::vector<double> ms;
    for (int r = 0; r < reps; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      std::vector<std::thread> pool;
      for (int t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
          size_t a, b;
          floor_read::share(n, t, threads, a, b);
          sums[size_t(t) * 8] ^= floor_read::sum_words(words, a, b, ahead);
        });
      for (auto& th : pool) th.join();
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::nth_element(ms.begin(), ms.begin() + long(ms.size() / 2), ms.end());
    return ms[ms.size() / 2];
  };
  const double plain = p50_of(0), ahead = p50_of(8192 / 8);
  const double p50 = std::min(plain, ahead);
  uint64_t check = 0;
  for (uint64_t s : sums) check ^= s;
  std::printf(
      "{\"bytes\": %zu, \"threads\": %d, \"p50_ms\": %.3f, \"plain_p50_ms\": %.3f, \"ahead_p50_ms\": %.3f, "
      "\"gb_per_s\": %.2f, \"check\": %llu}\n",
      bytes, threads, p50, plain, ahead, double(bytes) / p50 / 1e6, static_cast<unsigned long long>(check));
  return 0;
}
