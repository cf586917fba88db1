// The trainer's float exp, sigmoid and normal CDF (kernels/cpu/vexp.h) against libm in double,
// and the float activations built on them against their formulas in double: the gradient
// checks run in double, where vexp.h is libm, so this is what checks the float path itself.
#include <math.h>
#include <stdio.h>

#include "../kernels/cpu/vexp.h"
#include "../kernels/ops.h"

static int failures = 0;

static void expect(int ok, const char *what, double got, double want) {
    if (!ok) {
        printf("FAIL %s: got %.9g, want %.9g\n", what, got, want);
        failures++;
    }
}

int main(void) {
    // exp: relative error within 2 ulp over the whole normal range, sampled densely.
    double worst = 0, worst_x = 0;
    for (float x = -87.3f; x < 88.72f; x += 0.000917f) {
        double want = exp((double)x), rel = fabs(vexp(x) - want) / want;
        if (rel > worst) worst = rel, worst_x = x;
    }
    printf("vexp: max relative error %.3g (%.2f ulp) at x = %.6g\n", worst, worst / 0x1p-23,
           worst_x);
    expect(worst <= 2 * 0x1p-23, "vexp relative error <= 2 ulp", worst, 2 * 0x1p-23);
    // The ends and the specials behave as expf's: 0 and infinity past the range, NaN kept.
    expect(vexp(0.0f) == 1.0f, "vexp(0)", vexp(0.0f), 1);
    expect(vexp(-100.0f) == 0.0f, "vexp(-100)", vexp(-100.0f), 0);
    expect(vexp(-INFINITY) == 0.0f, "vexp(-inf)", vexp(-INFINITY), 0);
    expect(isinf(vexp(100.0f)) && vexp(100.0f) > 0, "vexp(100)", vexp(100.0f), INFINITY);
    expect(isinf(vexp(INFINITY)), "vexp(inf)", vexp(INFINITY), INFINITY);
    expect(isnan(vexp(NAN)), "vexp(nan)", vexp(NAN), NAN);
    expect(isnan(vsigmoid(NAN)), "vsigmoid(nan)", vsigmoid(NAN), NAN);
    expect(vsigmoid(-200.0f) == 0.0f && vsigmoid(200.0f) == 1.0f, "vsigmoid(+-200)",
           vsigmoid(-200.0f), 0);

    // Normal CDF: absolute error (what x * Phi(x) sees) within 3e-7 on [-12, 12].
    double worst_cdf = 0;
    for (float x = -12.0f; x < 12.0f; x += 0.000371f) {
        double want = 0.5 * erfc(-(double)x / sqrt(2.0));
        double err = fabs(vnormal_cdf(x) - want);
        if (err > worst_cdf) worst_cdf = err;
    }
    printf("vnormal_cdf: max absolute error %.3g\n", worst_cdf);
    expect(worst_cdf <= 3e-7, "vnormal_cdf absolute error", worst_cdf, 3e-7);
    expect(isnan(vnormal_cdf(NAN)), "vnormal_cdf(nan)", vnormal_cdf(NAN), NAN);

    // The float GELUs (both forms) and their derivatives against double formulas.
    enum { N = 4001 };
    static float x[N], y[N], dy[N], ones[N];
    for (int i = 0; i < N; i++) x[i] = -10 + 20.0f * i / (N - 1), ones[i] = 1;
    double e_fwd = 0, e_bwd = 0, e_fwd_erf = 0, e_bwd_erf = 0;
    gelu_forward_f32(y, x, N);
    for (int i = 0; i < N; i++) dy[i] = 0;
    gelu_backward_f32(dy, ones, x, N);
    for (int i = 0; i < N; i++) {
        double v = x[i], u = sqrt(2 / M_PI) * (v + 0.044715 * v * v * v), th = tanh(u);
        double du = sqrt(2 / M_PI) * (1 + 3 * 0.044715 * v * v);
        e_fwd = fmax(e_fwd, fabs(y[i] - 0.5 * v * (1 + th)) / (1 + fabs(v)));
        e_bwd = fmax(e_bwd, fabs(dy[i] - (0.5 * (1 + th) + 0.5 * v * (1 - th * th) * du)));
    }
    gelu_erf_forward_f32(y, x, N);
    for (int i = 0; i < N; i++) dy[i] = 0;
    gelu_erf_backward_f32(dy, ones, x, N);
    for (int i = 0; i < N; i++) {
        double v = x[i], cdf = 0.5 * erfc(-v / sqrt(2.0)), pdf = exp(-0.5 * v * v) / sqrt(2 * M_PI);
        e_fwd_erf = fmax(e_fwd_erf, fabs(y[i] - v * cdf) / (1 + fabs(v)));
        e_bwd_erf = fmax(e_bwd_erf, fabs(dy[i] - (cdf + v * pdf)));
    }
    // Saturated units: finite, and 0 / 1 to float precision, far past the exp's range (an
    // uncapped exp(-2u) gave NaN below x = -9.4 and stopped training runs).
    static const float far[] = {-9.5f, -12, -50, -1e4f, -1e20f, 12, 50, 1e4f, 1e20f};
    enum { NF = sizeof(far) / sizeof(far[0]) };
    float yf[NF], dyf[NF] = {0}, onesf[NF];
    for (int i = 0; i < NF; i++) onesf[i] = 1;
    gelu_forward_f32(yf, far, NF);
    gelu_backward_f32(dyf, onesf, far, NF);
    for (int i = 0; i < NF; i++) {
        double want_y = far[i] < 0 ? 0 : far[i], want_d = far[i] < 0 ? 0 : 1;
        double err = fmax(fabs(yf[i] - want_y) / (1 + fabs(far[i])), fabs(dyf[i] - want_d));
        char what[64];
        snprintf(what, sizeof(what), "gelu (tanh) at x = %g: value and derivative", far[i]);
        expect(isfinite(yf[i]) && isfinite(dyf[i]) && err <= 1e-6, what, err, 1e-6);
    }
    printf("gelu tanh: forward %.3g, derivative %.3g; gelu erf: forward %.3g, derivative %.3g\n",
           e_fwd, e_bwd, e_fwd_erf, e_bwd_erf);
    expect(e_fwd <= 1e-6 && e_bwd <= 1e-6, "gelu (tanh) float error", fmax(e_fwd, e_bwd), 1e-6);
    expect(e_fwd_erf <= 1e-6 && e_bwd_erf <= 1e-6, "gelu (erf) float error",
           fmax(e_fwd_erf, e_bwd_erf), 1e-6);
    printf(failures ? "%d failure(s)\n" : "all ok\n", failures);
    return failures != 0;
}
