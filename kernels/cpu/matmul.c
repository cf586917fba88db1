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
        cblas_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1, dout, OC, w, C, 1,
                   dinp, C);
    cblas_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, 1, dout, OC, inp, C, 1, dw, C);
}
