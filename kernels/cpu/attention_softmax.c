// Causal multi-head softmax attention (mixers.md section 1). One (batch, head) per OpenMP
// iteration; inside it BLAS does QK^T and PV (the OpenMP OpenBLAS runs single-threaded inside
// a parallel region, so the two levels of parallelism do not oversubscribe the cores).
// The probabilities P [B,H,T,T] are saved for backward: this is the CPU reference, where
// memory is cheap and recomputation would double the time.
#include <stdlib.h>
#include <string.h>

#include "../ops.h"
#include "../real.h"

void F(attention_softmax_forward)(real *out_btc, real *att_bhtt, const real *qkv_btc3, int B,
                                  int T, int C, int H) {
    int D = C / H, ld = 3 * C;
    real scale = 1 / sqrt((real)D);
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < B * H; bh++) {
        int b = bh / H, h = bh % H;
        const real *q = qkv_btc3 + (size_t)b * T * ld + h * D;
        const real *k = q + C, *v = q + 2 * C;
        real *att = att_bhtt + (size_t)bh * T * T;
        real *o = out_btc + (size_t)b * T * C + h * D;
        cblas_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, D, scale, q, ld, k, ld, 0, att,
                   T);
        for (int t = 0; t < T; t++) {
            real *row = att + (size_t)t * T;
            real mx = row[0];
            for (int j = 1; j <= t; j++) mx = row[j] > mx ? row[j] : mx;
            real sum = 0;
            for (int j = 0; j <= t; j++) {
                row[j] = exp(row[j] - mx);
                sum += row[j];
            }
            real inv = 1 / sum;
            for (int j = 0; j <= t; j++) row[j] *= inv;
            for (int j = t + 1; j < T; j++) row[j] = 0;  // the zeros make PV a plain GEMM
        }
        cblas_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, D, T, 1, att, T, v, ld, 0, o, C);
    }
}

// dV = P^T dO, dP = dO V^T, dS = P (.) (dP - rowsum(dP (.) P)), dQ = dS K s, dK = dS^T Q s.
void F(attention_softmax_backward)(real *dqkv_btc3, const real *dout_btc, const real *qkv_btc3,
                                   const real *att_bhtt, int B, int T, int C, int H) {
    int D = C / H, ld = 3 * C;
    real scale = 1 / sqrt((real)D);
#pragma omp parallel
    {
        real *ds = malloc(sizeof(real) * (size_t)T * T);
#pragma omp for schedule(static)
        for (int bh = 0; bh < B * H; bh++) {
            int b = bh / H, h = bh % H;
            size_t off = (size_t)b * T * ld + h * D;
            const real *q = qkv_btc3 + off, *k = q + C, *v = q + 2 * C;
            real *dq = dqkv_btc3 + off, *dk = dq + C, *dv = dq + 2 * C;
            const real *att = att_bhtt + (size_t)bh * T * T;
            const real *dout = dout_btc + (size_t)b * T * C + h * D;
            cblas_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, D, T, 1, att, T, dout, C, 1, dv,
                       ld);
            cblas_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, D, 1, dout, C, v, ld, 0, ds,
                       T);
            for (int t = 0; t < T; t++) {
                const real *p = att + (size_t)t * T;
                real *row = ds + (size_t)t * T;
                real dot = 0;
                for (int j = 0; j <= t; j++) dot += row[j] * p[j];
                for (int j = 0; j <= t; j++) row[j] = p[j] * (row[j] - dot);
                for (int j = t + 1; j < T; j++) row[j] = 0;
            }
            cblas_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, D, T, scale, ds, T, k, ld, 1,
                       dq, ld);
            cblas_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, D, T, scale, ds, T, q, ld, 1,
                       dk, ld);
        }
        free(ds);
    }
}
