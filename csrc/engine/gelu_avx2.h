/* GELU, x/2 (1 + erf(x / sqrt 2)), eight floats at a time (AVX2 + FMA), for the native text
 * encoder (e5_float.c): libm's erff, one value a call, took 12 % of the encoder's time.
 *
 * erf is Abramowitz & Stegun's formula 7.1.26 (Hastings' approximation):
 *   erf(z) = 1 - t (a1 + t (a2 + t (a3 + t (a4 + t a5)))) e^(-z^2),  t = 1 / (1 + p z),  z >= 0,
 * whose error is at most 1.5e-7 for every z (1.39e-7 measured against the double erf), odd for
 * z < 0. Below z = 1/2, where that absolute error is a large part of a small erf (and the GELU
 * near 0), erf is its Maclaurin series instead, to z^13 (next term < 4e-10 of it). e^(-z^2)
 * reduces to 2^n e^r with |r| <= ln 2 / 2 and takes e^r from its Taylor polynomial of degree 7
 * (next term < 6e-9). The GELU's error is x/2 times erf's, which is what libm's erff
 * gives as well once 1 + erf cancels for negative x: tests/engine/gelu_test.c holds both to the
 * double-precision GELU.
 *
 * Every value goes through the same vector arithmetic (a last partial vector is padded), so a
 * value's GELU does not depend on where it sits in the array: a text's rows stay the same to the
 * bit alone and in a batch. */
#ifndef IVCR_GELU_AVX2_H
#define IVCR_GELU_AVX2_H
#include <immintrin.h>
#include <stddef.h>
#include <string.h>

/* e^y for y in [-87, 0]. */
static inline __m256 ivcr_exp_nonpositive_avx2(__m256 y) {
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(y, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    /* r = y - n ln 2, ln 2 in two parts so that n * hi is exact */
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), y);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187e-06f), r);
    __m256 p = _mm256_set1_ps(1.f / 5040.f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 720.f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 120.f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 24.f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 6.f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
    const __m256i scale = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(scale));
}

static inline __m256 ivcr_gelu8_avx2(__m256 x) {
    const __m256 sign = _mm256_set1_ps(-0.f);
    /* |x| / sqrt 2, capped at 4: erf(4) rounds to 1 in float, and the cap keeps e^(-z^2) normal */
    const __m256 z = _mm256_min_ps(_mm256_mul_ps(_mm256_andnot_ps(sign, x), _mm256_set1_ps(0.70710678118654752f)),
                                   _mm256_set1_ps(4.f));
    const __m256 t = _mm256_div_ps(_mm256_set1_ps(1.f), _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), z, _mm256_set1_ps(1.f)));
    __m256 s = _mm256_set1_ps(1.061405429f);
    s = _mm256_fmadd_ps(s, t, _mm256_set1_ps(-1.453152027f));
    s = _mm256_fmadd_ps(s, t, _mm256_set1_ps(1.421413741f));
    s = _mm256_fmadd_ps(s, t, _mm256_set1_ps(-0.284496736f));
    s = _mm256_fmadd_ps(s, t, _mm256_set1_ps(0.254829592f));
    s = _mm256_mul_ps(s, t);
    const __m256 e = _mm256_fnmadd_ps(s, ivcr_exp_nonpositive_avx2(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(z, z))),
                                      _mm256_set1_ps(1.f));
    /* z < 1/2: 2/sqrt(pi) z (1 - z^2/3 + z^4/10 - z^6/42 + z^8/216 - z^10/1320 + z^12/9360) */
    const __m256 z2 = _mm256_mul_ps(z, z);
    __m256 m = _mm256_set1_ps(1.f / 9360.f);
    m = _mm256_fmadd_ps(m, z2, _mm256_set1_ps(-1.f / 1320.f));
    m = _mm256_fmadd_ps(m, z2, _mm256_set1_ps(1.f / 216.f));
    m = _mm256_fmadd_ps(m, z2, _mm256_set1_ps(-1.f / 42.f));
    m = _mm256_fmadd_ps(m, z2, _mm256_set1_ps(1.f / 10.f));
    m = _mm256_fmadd_ps(m, z2, _mm256_set1_ps(-1.f / 3.f));
    m = _mm256_fmadd_ps(m, z2, _mm256_set1_ps(1.f));
    m = _mm256_mul_ps(_mm256_mul_ps(m, z), _mm256_set1_ps(1.12837916709551257f));
    const __m256 small = _mm256_cmp_ps(z, _mm256_set1_ps(0.5f), _CMP_LT_OQ);
    const __m256 erf = _mm256_or_ps(_mm256_blendv_ps(e, m, small), _mm256_and_ps(sign, x)); /* erf(-z) = -erf(z) */
    return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), _mm256_add_ps(_mm256_set1_ps(1.f), erf));
}

/* v[i] = GELU(v[i]) for i < n, in place. */
static inline void ivcr_gelu_avx2(float *v, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(v + i, ivcr_gelu8_avx2(_mm256_loadu_ps(v + i)));
    if (i < n) {
        float pad[8] = {0};
        memcpy(pad, v + i, (n - i) * sizeof(float));
        _mm256_storeu_ps(pad, ivcr_gelu8_avx2(_mm256_loadu_ps(pad)));
        memcpy(v + i, pad, (n - i) * sizeof(float));
    }
}

#endif
