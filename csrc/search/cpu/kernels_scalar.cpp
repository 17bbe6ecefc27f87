// Portable kernels (baseline x86-64): 8-lane arrays the compiler vectorises with SSE2. Same
// accumulation order as the SIMD tables, so they double as a check of the shared template.
#include <cstring>

#include "search/cpu/dot_kernels_impl.h"

namespace ivcr::search {

float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal half: renormalise
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while (!(mant & 0x400u));
      bits = sign | uint32_t(127 - 15 - e) << 23 | (mant & 0x3ffu) << 13;
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | mant << 13;  // inf / nan
  } else {
    bits = sign | (exp + 127 - 15) << 23 | mant << 13;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

namespace {

struct Scalar {
  static constexpr int W = 8;
  struct vf { float v[8]; };
  static vf zero() { return vf{}; }
  static vf load(const float* p) { vf r; for (int i = 0; i < 8; ++i) r.v[i] = p[i]; return r; }
  static vf load_h(const uint16_t* p) { vf r; for (int i = 0; i < 8; ++i) r.v[i] = half_to_float(p[i]); return r; }
  static vf fma(const vf& a, const vf& b, vf c) { for (int i = 0; i < 8; ++i) c.v[i] += a.v[i] * b.v[i]; return c; }
  static float hsum(const vf& a) {  // pairwise, the same tree as the AVX2 reduction
    const float s0 = (a.v[0] + a.v[4]) + (a.v[2] + a.v[6]);
    const float s1 = (a.v[1] + a.v[5]) + (a.v[3] + a.v[7]);
    return s0 + s1;
  }

  static constexpr int WI = 16;
  struct vi { int32_t v[8]; };
  static vi izero() { return vi{}; }
  struct vq { int16_t v[16]; };
  // The int8 step handles 16 values: products of adjacent pairs are summed into 8 int32 lanes.
  static vq load_i8(const int8_t* p) { vq r; for (int i = 0; i < 16; ++i) r.v[i] = p[i]; return r; }
  static vq load_i16(const int16_t* p) { vq r; for (int i = 0; i < 16; ++i) r.v[i] = p[i]; return r; }
  struct vb { int16_t v[32]; };  // byte lanes (held wider: nibbles 0..15, query bytes -127..127)
  static vb load_b(const int8_t* p) { vb r; for (int i = 0; i < 32; ++i) r.v[i] = p[i]; return r; }
  static constexpr int kGroups = 2;
  static constexpr int kRowsAt4Queries = 2;  // (as the AVX2 table)
  static void load_i4(const uint8_t* p, int groups, vb& lo, vb& hi) {  // nibbles as stored, lanes past them zero
    lo = vb{};
    hi = vb{};
    for (int i = 0; i < 16 * groups; ++i) {
      lo.v[i] = int16_t(p[i] & 15);
      hi.v[i] = int16_t(p[i] >> 4);
    }
  }
  struct vs { int32_t v[8]; };  // (int16 lanes in the AVX2 table; exact sums either way)
  static constexpr int kStepsPerWiden = 4;
  static vs szero() { return vs{}; }
  static vs dot_u8i8(vs acc, const vb& lo, const vb& qlo, const vb& hi, const vb& qhi) {
    for (int i = 0; i < 32; ++i) acc.v[i / 4] += int32_t(lo.v[i]) * qlo.v[i] + int32_t(hi.v[i]) * qhi.v[i];
    return acc;
  }
  static vi widen_add(vi acc, const vs& part) {
    for (int i = 0; i < 8; ++i) acc.v[i] += part.v[i];
    return acc;
  }
  static vi dot_i16(vi acc, const vq& a, const vq& b) {
    for (int i = 0; i < 8; ++i) acc.v[i] += int32_t(a.v[2 * i]) * b.v[2 * i] + int32_t(a.v[2 * i + 1]) * b.v[2 * i + 1];
    return acc;
  }
  // Blocks of 16 rows (rows_i4b), one row a lane.
  static constexpr int kBlockChains = 1;
  struct vk { int32_t v[16]; };
  static vk kzero() { return vk{}; }
  static vk kadd(vk a, const vk& b) { for (int i = 0; i < 16; ++i) a.v[i] += b.v[i]; return a; }
  struct Nib { uint8_t lo[64], hi[64]; };
  static Nib nibbles(const uint8_t* p) {
    Nib n;
    for (int i = 0; i < 64; ++i) {
      n.lo[i] = p[i] & 15;
      n.hi[i] = p[i] >> 4;
    }
    return n;
  }
  static void kdot(vk& lo, vk&, const Nib& n, int32_t qlo, int32_t qhi) {
    for (int i = 0; i < 16; ++i)
      for (int k = 0; k < 4; ++k)
        lo.v[i] += int32_t(n.lo[4 * i + k]) * int8_t(uint32_t(qlo) >> (8 * k)) +
                   int32_t(n.hi[4 * i + k]) * int8_t(uint32_t(qhi) >> (8 * k));
  }
  static void kscores(const vk& lo, const vk&, int32_t bias, const float* rowscale, float qscale, float* out, bool acc) {
    for (int i = 0; i < 16; ++i) {
      const float f = float(lo.v[i] - bias) * rowscale[i] * qscale;
      out[i] = acc ? out[i] + f : f;
    }
  }
  static int32_t ihsum(const vi& a) { int32_t s = 0; for (int i = 0; i < 8; ++i) s += a.v[i]; return s; }
  static void ihsum8(const vi* a, int32_t* out) { for (int i = 0; i < 8; ++i) out[i] = ihsum(a[i]); }
};

}  // namespace

const DotKernels kDotKernelsScalar = impl::make_table<Scalar>("scalar");

const DotKernels& active_dot_kernels() {
  switch (active_simd_level()) {
    case SimdLevel::AMX: return amx_dot_kernels();
    case SimdLevel::AVX512: return kDotKernelsAvx512;
    case SimdLevel::AVX2: return kDotKernelsAvx2;
    default: return kDotKernelsScalar;
  }
}

}  // namespace ivcr::search
