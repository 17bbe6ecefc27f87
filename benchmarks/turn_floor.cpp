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
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

namespace {

const uint64_t* g_words = nullptr;
size_t g_n = 0;
std::atomic<uint64_t> g_sink{0};

bool load(const char* path) {
  const int fd = ::open(path, O_RDONLY);
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0 || st.st_size < 64) {
    if (fd >= 0) ::close(fd);
    return false;
  }
  const size_t bytes = size_t(st.st_size) / 64 * 64;
  void* mem = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  const void* file = ::mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (mem == MAP_FAILED || file == MAP_FAILED) return false;
#ifdef MADV_HUGEPAGE
  ::madvise(mem, bytes, MADV_HUGEPAGE);
#endif
  std::memcpy(mem, file, bytes);
  ::munmap(const_cast<void*>(file), bytes);
  g_words = static_cast<const uint64_t*>(mem);
  g_n = bytes / 8;
  return true;
}

}  // namespace

extern "C" double ivcr_turn_floor_ms(const char* path, int threads) {
  if (!g_words && !load(path)) return -1.0;
  threads = std::max(threads, 1);
  using clock = std::chrono::steady_clock;
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<clock::time_point> ends(static_cast<size_t>(threads));
  clock::time_point start;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      const size_t a = g_n * size_t(t) / size_t(threads) / 8 * 8, b = g_n * size_t(t + 1) / size_t(threads) / 8 * 8;
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) {
      }
      uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;  // four chains: the loads, not the adds, set the pace
      for (size_t i = a; i < b; i += 8) {
        s0 += g_words[i] + g_words[i + 4];
        s1 += g_words[i + 1] + g_words[i + 5];
        s2 += g_words[i + 2] + g_words[i + 6];
        s3 += g_words[i + 3] + g_words[i + 7];
      }
      ends[size_t(t)] = clock::now();
      g_sink.fetch_xor(s0 + s1 + s2 + s3);
    });
  while (ready.load() < threads) {
  }
  start = clock::now();
  go.store(true, std::memory_order_release);
  for (auto& th : pool) th.join();
  return std::chrono::duration<double, std::milli>(*std::max_element(ends.begin(), ends.end()) - start).count();
}
