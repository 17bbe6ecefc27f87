// Run-time CPU feature detection: kernels compiled for AVX2/AVX-512 are only entered when the
// CPU (and the OS, via XGETBV) supports them, so one binary runs everywhere.
#pragma once
#include <string>
#include <vector>

namespace ivcr {

// AMX: AVX-512 plus AMX-TILE/AMX-INT8 tiles this process may use (the blocked int4 scan of batches).
enum class SimdLevel { Scalar = 0, AVX2 = 1, AVX512 = 2, AMX = 3 };

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false, avx512vnni = false;
  bool amx_int8 = false;  // AMX-TILE + AMX-INT8, the OS saving tile state, and this process allowed to use it
};

const CpuFeatures& cpu_features();
// Highest level usable on this CPU, capped by IVCR_SIMD=scalar|avx2|avx512|amx (for tests/benchmarks).
SimdLevel active_simd_level();
// Force a level (clamped to what the CPU supports); used by tests to exercise every kernel.
void set_simd_level_override(int level);  // -1 clears the override
const char* simd_level_name(SimdLevel l);
std::vector<std::string> detected_simd_names();

}  // namespace ivcr
