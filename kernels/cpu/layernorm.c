#include "../ops.h"
#include "../real.h"

// PyTorch's nn.LayerNorm (biased variance, eps inside the square root), so a port of a PyTorch
// model computes the same numbers. mean[N] and rstd[N] are saved for backward.
void F(layernorm_forward)(real *out, real *mean, real *rstd, const real *inp, const real *w,
                          const real *b, int N, int C, double eps) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const real *x = inp + (size_t)n * C;
        real *y = out + (size_t)n * C;
        // Two passes in double: the variance as E[(x - mu)^2], not E[x^2] - mu^2, which cancels
        // when the mean is large next to the spread.
        double mu = 0, var = 0;
        for (int i = 0; i < C; i++) mu += x[i];
        mu /= C;
        for (int i = 0; i < C; i++) var += ((double)x[i] - mu) * ((double)x[i] - mu);
        real r = (real)(1.0 / sqrt(var / C + eps));
        for (int i = 0; i < C; i++) y[i] = (real)((x[i] - (real)mu) * r) * w[i] + b[i];
        mean[n] = (real)mu, rstd[n] = r;
    }
}

// With xh = (x - mu) r and g = dy w: dx = r (g - mean(g) - xh mean(g xh)) (the mean and the
// variance both depend on every x_j); dw += dy xh, db += dy.
void F(layernorm_backward)(real *dinp, real *dw, real *db, const real *dout, const real *inp,
                           const real *w, const real *mean, const real *rstd, int N, int C) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const real *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
        real *dx = dinp + (size_t)n * C;
        real mu = mean[n], r = rstd[n];
        double g_mean = 0, gx_mean = 0;
        for (int i = 0; i < C; i++) {
            double g = (double)dy[i] * w[i];
            g_mean += g, gx_mean += g * ((x[i] - mu) * r);
        }
        g_mean /= C, gx_mean /= C;
        for (int i = 0; i < C; i++) {
            real xh = (x[i] - mu) * r;
            dx[i] += r * (dy[i] * w[i] - (real)g_mean - xh * (real)gx_mean);
        }
    }
    // The parameter gradients are sums over rows: kept serial so they are bitwise reproducible.
    for (int n = 0; n < N; n++) {
        const real *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
        real mu = mean[n], r = rstd[n];
        for (int i = 0; i < C; i++) dw[i] += dy[i] * ((x[i] - mu) * r), db[i] += dy[i];
    }
}
