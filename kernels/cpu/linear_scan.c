// Chunked causal linear attention of one head (mixers.md section 0), the engine of the
// linear-attention family. Inside a chunk a masked L x L product, across chunks a running
// K x Dv state, all as BLAS products; the per-step states are never stored.
#include <stdlib.h>
#include <string.h>

#include "linear_core.h"

// tri[n,n] = a[n,K] b[n,K]^T with the strictly upper triangle (future positions) zeroed.
static void causal_scores(real *tri, const real *a, int lda, const real *b, int ldb, int n, int K) {
    cblas_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, K, 1, a, lda, b, ldb, 0, tri, n);
    for (int t = 0; t < n; t++)
        for (int s = t + 1; s < n; s++) tri[(size_t)t * n + s] = 0;
}

void F(la_forward)(int T, int K, int Dv, int L, const real *p, int ldp, const real *f, int ldf,
                   const real *v, int ldv, real *out, int ldo) {
    if (L < 1 || L > T) L = T;
    real *state = calloc((size_t)K * Dv, sizeof(real)), *tri = malloc(sizeof(real) * L * L);
    for (int t0 = 0; t0 < T; t0 += L) {
        int n = T - t0 < L ? T - t0 : L;
        const real *pc = p + (size_t)t0 * ldp, *fc = f + (size_t)t0 * ldf;
        const real *vc = v + (size_t)t0 * ldv;
        real *oc = out + (size_t)t0 * ldo;
        causal_scores(tri, pc, ldp, fc, ldf, n, K);
        cblas_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, Dv, K, 1, pc, ldp, state, Dv, 0,
                   oc, ldo);
        cblas_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, Dv, n, 1, tri, n, vc, ldv, 1, oc,
                   ldo);
        cblas_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, Dv, n, 1, fc, ldf, vc, ldv, 1, state,
                   Dv);
    }
    free(state);
    free(tri);
}

void F(la_backward)(int T, int K, int Dv, int L, const real *p, int ldp, const real *f, int ldf,
                    const real *v, int ldv, const real *dout, int lddo, real *dp, int lddp,
                    real *df, int lddf, real *dv, int lddv) {
    if (L < 1 || L > T) L = T;
    real *state = calloc((size_t)K * Dv, sizeof(real)), *tri = malloc(sizeof(real) * L * L);
    // Forward sweep with S = sum over earlier chunks of f^T v:
    // dp_c += dout_c S^T + tril(dout_c v_c^T) f_c.
    for (int t0 = 0; t0 < T; t0 += L) {
        int n = T - t0 < L ? T - t0 : L;
        const real *fc = f + (size_t)t0 * ldf, *vc = v + (size_t)t0 * ldv;
        const real *gc = dout + (size_t)t0 * lddo;
        real *dpc = dp + (size_t)t0 * lddp;
        causal_scores(tri, gc, lddo, vc, ldv, n, Dv);
        cblas_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, K, Dv, 1, gc, lddo, state, Dv, 1,
                   dpc, lddp);
        cblas_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, K, n, 1, tri, n, fc, ldf, 1, dpc,
                   lddp);
        cblas_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, Dv, n, 1, fc, ldf, vc, ldv, 1, state,
                   Dv);
    }
    // Reverse sweep with R = sum over later chunks of p^T dout (reusing state):
    // df_c += tril(dout_c v_c^T)^T p_c + v_c R^T,  dv_c += tril(p_c f_c^T)^T dout_c + f_c R.
    memset(state, 0, sizeof(real) * (size_t)K * Dv);
    for (int t0 = ((T - 1) / L) * L; t0 >= 0; t0 -= L) {
        int n = T - t0 < L ? T - t0 : L;
        const real *pc = p + (size_t)t0 * ldp, *fc = f + (size_t)t0 * ldf;
        const real *vc = v + (size_t)t0 * ldv, *gc = dout + (size_t)t0 * lddo;
        real *dfc = df + (size_t)t0 * lddf, *dvc = dv + (size_t)t0 * lddv;
        causal_scores(tri, gc, lddo, vc, ldv, n, Dv);
        cblas_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, K, n, 1, tri, n, pc, ldp, 1, dfc,
                   lddf);
        cblas_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, K, Dv, 1, vc, ldv, state, Dv, 1, dfc,
                   lddf);
        causal_scores(tri, pc, ldp, fc, ldf, n, K);
        cblas_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, Dv, n, 1, tri, n, gc, lddo, 1, dvc,
                   lddv);
        cblas_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, Dv, K, 1, fc, ldf, state, Dv, 1,
                   dvc, lddv);
        cblas_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, Dv, n, 1, pc, ldp, gc, lddo, 1,
                   state, Dv);
    }
    free(state);
    free(tri);
}

void F(la_full_forward)(int T, int K, int Dv, const real *p, int ldp, const real *f, int ldf,
                        const real *v, int ldv, real *out, int ldo) {
    real *state = malloc(sizeof(real) * (size_t)K * Dv);
    cblas_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, Dv, T, 1, f, ldf, v, ldv, 0, state, Dv);
    cblas_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, Dv, K, 1, p, ldp, state, Dv, 0, out,
               ldo);
    free(state);
}

void F(la_full_backward)(int T, int K, int Dv, const real *p, int ldp, const real *f, int ldf,
                         const real *v, int ldv, const real *dout, int lddo, real *dp, int lddp,
                         real *df, int lddf, real *dv, int lddv) {
    real *state = malloc(sizeof(real) * (size_t)K * Dv), *r = malloc(sizeof(real) * (size_t)K * Dv);
    cblas_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, Dv, T, 1, f, ldf, v, ldv, 0, state, Dv);
    cblas_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, Dv, T, 1, p, ldp, dout, lddo, 0, r, Dv);
    cblas_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, K, Dv, 1, dout, lddo, state, Dv, 1, dp,
               lddp);
    cblas_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, K, Dv, 1, v, ldv, r, Dv, 1, df, lddf);
    cblas_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, Dv, K, 1, f, ldf, r, Dv, 1, dv, lddv);
    free(state), free(r);
}
