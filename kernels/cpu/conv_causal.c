// Causal depthwise convolution over time (the short convolution on q, k, v of modern
// linear-attention layers, e.g. fla's ShortConvolution, here without bias or activation):
//   out[b,t,c] = sum_{j<K} w[c,j] x[b, t-K+1+j, c],  x = 0 before the sequence start,
// so tap K-1 is the current token and no position sees the future.
#include <string.h>

#include "../ops.h"
#include "../real.h"

void F(conv_causal_forward)(real *out_btc, const real *x_btc, const real *w_ck, int B, int T,
                            int Ch, int K) {
#pragma omp parallel for schedule(static)
    for (int bt = 0; bt < B * T; bt++) {
        int t = bt % T;
        real *o = out_btc + (size_t)bt * Ch;
        memset(o, 0, sizeof(real) * Ch);
        for (int j = 0; j < K; j++) {
            int src = t - K + 1 + j;
            if (src < 0) continue;
            const real *x = x_btc + (size_t)(bt - t + src) * Ch;
            for (int c = 0; c < Ch; c++) o[c] += w_ck[(size_t)c * K + j] * x[c];
        }
    }
}

// dx by output position (each thread owns its rows); dw by channel (each thread owns its
// channels), so neither needs atomics.
void F(conv_causal_backward)(real *dx_btc, real *dw_ck, const real *dout_btc, const real *x_btc,
                             const real *w_ck, int B, int T, int Ch, int K) {
#pragma omp parallel for schedule(static)
    for (int bt = 0; bt < B * T; bt++) {
        int t = bt % T;
        real *dx = dx_btc + (size_t)bt * Ch;
        for (int j = 0; j < K; j++) {
            int dst = t + K - 1 - j;  // the output that read x[t] through tap j
            if (dst >= T) continue;
            const real *g = dout_btc + (size_t)(bt - t + dst) * Ch;
            for (int c = 0; c < Ch; c++) dx[c] += w_ck[(size_t)c * K + j] * g[c];
        }
    }
#pragma omp parallel for schedule(static)
    for (int c = 0; c < Ch; c++)
        for (int j = 0; j < K; j++) {
            real acc = 0;
            for (int b = 0; b < B; b++)
                for (int t = K - 1 - j; t < T; t++)
                    acc += dout_btc[((size_t)b * T + t) * Ch + c] *
                           x_btc[((size_t)b * T + t - K + 1 + j) * Ch + c];
            dw_ck[(size_t)c * K + j] += acc;
        }
}
