// The memory floor where a dialogue turn's first stage runs: a plain read of as many bytes as the
// text copy holds, from memory of its own, at the moment of a turn where the engine's scan starts
// (benchmarks/bench_dialogue.py calls it right before each video-retrieval ranking, through
// ctypes). memory_floor.cpp times reads back to back, where the copy may still sit in the last-
// level cache; in a turn, the encoder and the turns between two rankings have run since, and the
// bytes come from wherever they are then.
//
//   double ivcr_turn_floor_ms(const char* path, int threads)
//     The first call that can read `path` copies its bytes into anonymous memory on huge pages (as
//     the engine keeps a resident copy; later calls read those, whatever path they name); every
//     call reads them once with `threads` threads, each summing its contiguous share 64 bytes at a
//     time, and returns the milliseconds from the threads' common start to the last one's end
//     (thread start-up not counted). -1 when no file has been read yet and this one cannot be.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "floor_read.h"

namespace {

const uint64_t* g_words = nullptr;  // the first readable path's bytes (floor_read::resident_copy)
size_t g_n = 0;
std::atomic<uint64_t> g_sink{0};

}  // namespace

extern "C" double ivcr_turn_floor_ms(const char* path, int threads) {
  if (!g_words && !(g_words = floor_read::resident_copy(path, g_n))) return -1.0;
  threads = std::max(threads, 1);
  using clock = std::chrono::steady_clock;
  // The caller reads share 0 and threads - 1 others the rest, as the engine's pool splits a scan
  // between its caller and its workers; all start together once every worker is waiting.
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<clock::time_point> ends(static_cast<size_t>(threads));
  std::vector<std::thread> workers;
  for (int t = 1; t < threads; ++t)
    workers.emplace_back([&, t] {
      size_t a, b;
      floor_read::share(g_n, t, threads, a, b);
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) {
      }
      const uint64_t s = floor_read::sum_words(g_words, a, b, 0);
      ends[size_t(t)] = clock::now();
      g_sink.fetch_xor(s);
    });
  while (ready.load() < threads - 1) {
  }
  const clock::time_point start = clock::now();
  go.store(true, std::memory_order_release);
  size_t a, b;
  floor_read::share(g_n, 0, threads, a, b);
  g_sink.fetch_xor(floor_read::sum_words(g_words, a, b, 0));
  ends[0] = clock::now();
  for (auto& th : workers) th.join();
  return std::chrono::duration<double, std::milli>(*std::max_element(ends.begin(), ends.end()) - start).count();
}
