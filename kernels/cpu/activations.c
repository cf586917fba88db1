// Pointwise activations: GELU (tanh form, as GPT-2; and the erf form, nn.GELU()'s default),
// SwiGLU, and the sigmoid output gate.
#include "../ops.h"
#include "../real.h"
#include "vexp.h"

#define GELU_K 0.7978845608028654  // sqrt(2/pi)

void F(gelu_forward)(real *out, const real *inp, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        real x = inp[i];
        // 0.5 (1 + tanh u) = sigmoid(2u): the same function, with one vectorised exp.
        real u = (real)GELU_K * (x + (real)0.044715 * x * x * x);
        out[i] = x * vsigmoid(2 * u);
    }
}

void F(gelu_backward)(real *dinp, const real *dout, const real *inp, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        real x = inp[i];
        real u = (real)GELU_K * (x + (real)0.044715 * x * x * x);
        // s = sigmoid(2u) = 0.5 (1 + tanh u) and 0.5 (1 - tanh^2 u) = 2 s (1 - s), with
        // 1 - s = e s for e = exp(-2u): no cancellation where s rounds to 1. The exponent is
        // capped at 80 (e^80 = 5.5e34): uncapped, x below about -9.4 made e = Inf, s = 0 and
        // e s = NaN, a NaN gradient for any unit that saturated that far (seen in training).
        real a = -2 * u;
        real e = vexp(a < 80 ? a : 80), s = 1 / (1 + e);
        real du = (real)GELU_K * (1 + 3 * (real)0.044715 * x * x);
        real d = s + 2 * x * (e * s) * s * du;
        // past |x| = 20 the derivative is 0 or 1 to any precision; there x^2 could overflow du
        d = x < -20 ? 0 : x > 20 ? 1 : d;
        dinp[i] += dout[i] * d;
    }
}

// x Phi(x) with Phi the normal CDF; d/dx = Phi(x) + x phi(x).
void F(gelu_erf_forward)(real *out, const real *inp, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        real x = inp[i];
        out[i] = x * vnormal_cdf(x);
    }
}

void F(gelu_erf_backward)(real *dinp, const real *dout, const real *inp, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        real x = inp[i];
        real cdf = vnormal_cdf(x);
        real pdf = vexp((real)-0.5 * x * x) * (real)(0.5 * M_2_SQRTPI * M_SQRT1_2);
        dinp[i] += dout[i] * (cdf + x * pdf);
    }
}

void F(swiglu_forward)(real *out, const real *inp, int N, int Fh) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const real *a = inp + (size_t)n * 2 * Fh, *b = a + Fh;
        real *y = out + (size_t)n * Fh;
        for (int i = 0; i < Fh; i++) y[i] = a[i] * vsigmoid(a[i]) * b[i];
    }
}

void F(swiglu_backward)(real *dinp, const real *dout, const real *inp, int N, int Fh) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const real *a = inp + (size_t)n * 2 * Fh, *b = a + Fh, *dy = dout + (size_t)n * Fh;
        real *da = dinp + (size_t)n * 2 * Fh, *db = da + Fh;
        for (int i = 0; i < Fh; i++) {
            real s = vsigmoid(a[i]);
            da[i] += dy[i] * b[i] * s * (1 + a[i] * (1 - s));
            db[i] += dy[i] * a[i] * s;
        }
    }
}

void F(gate_forward)(real *out, const real *gate_pre, const real *x, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = vsigmoid(gate_pre[i]) * x[i];
}

void F(gate_backward)(real *dgate_pre, real *dx, const real *dout, const real *gate_pre,
                      const real *x, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        real g = vsigmoid(gate_pre[i]);
        dx[i] += dout[i] * g;
        dgate_pre[i] += dout[i] * x[i] * g * (1 - g);
    }
}
