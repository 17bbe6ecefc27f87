/* The native encoder's vector GELU (csrc/engine/gelu_avx2.h) against the double-precision GELU,
 * beside the float GELU over libm's erff that it replaced, on a grid over [-10, 10] and at the
 * edges. Prints one JSON object: each one's largest error in erf terms, |got - want| / (|x| / 2)
 * (the GELU's error is x/2 times erf's), and the largest absolute error; run by
 * tests/engine/test_native_encoder.py. */
#include <math.h>
#include <stdio.h>

#include "engine/gelu_avx2.h"

static double gelu_double(double x) { return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); }
static float gelu_libm(float x) { return 0.5f * x * (1.f + erff(x * 0.70710678118654752440f)); }

int main(void) {
    enum { N = 200001 };
    static float v[N], in[N];
    for (int i = 0; i < N; i++) in[i] = v[i] = -10.f + 20.f * (float)i / (float)(N - 1);
    ivcr_gelu_avx2(v, N - 3); /* a last partial vector too */
    ivcr_gelu_avx2(v + N - 3, 3);
    double vec_erf = 0, vec_abs = 0, libm_erf = 0, libm_abs = 0;
    for (int i = 0; i < N; i++) {
        const double x = in[i], want = gelu_double(x), half = fabs(x) / 2 > 1e-30 ? fabs(x) / 2 : 1e-30;
        const double dv = fabs(v[i] - want), dl = fabs(gelu_libm(in[i]) - want);
        vec_erf = fmax(vec_erf, dv / half);
        libm_erf = fmax(libm_erf, dl / half);
        vec_abs = fmax(vec_abs, dv);
        libm_abs = fmax(libm_abs, dl);
    }
    float edge[8] = {0.f, -0.f, 1e-30f, -1e-30f, 50.f, -50.f, INFINITY, 3.f};
    ivcr_gelu_avx2(edge, 8);
    printf("{\"vector_erf_error\": %.3g, \"vector_abs_error\": %.3g, \"libm_erf_error\": %.3g, "
           "\"libm_abs_error\": %.3g, \"edges\": [",
           vec_erf, vec_abs, libm_erf, libm_abs);
    for (int i = 0; i < 8; i++) { /* (JSON as Python reads it: Infinity, NaN) */
        if (isinf(edge[i])) printf("%s%s", edge[i] > 0 ? "Infinity" : "-Infinity", i < 7 ? ", " : "]}\n");
        else if (isnan(edge[i])) printf("NaN%s", i < 7 ? ", " : "]}\n");
        else printf("%.9g%s", edge[i], i < 7 ? ", " : "]}\n");
    }
    return 0;
}
