#include "cuda_common.cuh"

// One block per row.
__global__ void rmsnorm_forward_kernel(float *out, float *rstd, const float *inp, const float *w,
                                       int C, float eps) {
    const float *x = inp + (size_t)blockIdx.x * C;
    float *y = out + (size_t)blockIdx.x * C;
    float ss = 0;
    for (int i = threadIdx.x; i < C; i += blockDim.x) ss += x[i] * x[i];
    float r = rsqrtf(block_sum(ss) / C + eps);
    for (int i = threadIdx.x; i < C; i += blockDim.x) y[i] = x[i] * r * w[i];
    if (threadIdx.x == 0) rstd[blockIdx.x] = r;
}

__global__ void rmsnorm_backward_dx_kernel(float *dinp, const float *dout, const float *inp,
                                           const float *w, const float *rstd, int C) {
    size_t row = (size_t)blockIdx.x * C;
    const float *x = inp + row, *dy = dout + row;
    float *dx = dinp + row, r = rstd[blockIdx.x], dot = 0;
    for (int i = threadIdx.x; i < C; i += blockDim.x) dot += dy[i] * w[i] * x[i];
    float k = block_sum(dot) * r * r * r / C;
    for (int i = threadIdx.x; i < C; i += blockDim.x) dx[i] += r * w[i] * dy[i] - k * x[i];
}

// dw = sum over rows: each block sums a slab of rows for 32 columns into partial[slab, C]
// (fixed order), then the slabs are summed in order: deterministic, unlike atomics.
enum { DW_ROWS_PER_SLAB = 256 };
__global__ void rmsnorm_dw_partial_kernel(float *partial, const float *dout, const float *inp,
                                          const float *rstd, int N, int C) {
    int i = blockIdx.x * blockDim.x + threadIdx.x, slab = blockIdx.y;
    if (i >= C) return;
    int lo = slab * DW_ROWS_PER_SLAB, hi = min(N, lo + DW_ROWS_PER_SLAB);
    float s = 0;
    for (int n = lo; n < hi; n++) s += dout[(size_t)n * C + i] * inp[(size_t)n * C + i] * rstd[n];
    partial[(size_t)slab * C + i] = s;
}

__global__ void sum_slabs_kernel(float *dw, const float *partial, int slabs, int C) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= C) return;
    float s = 0;
    for (int k = 0; k < slabs; k++) s += partial[(size_t)k * C + i];
    dw[i] += s;
}

extern "C" void rmsnorm_forward_cuda(float *out, float *rstd, const float *inp, const float *w,
                                     int N, int C, double eps) {
    rmsnorm_forward_kernel<<<N, 256>>>(out, rstd, inp, w, C, (float)eps);
    CUDA_LAUNCH_CHECK();
}

extern "C" void rmsnorm_backward_cuda(float *dinp, float *dw, const float *dout, const float *inp,
                                      const float *w, const float *rstd, int N, int C) {
    rmsnorm_backward_dx_kernel<<<N, 256>>>(dinp, dout, inp, w, rstd, C);
    CUDA_LAUNCH_CHECK();
    int slabs = ceil_div(N, DW_ROWS_PER_SLAB);
    float *partial;
    partial = (float *)mt_cuda_temp_alloc(sizeof(float) * (size_t)slabs * C);
    rmsnorm_dw_partial_kernel<<<dim3(ceil_div(C, 128), slabs), 128>>>(partial, dout, inp, rstd, N,
                                                                      C);
    CUDA_LAUNCH_CHECK();
    sum_slabs_kernel<<<ceil_div(C, 256), 256>>>(dw, partial, slabs, C);
    CUDA_LAUNCH_CHECK();
    mt_cuda_temp_free(partial, sizeof(float) * (size_t)slabs * C);
}
