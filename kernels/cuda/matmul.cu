// Dense layers through cuBLAS. Row-major X[m, n] is column-major X^T, so out = inp w^T
// (row-major) is out^T = w inp^T in cuBLAS's column-major terms.
#include "cuda_common.cuh"

extern "C" void matmul_forward_cuda(float *out, const float *inp, const float *w, int N, int C,
                                    int OC) {
    const float one = 1, zero = 0;
    CUBLAS_CHECK(mt_gemm(mt_cublas(), CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, &one, w, C, inp, C, &zero,
                         out, OC));
}

extern "C" void matmul_backward_cuda(float *dinp, float *dw, const float *dout, const float *inp,
                                     const float *w, int N, int C, int OC) {
    const float one = 1;
    if (dinp)  // dinp[N,C] += dout[N,OC] w[OC,C]
        CUBLAS_CHECK(mt_gemm(mt_cublas(), CUBLAS_OP_N, CUBLAS_OP_N, C, N, OC, &one, w, C, dout, OC,
                             &one, dinp, C));
    // dw[OC,C] += dout^T[OC,N] inp[N,C]
    CUBLAS_CHECK(mt_gemm(mt_cublas(), CUBLAS_OP_N, CUBLAS_OP_T, C, OC, N, &one, inp, C, dout, OC,
                         &one, dw, C));
}

// A Linear's bias (kernels/cpu/matmul.c): out[n, :] += b.
__global__ void bias_forward_kernel(float *out, const float *b, size_t n, int OC) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] += b[i % OC];
}

// db = column sums of dout: slabs of rows into partial[slab, OC], then the slabs in order
// (deterministic, unlike atomics).
enum { BIAS_ROWS_PER_SLAB = 256 };
__global__ void bias_partial_kernel(float *partial, const float *dout, int N, int OC) {
    int o = blockIdx.x * blockDim.x + threadIdx.x, slab = blockIdx.y;
    if (o >= OC) return;
    int lo = slab * BIAS_ROWS_PER_SLAB, hi = min(N, lo + BIAS_ROWS_PER_SLAB);
    float s = 0;
    for (int n = lo; n < hi; n++) s += dout[(size_t)n * OC + o];
    partial[(size_t)slab * OC + o] = s;
}

__global__ void bias_sum_slabs_kernel(float *db, const float *partial, int slabs, int OC) {
    int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= OC) return;
    float s = 0;
    for (int k = 0; k < slabs; k++) s += partial[(size_t)k * OC + o];
    db[o] += s;
}

extern "C" void bias_forward_cuda(float *out, const float *b, int N, int OC) {
    size_t n = (size_t)N * OC;
    bias_forward_kernel<<<ceil_div(n, 256), 256>>>(out, b, n, OC);
    CUDA_LAUNCH_CHECK();
}

extern "C" void bias_backward_cuda(float *db, const float *dout, int N, int OC) {
    int slabs = ceil_div(N, BIAS_ROWS_PER_SLAB);
    size_t bytes = sizeof(float) * (size_t)slabs * OC;
    float *partial = (float *)mt_cuda_temp_alloc(bytes);
    bias_partial_kernel<<<dim3(ceil_div(OC, 128), slabs), 128>>>(partial, dout, N, OC);
    CUDA_LAUNCH_CHECK();
    bias_sum_slabs_kernel<<<ceil_div(OC, 256), 256>>>(db, partial, slabs, OC);
    CUDA_LAUNCH_CHECK();
    mt_cuda_temp_free(partial, bytes);
}
