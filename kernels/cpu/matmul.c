// Dense layers through BLAS: the CPU reference and the bulk of CPU time, so no hand loops here.
#include "../ops.h"
#include "../real.h"

void F(matmul_forward)(real *out, const real *inp, const real *w, int N, int C, int OC) {
    cblas_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C, 1, inp, C, w, C, 0, out, OC);
}

// dinp may be NULL when the input needs no gradient (the first layer's embedding is a table
// lookup, so its gradient goes through embedding_backward instead).
void F(matmul_backward)(real *dinp, real *dw, const real *dout, const real *inp, const real *w,
                        int N, int C, int OC) {
    if (dinp)
        cblas_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1, dout, OC, w, C, 1, dinp,
                   C);
    cblas_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, 1, dout, OC, inp, C, 1, dw, C);
}

// A Linear's bias, as its own op so bias-free layers (madtrain's default) run the matmul alone:
// out[n, :] += b over N rows of OC, and db += the column sums of dout (serial over rows, so
// the sum is bitwise reproducible).
void F(bias_forward)(real *out, const real *b, int N, int OC) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) out[(size_t)n * OC + o] += b[o];
}

void F(bias_backward)(real *db, const real *dout, int N, int OC) {
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) db[o] += dout[(size_t)n * OC + o];
}
