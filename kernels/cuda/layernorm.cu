#include "cuda_common.cuh"

// nn.LayerNorm, as kernels/cpu/layernorm.c: one block per row, two passes (the variance as
// E[(x - mu)^2], which does not cancel when the mean is large next to the spread).
__global__ void layernorm_forward_kernel(float *out, float *mean, float *rstd, const float *inp,
                                         const float *w, const float *b, int C, float eps) {
    const float *x = inp + (size_t)blockIdx.x * C;
    float *y = out + (size_t)blockIdx.x * C;
    float s = 0;
    for (int i = threadIdx.x; i < C; i += blockDim.x) s += x[i];
    float mu = block_sum(s) / C, ss = 0;
    for (int i = threadIdx.x; i < C; i += blockDim.x) ss += (x[i] - mu) * (x[i] - mu);
    float r = rsqrtf(block_sum(ss) / C + eps);
    for (int i = threadIdx.x; i < C; i += blockDim.x) y[i] = (x[i] - mu) * r * w[i] + b[i];
    if (threadIdx.x == 0) mean[blockIdx.x] = mu, rstd[blockIdx.x] = r;
}

// dx = r (g - mean(g) - xh mean(g xh)), g = dy w, xh = (x - mu) r.
__global__ void layernorm_backward_dx_kernel(float *dinp, const float *dout, const float *inp,
                                             const float *w, const float *mean, const float *rstd,
                                             int C) {
    size_t row = (size_t)blockIdx.x * C;
    const float *x = inp + row, *dy = dout + row;
    float *dx = dinp + row, mu = mean[blockIdx.x], r = rstd[blockIdx.x], g = 0, gx = 0;
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        float gi = dy[i] * w[i];
        g += gi, gx += gi * (x[i] - mu) * r;
    }
    float g_mean = block_sum(g) / C, gx_mean = block_sum(gx) / C;
    for (int i = threadIdx.x; i < C; i += blockDim.x)
        dx[i] += r * (dy[i] * w[i] - g_mean - (x[i] - mu) * r * gx_mean);
}

// dw and db are sums over rows: each block sums a slab of rows for its columns into
// partial[slab, 2C] (dw then db, fixed order), then the slabs are summed in order:
// deterministic, unlike atomics.
enum { LN_ROWS_PER_SLAB = 256 };
__global__ void layernorm_dwdb_partial_kernel(float *partial, const float *dout, const float *inp,
                                              const float *mean, const float *rstd, int N, int C) {
    int i = blockIdx.x * blockDim.x + threadIdx.x, slab = blockIdx.y;
    if (i >= C) return;
    int lo = slab * LN_ROWS_PER_SLAB, hi = min(N, lo + LN_ROWS_PER_SLAB);
    float sw = 0, sb = 0;
    for (int n = lo; n < hi; n++) {
        float dy = dout[(size_t)n * C + i];
        sw += dy * (inp[(size_t)n * C + i] - mean[n]) * rstd[n], sb += dy;
    }
    partial[(size_t)slab * 2 * C + i] = sw;
    partial[(size_t)slab * 2 * C + C + i] = sb;
}

__global__ void layernorm_sum_slabs_kernel(float *dw, float *db, const float *partial, int slabs,
                                           int C) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= C) return;
    float sw = 0, sb = 0;
    for (int k = 0; k < slabs; k++)
        sw += partial[(size_t)k * 2 * C + i], sb += partial[(size_t)k * 2 * C + C + i];
    dw[i] += sw, db[i] += sb;
}

extern "C" void layernorm_forward_cuda(float *out, float *mean, float *rstd, const float *inp,
                                       const float *w, const float *b, int N, int C, double eps) {
    layernorm_forward_kernel<<<N, 256>>>(out, mean, rstd, inp, w, b, C, (float)eps);
    CUDA_LAUNCH_CHECK();
}

extern "C" void layernorm_backward_cuda(float *dinp, float *dw, float *db, const float *dout,
                                        const float *inp, const float *w, const float *mean,
                                        const float *rstd, int N, int C) {
    layernorm_backward_dx_kernel<<<N, 256>>>(dinp, dout, inp, w, mean, rstd, C);
    CUDA_LAUNCH_CHECK();
    int slabs = ceil_div(N, LN_ROWS_PER_SLAB);
    size_t bytes = sizeof(float) * (size_t)slabs * 2 * C;
    float *partial = (float *)mt_cuda_temp_alloc(bytes);
    layernorm_dwdb_partial_kernel<<<dim3(ceil_div(C, 128), slabs), 128>>>(partial, dout, inp, mean,
                                                                          rstd, N, C);
    CUDA_LAUNCH_CHECK();
    layernorm_sum_slabs_kernel<<<ceil_div(C, 256), 256>>>(dw, db, partial, slabs, C);
    CUDA_LAUNCH_CHECK();
    mt_cuda_temp_free(partial, bytes);
}
