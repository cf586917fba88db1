// The circulant FAVOR+ projection by cuFFT, the twin of circ_project / circ_backward_row in
// kernels/cpu/feature_maps.c. W stacks nb = ceil(m / D) blocks C(r_b) diag(s_b), C[i][j] =
// r[(j - i) mod D] (first-row convention), the first nb D - m rows of the last block dropped:
//   C(r) u = IFFT(conj(FFT(r)) (.) FFT(u)),   C(r)^T g = IFFT(FFT(r) (.) FFT(g)),
//   d/dr <g, C(r) u> = IFFT(conj(FFT(g)) (.) FFT(u)).
// Every row and block is one batched real-to-complex transform of length D.
#include "cufft_plans.cuh"

__device__ inline int first_row(int b, int nb, int D, int m) {
    return b == nb - 1 ? nb * D - m : 0;
}

// u[row, b, i] = s_b[i] xt[row, i]
__global__ void circ_sign_kernel(float *u, const float *xt, const float *s_bd, int rows, int nb,
                                 int D) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)rows * nb * D) return;
    int i = (int)(idx % D), b = (int)(idx / D % nb);
    size_t row = idx / D / nb;
    u[idx] = s_bd[(size_t)b * D + i] * xt[row * D + i];
}

// spec[row, b, k] *= conj(R_b[k]) (conj = 1) or R_b[k] (conj = 0)
__global__ void circ_mul_kernel(cufftComplex *spec, const cufftComplex *r_spec, int rows, int nb,
                                int bins, int conj) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)rows * nb * bins) return;
    int k = (int)(idx % bins), b = (int)(idx / bins % nb);
    cufftComplex a = spec[idx], r = r_spec[(size_t)b * bins + k];
    float ri = conj ? -r.y : r.y;
    spec[idx] = make_cuComplex(a.x * r.x - a.y * ri, a.x * ri + a.y * r.x);
}

// z[row, b D + i - first_row(b)] = y[row, b, i] / D for the rows block b keeps
__global__ void circ_gather_kernel(float *z, const float *y, int rows, int nb, int D, int m) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)rows * nb * D) return;
    int i = (int)(idx % D), b = (int)(idx / D % nb);
    size_t row = idx / D / nb;
    int r0 = first_row(b, nb, D, m);
    if (i >= r0) z[row * m + (size_t)b * D + i - r0] = y[idx] / D;
}

// u[row, b, i] = g[row, b D + i - first_row(b)] / D, zero above the kept rows
__global__ void circ_scatter_kernel(float *u, const float *g, int rows, int nb, int D, int m) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)rows * nb * D) return;
    int i = (int)(idx % D), b = (int)(idx / D % nb);
    size_t row = idx / D / nb;
    int r0 = first_row(b, nb, D, m);
    u[idx] = i < r0 ? 0.f : g[row * m + (size_t)b * D + i - r0] / D;
}

// dxt[row, i] = sum_b s_b[i] y[row, b, i]
__global__ void circ_sum_blocks_kernel(float *dxt, const float *y, const float *s_bd, int rows,
                                       int nb, int D) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)rows * D) return;
    int i = (int)(idx % D);
    size_t row = idx / D;
    float acc = 0;
    for (int b = 0; b < nb; b++) acc += s_bd[(size_t)b * D + i] * y[(row * nb + b) * D + i];
    dxt[idx] = acc;
}

// acc[b, k] = sum over rows of conj(G[row, b, k]) X[row, b, k]: one block per (b, k), a
// fixed-order sum (the same on every rank).
__global__ void circ_dr_spectrum_kernel(cufftComplex *acc, const cufftComplex *G,
                                        const cufftComplex *X, int rows, int nb, int bins) {
    int bk = blockIdx.x, b = bk / bins, k = bk % bins;
    float re = 0, im = 0;
    for (int row = threadIdx.x; row < rows; row += blockDim.x) {
        size_t e = ((size_t)row * nb + b) * bins + k;
        cufftComplex g = G[e], x = X[e];
        re += g.x * x.x + g.y * x.y;  // conj(g) x
        im += g.x * x.y - g.y * x.x;
    }
    re = block_sum(re);
    im = block_sum(im);
    if (threadIdx.x == 0) acc[bk] = make_cuComplex(re, im);
}

__global__ void add_kernel_(float *dst, const float *src, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] += src[i];
}

struct CircWork {
    float *u, *y, *dr, *r;
    cufftComplex *spec, *spec2, *r_spec, *acc;
};

static CircWork circ_work(int rows, int nb, int D) {
    static float *bufs[8];
    static size_t have[8];
    int bins = D / 2 + 1;
    size_t n = (size_t)rows * nb * D, nc = (size_t)rows * nb * bins * 2;
    CircWork w;
    w.u = mt_cuda_grow(&bufs[0], &have[0], n);
    w.y = mt_cuda_grow(&bufs[1], &have[1], n);
    w.spec = (cufftComplex *)mt_cuda_grow(&bufs[2], &have[2], nc);
    w.spec2 = (cufftComplex *)mt_cuda_grow(&bufs[3], &have[3], nc);
    w.r_spec = (cufftComplex *)mt_cuda_grow(&bufs[4], &have[4], (size_t)nb * bins * 2);
    w.acc = (cufftComplex *)mt_cuda_grow(&bufs[5], &have[5], (size_t)nb * bins * 2);
    w.dr = mt_cuda_grow(&bufs[6], &have[6], (size_t)nb * D);
    w.r = mt_cuda_grow(&bufs[7], &have[7], (size_t)nb * D);
    return w;
}

// cuFFT wants its buffers aligned to the complex type, and r sits in the flat parameter buffer
// at any float offset: transform an aligned copy (which also leaves the parameters untouched).
static void r_spectra(const CircWork &w, const float *r_bd, int nb, int D) {
    CUDA_CHECK(cudaMemcpyAsync(w.r, r_bd, sizeof(float) * nb * D, cudaMemcpyDeviceToDevice, 0));
    CUFFT_CHECK(cufftExecR2C(mt_cufft_plan(D, nb, CUFFT_R2C), w.r, w.r_spec));
}

extern "C" void circulant_project_cuda(float *z, const float *xt, const float *r_bd,
                                       const float *s_bd, int rows, int D, int m) {
    int nb = (m + D - 1) / D, bins = D / 2 + 1, batch = rows * nb;
    CircWork w = circ_work(rows, nb, D);
    r_spectra(w, r_bd, nb, D);
    size_t n = (size_t)batch * D, nc = (size_t)batch * bins;
    circ_sign_kernel<<<ceil_div(n, 256), 256>>>(w.u, xt, s_bd, rows, nb, D);
    CUDA_LAUNCH_CHECK();
    CUFFT_CHECK(cufftExecR2C(mt_cufft_plan(D, batch, CUFFT_R2C), w.u, w.spec));
    circ_mul_kernel<<<ceil_div(nc, 256), 256>>>(w.spec, w.r_spec, rows, nb, bins, 1);
    CUDA_LAUNCH_CHECK();
    CUFFT_CHECK(cufftExecC2R(mt_cufft_plan(D, batch, CUFFT_C2R), w.spec, w.y));
    circ_gather_kernel<<<ceil_div(n, 256), 256>>>(z, w.y, rows, nb, D, m);
    CUDA_LAUNCH_CHECK();
}

extern "C" void circulant_project_backward_cuda(float *dxt, float *dr, const float *g,
                                                const float *xt, const float *r_bd,
                                                const float *s_bd, int rows, int D, int m) {
    int nb = (m + D - 1) / D, bins = D / 2 + 1, batch = rows * nb;
    CircWork w = circ_work(rows, nb, D);
    r_spectra(w, r_bd, nb, D);
    size_t n = (size_t)batch * D, nc = (size_t)batch * bins;
    circ_scatter_kernel<<<ceil_div(n, 256), 256>>>(w.u, g, rows, nb, D, m);
    CUDA_LAUNCH_CHECK();
    CUFFT_CHECK(cufftExecR2C(mt_cufft_plan(D, batch, CUFFT_R2C), w.u, w.spec));  // G = FFT(g) / D
    if (dr) {
        circ_sign_kernel<<<ceil_div(n, 256), 256>>>(w.u, xt, s_bd, rows, nb, D);
        CUDA_LAUNCH_CHECK();
        CUFFT_CHECK(
            cufftExecR2C(mt_cufft_plan(D, batch, CUFFT_R2C), w.u, w.spec2));  // X = FFT(s xt)
        circ_dr_spectrum_kernel<<<nb * bins, 256>>>(w.acc, w.spec, w.spec2, rows, nb, bins);
        CUDA_LAUNCH_CHECK();
        // conj(G) X is the spectrum of a real signal: the half-spectrum inverse is exact
        CUFFT_CHECK(cufftExecC2R(mt_cufft_plan(D, nb, CUFFT_C2R), w.acc, w.dr));
        add_kernel_<<<ceil_div((size_t)nb * D, 256), 256>>>(dr, w.dr, (size_t)nb * D);
        CUDA_LAUNCH_CHECK();
    }
    circ_mul_kernel<<<ceil_div(nc, 256), 256>>>(w.spec, w.r_spec, rows, nb, bins, 0);
    CUDA_LAUNCH_CHECK();
    CUFFT_CHECK(cufftExecC2R(mt_cufft_plan(D, batch, CUFFT_C2R), w.spec, w.y));
    circ_sum_blocks_kernel<<<ceil_div((size_t)rows * D, 256), 256>>>(dxt, w.y, s_bd, rows, nb, D);
    CUDA_LAUNCH_CHECK();
}
