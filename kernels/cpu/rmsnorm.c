#include "../ops.h"
#include "../real.h"

void F(rmsnorm_forward)(real *out, real *rstd, const real *inp, const real *w, int N, int C,
                        double eps) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const real *x = inp + (size_t)n * C;
        real *y = out + (size_t)n * C;
        double ss = 0;  // double accumulator: the mean of squares must not lose the small terms
        for (int i = 0; i < C; i++) ss += (double)x[i] * x[i];
        real r = (real)(1.0 / sqrt(ss / C + eps));
        for (int i = 0; i < C; i++) y[i] = x[i] * r * w[i];
        rstd[n] = r;
    }
}

// y_i = x_i r w_i with r = (mean(x^2)+eps)^-1/2, so dr/dx_j = -r^3 x_j / C and
// dx_j = r w_j dy_j - (r^3 / C) x_j sum_i dy_i w_i x_i.
void F(rmsnorm_backward)(real *dinp, real *dw, const real *dout, const real *inp, const real *w,
                         const real *rstd, int N, int C) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const real *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
        real *dx = dinp + (size_t)n * C;
        real r = rstd[n];
        double dot = 0;
        for (int i = 0; i < C; i++) dot += (double)dy[i] * w[i] * x[i];
        real k = (real)(dot * r * r * r / C);
        for (int i = 0; i < C; i++) dx[i] += r * w[i] * dy[i] - k * x[i];
    }
    // The weight gradient is a sum over rows: kept serial so it is bitwise reproducible.
    for (int n = 0; n < N; n++) {
        const real *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
        real r = rstd[n];
        for (int i = 0; i < C; i++) dw[i] += dy[i] * x[i] * r;
    }
}
