#include "common/cpu_features.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cpuid.h>
#include <cstdlib>
#include <cstring>
#include <string>

namespace ivcr {
namespace {

uint64_t xgetbv0() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (uint64_t(hi) << 32) | lo;
}

// Highest kernel family compiled into this build (IVCR_SIMD_COMPILED comes from CMake).
int compiled_cap() {
  const std::string compiled = IVCR_SIMD_COMPILED;
  if (compiled.find("amx") != std::string::npos) return 3;
  if (compiled.find("avx512") != std::string::npos) return 2;
  if (compiled.find("avx2") != std::string::npos) return 1;
  return 0;
}

int env_cap() {
  const char* e = std::getenv("IVCR_SIMD");
  if (!e) return compiled_cap();
  if (!std::strcmp(e, "scalar")) return 0;
  if (!std::strcmp(e, "avx2")) return compiled_cap() < 1 ? compiled_cap() : 1;
  if (!std::strcmp(e, "avx512")) return compiled_cap() < 2 ? compiled_cap() : 2;
  return compiled_cap();
}

CpuFeatures detect() {
  CpuFeatures f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = c & (1u << 27);
  const bool avx = c & (1u << 28);
  f.fma = c & (1u << 12);
  f.f16c = c & (1u << 29);
  if (!osxsave || !avx) return CpuFeatures{};
  const uint64_t xcr0 = xgetbv0();
  const bool ymm_os = (xcr0 & 0x6) == 0x6;        // SSE + AVX state saved by the OS
  const bool zmm_os = (xcr0 & 0xe6) == 0xe6;      // plus opmask and upper ZMM state
  if (!ymm_os) return CpuFeatures{};
  __cpuid_count(7, 0, a, b, c, d);
  f.avx2 = b & (1u << 5);
  if (zmm_os) {
    f.avx512f = b & (1u << 16);
    f.avx512dq = b & (1u << 17);
    f.avx512bw = b & (1u << 30);
    f.avx512vl = b & (1u << 31);
    f.avx512vnni = c & (1u << 11);
    // AMX: the tiles' configuration and data saved by the OS (XCR0 bits 17, 18), and Linux's
    // per-process permission for the tile data (arch_prctl ARCH_REQ_XCOMP_PERM, asked once here,
    // and not at all when IVCR_SIMD caps the engine below AMX: once granted, the kernel refuses
    // signal stacks smaller than the larger signal frame; refused, the AVX-512 kernels run).
    const bool tiles_os = (xcr0 & (uint64_t(3) << 17)) == (uint64_t(3) << 17);
    if (tiles_os && (d & (1u << 24)) && (d & (1u << 25)) && env_cap() >= 3) {
#ifdef SYS_arch_prctl
      constexpr int kReqXcompPerm = 0x1023, kXtileData = 18;
      f.amx_int8 = ::syscall(SYS_arch_prctl, kReqXcompPerm, kXtileData) == 0;
#endif
    }
  }
  return f;
}

std::atomic<int> g_override{-1};

SimdLevel hardware_level() {
  const CpuFeatures& f = cpu_features();
  if (f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx512vnni && f.avx2 && f.fma && f.f16c)
    return f.amx_int8 ? SimdLevel::AMX : SimdLevel::AVX512;
  if (f.avx2 && f.fma && f.f16c) return SimdLevel::AVX2;
  return SimdLevel::Scalar;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

SimdLevel active_simd_level() {
  static const int cap = env_cap();
  int level = static_cast<int>(hardware_level());
  if (level > cap) level = cap;
  const int o = g_override.load(std::memory_order_relaxed);
  if (o >= 0 && o < level) level = o;
  return static_cast<SimdLevel>(level);
}

void set_simd_level_override(int level) { g_override.store(level); }

const char* simd_level_name(SimdLevel l) {
  switch (l) {
    case SimdLevel::AMX: return "amx";
    case SimdLevel::AVX512: return "avx512";
    case SimdLevel::AVX2: return "avx2";
    default: return "scalar";
  }
}

std::vector<std::string> detected_simd_names() {
  const CpuFeatures& f = cpu_features();
  std::vector<std::string> out;
  if (f.avx2) out.push_back("avx2");
  if (f.fma) out.push_back("fma");
  if (f.f16c) out.push_back("f16c");
  if (f.avx512f) out.push_back("avx512f");
  if (f.avx512bw) out.push_back("avx512bw");
  if (f.avx512vl) out.push_back("avx512vl");
  if (f.avx512dq) out.push_back("avx512dq");
  if (f.avx512vnni) out.push_back("avx512vnni");
  if (f.amx_int8) out.push_back("amx-int8");
  return out;
}

}  // namespace ivcr
