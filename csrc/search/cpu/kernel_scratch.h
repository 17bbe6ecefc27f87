// Per-thread scratch memory for the kernel files compiled with ISA flags (kernels_avx2.cpp,
// kernels_avx512.cpp, kernels_amx.cpp, through dot_kernels_impl.h).
//
// Not std::vector: the member functions of std::vector<int32_t> and the like are weak symbols,
// one copy of which the linker keeps for the whole library, and a copy compiled in an AVX-512 or
// AMX file may use those instructions, then run on a CPU without them from any other file. The
// unnamed namespace gives every file its own Scratch, with nothing shared.
#pragma once
#include <cstddef>
#include <cstdlib>
#include <new>

namespace ivcr::search {
namespace {

// A 64-byte aligned buffer that only grows.
class Scratch {
 public:
  Scratch() = default;
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() { std::free(p_); }

  // At least `bytes` bytes (their contents kept only while the size does not grow).
  void* get(std::size_t bytes) {
    if (bytes > n_) {
      const std::size_t n = (bytes + 63) / 64 * 64;
      void* p = std::aligned_alloc(64, n);
      if (!p) throw std::bad_alloc();
      std::free(p_);
      p_ = p, n_ = n;
    }
    return p_;
  }

 private:
  void* p_ = nullptr;
  std::size_t n_ = 0;
};

}  // namespace
}  // namespace ivcr::search
