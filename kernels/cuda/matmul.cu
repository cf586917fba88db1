// Dense layers through cuBLAS. Row-major X[m, n] is column-major X^T, so out = inp w^T
// (row-major) is out^T = w inp^T in cuBLAS's column-major terms.
#include "cuda_common.cuh"

extern "C" void matmul_forward_cuda(float *out, const float *inp, const float *w, int N, int C,
                                    int OC) {
    const float one = 1, zero = 0;
    CUBLAS_CHECK(mt_gemm(mt_cublas(), CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, &one, w, C, inp, C,
                             &zero, out, OC));
}

extern "C" void matmul_backward_cuda(float *dinp, float *dw, const float *dout, const float *inp,
                                     const float *w, int N, int C, int OC) {
    const float one = 1;
    if (dinp)  // dinp[N,C] += dout[N,OC] w[OC,C]
        CUBLAS_CHECK(mt_gemm(mt_cublas(), CUBLAS_OP_N, CUBLAS_OP_N, C, N, OC, &one, w, C, dout,
                                 OC, &one, dinp, C));
    // dw[OC,C] += dout^T[OC,N] inp[N,C]
    CUBLAS_CHECK(mt_gemm(mt_cublas(), CUBLAS_OP_N, CUBLAS_OP_T, C, OC, N, &one, inp, C, dout,
                             OC, &one, dw, C));
}
