// exp, sigmoid and the normal CDF written so that the compiler vectorises the loops that call
// them. glibc's expf/tanhf/erff are scalar calls: in the MLP's GELU they took a third of a
// training step at the small shapes of the users' experiments (docs/performance.md).
// Float builds (the trainer) use the polynomial forms below, accurate to about 1 ulp for exp
// and 2e-7 relative for the CDF; double builds (the gradient checks) use libm, so the checks
// keep their tolerances. Both are deterministic: same input, same bits, on any x86-64-v3.
#pragma once
#include <stdint.h>
#include <string.h>

#include "../real.h"

#ifdef MT_DOUBLE
static inline real vexp(real x) {
    return exp(x);
}
static inline real vnormal_cdf(real x) {
    return (real)0.5 * erfc(-x * (real)M_SQRT1_2);
}
#else
// exp(x) = 2^k * e^r with k = round(x / ln 2) and |r| <= ln 2 / 2; e^r by its Taylor series to
// r^7 (truncation < 6e-9 relative; 1.3 ulp measured). Below -87.3 it returns 0 (where exp is
// subnormal or 0) and above 88.72 infinity, as expf would, so FAVOR+'s overflows stay visible;
// NaN stays NaN, so a bad step still reaches the non-finite check. Inside, x is clamped so the
// int conversion is defined. The selects vectorise only under
// -fno-trapping-math (CMakeLists.txt), which changes no result.
static inline float vexp(float x) {
    float x_in = x;
    x = x > -87.3f ? x : -87.3f;
    x = x < 88.72f ? x : 88.72f;
    float kf = __builtin_rintf(x * 1.44269504088896341f);
    float r = x - kf * 0.693145751953125f;  // ln 2 split hi + lo: kf * hi is exact
    r = r - kf * 1.42860682030941723e-6f;
    float p = 1.0f / 5040;
    p = p * r + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    // 2^k as two normal floats 2^(k/2) 2^(k - k/2): k reaches -126 and 128 at the clamps.
    int32_t k = (int32_t)kf, k_half = k >> 1;
    int32_t bits1 = (k_half + 127) << 23, bits2 = (k - k_half + 127) << 23;
    float scale1, scale2;
    memcpy(&scale1, &bits1, sizeof scale1);
    memcpy(&scale2, &bits2, sizeof scale2);
    float e = p * scale1 * scale2;
    e = x_in < -87.3f ? 0.0f : e;
    e = x_in > 88.72f ? __builtin_inff() : e;
    return x_in == x_in ? e : x_in;
}

// Phi(x) = erfc(-x / sqrt 2) / 2 with erfc from the Chebyshev fit of Numerical Recipes
// (erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z / 2), fractional error < 1.2e-7 for z >= 0),
// and erfc(-z) = 2 - erfc(z) for the other half, as a select so the loop stays vector.
static inline float vnormal_cdf(float x) {
    float z = (x < 0 ? -x : x) * 0.70710678118654752f;
    float t = 1.0f / (1.0f + 0.5f * z);
    float p = 0.17087277f;
    p = p * t - 0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t - 1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t - 0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    p = p * t - 1.26551223f;
    float half_erfc = 0.5f * t * vexp(-z * z + p);  // Phi(-|x|)
    return x < 0 ? half_erfc : 1.0f - half_erfc;
}
#endif

static inline real vsigmoid(real x) {
    return 1 / (1 + vexp(-x));
}
