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
  void* file = ::mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (mem == MAP_FAILED || file == MAP_FAILED) {
    if (mem != MAP_FAILED) ::munmap(mem, bytes);
    if (file != MAP_FAILED) ::munmap(file, bytes);
    return false;
  }
#ifdef MADV_HUGEPAGE
  ::madvise(mem, bytes, MADV_HUGEPAGE);
#endif
  std::memcpy(mem, file, bytes);
  ::munmap(file, bytes);
  g_words = static_cast<const uint64_t*>(mem);
  g_n = bytes / 8;
  return true;
}

}  // namespace

// Sums words [a, b) of the copy 64 bytes at a time: four chains, so the loads, not the adds, set
// the pace.
static uint64_t sum_share(size_t a, size_t b) {
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (size_t i = a; i < b; i += 8) {
    s0 += g_words[i] + g_words[i + 4];
    s1 += g_words[i + 1] + g_words[i + 5];
    s2 += g_words[i + 2] + g_words[i + 6];
    s3 += g_words[i + 3] + g_words[i + 7];
  }
  return s0 + s1 + s2 + s3;
}

extern "C" double ivcr_turn_floor_ms(const char* path, int threads) {
  if (!g_words && !load(path)) return -1.0;
  threads = std::max(threads, 1);
  using clock = std::chrono::steady_clock;
  const auto share = [threads](int t, size_t& a, size_t& b) {
    a = g_n * size_t(t) / size_t(threads) / 8 * 8;
    b = g_n * size_t(t + 1) / size_t(threads) / 8 * 8;
  };
  // The caller reads share 0 and threads - 1 others the rest, as the engine's pool splits a scan
  // between its caller and its workers; all start together once every worker is waiting.
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<clock::time_point> ends(static_cast<size_t>(threads));
  std::vector<std::thread> workers;
  for (int t = 1; t < threads; ++t)
    workers.emplace_back([&, t] {
      size_t a, b;
      share(t, a, b);
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) {
      }
      const uint64_t s = sum_share(a, b);
      ends[size_t(t)] = clock::now();
      g_sink.fetch_xor(s);
    });
  while (ready.load() < threads - 1) {
  }
  const clock::time_point start = clock::now();
  go.store(true, std::memory_order_release);
  size_t a, b;
  share(0, a, b);
  g_sink.fetch_xor(sum_share(a, b));
  ends[0] = clock::now();
  for (auto& th : workers) th.join();
  return std::chrono::duration<double, std::milli>(*std::max_element(ends.begin(), ends.end()) - start).count();
}
