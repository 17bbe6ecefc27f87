// What memory_floor.cpp and turn_floor.cpp share: a file's bytes copied into anonymous memory on
// huge pages (as the engine keeps a resident copy), a thread's share of them, and the plain read
// both time.
#pragma once
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace floor_read {

// The file's bytes (whole 64-byte lines) in anonymous memory on huge pages where the kernel gives
// them, as `words` 8-byte words; nullptr when it cannot be read. Never freed: a benchmark's copy.
inline const uint64_t* resident_copy(const char* path, size_t& words) {
  const int fd = ::open(path, O_RDONLY);
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0 || st.st_size < 64) {
    if (fd >= 0) ::close(fd);
    return nullptr;
  }
  const size_t bytes = size_t(st.st_size) / 64 * 64;
  void* mem = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  void* file = ::mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (mem == MAP_FAILED || file == MAP_FAILED) {
    if (mem != MAP_FAILED) ::munmap(mem, bytes);
    if (file != MAP_FAILED) ::munmap(file, bytes);
    return nullptr;
  }
#ifdef MADV_HUGEPAGE
  ::madvise(mem, bytes, MADV_HUGEPAGE);
#endif
  std::memcpy(mem, file, bytes);
  ::munmap(file, bytes);
  words = bytes / 8;
  return static_cast<const uint64_t*>(mem);
}

// Thread t's contiguous share [a, b) of n words, in whole 64-byte lines.
inline void share(size_t n, int t, int threads, size_t& a, size_t& b) {
  a = n * size_t(t) / size_t(threads) / 8 * 8;
  b = n * size_t(t + 1) / size_t(threads) / 8 * 8;
}

// Words [a, b) summed one 64-byte line a step, prefetching `ahead` words ahead (0: none), in four
// chains, so the loads, not the adds, set the pace.
inline uint64_t sum_words(const uint64_t* w, size_t a, size_t b, size_t ahead) {
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (size_t i = a; i < b; i += 8) {
    if (ahead && i + ahead < b) __builtin_prefetch(w + i + ahead);
    s0 += w[i] + w[i + 4];
    s1 += w[i + 1] + w[i + 5];
    s2 += w[i + 2] + w[i + 6];
    s3 += w[i + 3] + w[i + 7];
  }
  return s0 + s1 + s2 + s3;
}

}  // namespace floor_read
