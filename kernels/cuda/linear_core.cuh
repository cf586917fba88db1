// Pieces of the chunkwise linear-attention family on the GPU, shared by attention_linear.cu and
// attention_loglinear.cu (the twin of kernels/cpu/linear_core.h): the row-major batched GEMM,
// the shape of a call, the work buffers, the feature maps and their backward, V' and the
// normaliser, the chunk states. Everything here has internal linkage (each including file
// gets its own copy and its own work buffers).
#pragma once
#include "../feature_maps.h"
#include "cuda_common.cuh"

// circulant FAVOR+ projection z [rows, m] = W xt of rows xt [rows, D] (cuFFT, circulant.cu), and
// its backward: dxt = W^T g (overwritten), dr += the gradient of the rows r (when dr)
extern "C" void circulant_project_cuda(float *z, const float *xt, const float *r_bd,
                                       const float *s_bd, int rows, int D, int m);
extern "C" void circulant_project_backward_cuda(float *dxt, float *dr, const float *g,
                                                const float *xt, const float *r_bd,
                                                const float *s_bd, int rows, int D, int m);

// Row-major C[M,N] = alpha op(A) op(B) + beta C for `batch` matrices at fixed strides: cuBLAS is
// column-major, where a row-major matrix is its transpose, so C^T = op(B)^T op(A)^T.
static void gemm_rm(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
                    long long sa, const float *B, int ldb, long long sb, float beta, float *C,
                    int ldc, long long sc, int batch) {
    CUBLAS_CHECK(mt_gemm_strided_batched(mt_cublas(), tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                                         ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B, ldb,
                                         sb, A, lda, sa, &beta, C, ldc, sc, batch));
}

struct LinShape {
    int B, T, C, H, D, m, Dv, L, nc, Tp, BH, map, normalize, qk_norm;
    int full;  // bidirectional: one chunk of length T and no L x L score blocks
    float eps, scale, max_len;
};

static LinShape lin_shape(const OpShape *s) {
    const LinearOpts lo = OPT_OF(LinearOpts, s);
    LinShape g;
    g.B = s->B, g.T = s->T, g.C = s->C, g.H = s->H, g.D = s->C / s->H;
    g.m = fmap_width_of(s);
    g.qk_norm = lo.qk_norm;
    g.scale = powf((float)g.D, -0.25f);  // Performer's d^(-1/4), as the CPU map
    g.max_len = (float)fmap_max_len(s);
    g.Dv = lo.normalize ? g.D + 1 : g.D;
    g.L = lo.chunk < 1 || lo.chunk > s->T ? s->T : lo.chunk;
    g.nc = (s->T + g.L - 1) / g.L, g.Tp = g.nc * g.L, g.BH = s->B * s->H;
    g.map = lo.feature_map, g.normalize = lo.normalize, g.eps = (float)lo.eps;
    g.full = 0;
    return g;
}

static bool random_features(const LinShape &g) {
    return g.map == FEATURE_FAVOR || g.map == FEATURE_CIRCULANT;
}

// Work buffers, grown on demand and kept: the trainer calls the op with the same shapes every
// step, so after the first step nothing is allocated.
struct Work {
    float *p, *f, *v, *n, *states, *tri, *dn, *dp, *df, *dv, *rstates;
    float *xt_q, *xt_k, *half_sq, *g;  // FAVOR+: scaled (normalised) q, k, |xt|^2 / 2, dxt
};
// maps_only: the feature_map op, which needs the features and their gradients but none of the
// chunk machinery (whose L x L blocks would be T x T there).
static Work work_for(const LinShape &g, bool backward, bool maps_only = false) {
    static float *bufs[15];
    static size_t have[15];
    size_t tm = (size_t)g.BH * g.Tp * g.m, tv = (size_t)g.BH * g.Tp * g.Dv;
    size_t st = (size_t)g.BH * g.nc * g.m * g.Dv, tri = (size_t)g.BH * g.nc * g.L * g.L;
    size_t rows = (size_t)g.BH * g.Tp, td = rows * g.D;
    Work w = {};
    if (!maps_only || backward)
        w.p = mt_cuda_grow(&bufs[0], &have[0], tm), w.f = mt_cuda_grow(&bufs[1], &have[1], tm);
    if (!maps_only) {
        w.v = mt_cuda_grow(&bufs[2], &have[2], tv), w.n = mt_cuda_grow(&bufs[3], &have[3], tv);
        w.states = mt_cuda_grow(&bufs[4], &have[4], st);
        if (!g.full) w.tri = mt_cuda_grow(&bufs[5], &have[5], tri);
    }
    if (backward) {
        w.dp = mt_cuda_grow(&bufs[7], &have[7], tm), w.df = mt_cuda_grow(&bufs[8], &have[8], tm);
        if (!maps_only) {
            w.dn = mt_cuda_grow(&bufs[6], &have[6], tv);
            w.dv = mt_cuda_grow(&bufs[9], &have[9], tv);
            w.rstates = mt_cuda_grow(&bufs[10], &have[10], st);
        }
    }
    if (random_features(g)) {
        w.xt_q = mt_cuda_grow(&bufs[11], &have[11], td),
        w.xt_k = mt_cuda_grow(&bufs[12], &have[12], td);
        w.half_sq = mt_cuda_grow(&bufs[13], &have[13], 2 * rows);
        // dxt = (dphi phi) W [rows, D]: wider than the features when m < D
        if (backward) w.g = mt_cuda_grow(&bufs[14], &have[14], rows * (g.m > g.D ? g.m : g.D));
    }
    return w;
}

// cosFormer's angle a_t = pi (t + 1) / (2M), as the CPU map.
static __device__ inline float cos_angle(const LinShape &g, int t) {
    return 1.5707963267948966f * (t + 1) / g.max_len;
}

// Feature j of the elementwise maps at position t from the head's row x (D values).
static __device__ inline float phi_elementwise(const LinShape &g, const float *x, int t, int j) {
    if (g.map == FEATURE_ELU1) return x[j] > 0 ? x[j] + 1 : expf(x[j]);
    if (g.map == FEATURE_RELU) return x[j] > 0 ? x[j] : 0.f;
    int i = j % g.D;  // cosFormer: relu(x) cos a_t | relu(x) sin a_t
    float r = x[i] > 0 ? x[i] : 0.f, a = cos_angle(g, t);
    return r * (j < g.D ? cosf(a) : sinf(a));
}

// V' [BH, Tp, Dv] from qkv [B,T,3C]; padding rows zero.
static __global__ void gather_values_kernel(float *v, const float *qkv, LinShape g) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)g.BH * g.Tp * g.Dv) return;
    int j = (int)(idx % g.Dv), t = (int)(idx / g.Dv % g.Tp), bh = (int)(idx / g.Dv / g.Tp);
    int b = bh / g.H, h = bh % g.H;
    const float *x = qkv + ((size_t)b * g.T + t) * 3 * g.C + 2 * g.C + h * g.D;
    v[idx] = t >= g.T ? 0.f : j < g.D ? x[j] : 1.f;  // column D: the normaliser's ones
}

// phi(q), phi(k) [BH, Tp, m] of the elementwise maps; padding rows zero.
static __global__ void gather_features_kernel(float *p, float *f, const float *qkv, LinShape g) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)g.BH * g.Tp * g.m) return;
    int j = (int)(idx % g.m), t = (int)(idx / g.m % g.Tp), bh = (int)(idx / g.m / g.Tp);
    int b = bh / g.H, h = bh % g.H;
    if (t >= g.T) {
        p[idx] = f[idx] = 0.f;
        return;
    }
    const float *x = qkv + ((size_t)b * g.T + t) * 3 * g.C + h * g.D;
    p[idx] = phi_elementwise(g, x, t, j);
    f[idx] = phi_elementwise(g, x + g.C, t, j);
}

// FAVOR+ inputs of one part (which = 0: q, 1: k), one block per row (bh, t): xt = scale * x,
// L2-normalised first when qk_norm, and half its squared norm; padding rows zero.
static __global__ void rf_inputs_kernel(float *xt, float *half_sq, const float *qkv, LinShape g,
                                        int which) {
    size_t row = blockIdx.x;
    int t = (int)(row % g.Tp), bh = (int)(row / g.Tp), b = bh / g.H, h = bh % g.H;
    float *o = xt + row * g.D;
    if (t >= g.T) {
        for (int i = threadIdx.x; i < g.D; i += blockDim.x) o[i] = 0.f;
        if (threadIdx.x == 0) half_sq[row] = 0.f;
        return;
    }
    const float *x = qkv + ((size_t)b * g.T + t) * 3 * g.C + which * g.C + h * g.D;
    float n2 = 0;
    for (int i = threadIdx.x; i < g.D; i += blockDim.x) n2 += x[i] * x[i];
    n2 = block_sum(n2);
    float mul = g.scale / (g.qk_norm ? fmaxf(sqrtf(n2), 1e-6f) : 1.f);
    float sq = 0;
    for (int i = threadIdx.x; i < g.D; i += blockDim.x) o[i] = x[i] * mul, sq += o[i] * o[i];
    sq = block_sum(sq);
    if (threadIdx.x == 0) half_sq[row] = sq / 2;
}

// phi = exp(z - |xt|^2 / 2) / sqrt(m) in place on z = xt W^T; padding rows zero (exp would not).
static __global__ void rf_exp_kernel(float *phi, const float *half_sq, LinShape g) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)g.BH * g.Tp * g.m) return;
    size_t row = idx / g.m;
    phi[idx] = (int)(row % g.Tp) >= g.T ? 0.f : expf(phi[idx] - half_sq[row]) * rsqrtf((float)g.m);
}

// Zero the strictly upper triangle (future positions) of every L x L chunk block.
static __global__ void causal_mask_kernel(float *tri, size_t blocks, int L) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= blocks * L * L) return;
    int s = (int)(idx % L), t = (int)(idx / L % L);
    if (s > t) tri[idx] = 0.f;
}

// In place over chunks, per (bh, element): x_c <- sum_{c'<c} x_c' (reverse: sum_{c'>c}).
static __global__ void exclusive_scan_kernel(float *x, int BH, int nc, int size, int reverse) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)BH * size) return;
    int e = (int)(idx % size), bh = (int)(idx / size);
    float run = 0;
    for (int i = 0; i < nc; i++) {
        int c = reverse ? nc - 1 - i : i;
        float *xc = x + ((size_t)bh * nc + c) * size + e;
        float mine = *xc;
        *xc = run;
        run += mine;
    }
}

static __global__ void finish_forward_kernel(float *out, float *den_bht, const float *n,
                                             LinShape g) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)g.BH * g.T * g.D) return;
    int j = (int)(idx % g.D), t = (int)(idx / g.D % g.T), bh = (int)(idx / g.D / g.T);
    const float *nr = n + ((size_t)bh * g.Tp + t) * g.Dv;
    float den = g.normalize ? nr[g.D] + g.eps : 1.f;
    if (g.normalize && j == 0) den_bht[(size_t)bh * g.T + t] = den;
    int b = bh / g.H, h = bh % g.H;
    out[((size_t)b * g.T + t) * g.C + h * g.D + j] = nr[j] / den;
}

// dN' from do: dn = do / den and dn[D] = -(do . o) / den; padding rows zero.
static __global__ void dn_kernel(float *dn, const float *dout, const float *out,
                                 const float *den_bht, LinShape g) {
    size_t row = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= (size_t)g.BH * g.Tp) return;
    int t = (int)(row % g.Tp), bh = (int)(row / g.Tp), b = bh / g.H, h = bh % g.H;
    float *d = dn + row * g.Dv;
    if (t >= g.T) {
        for (int j = 0; j < g.Dv; j++) d[j] = 0.f;
        return;
    }
    size_t o = ((size_t)b * g.T + t) * g.C + h * g.D;
    float den = g.normalize ? den_bht[(size_t)bh * g.T + t] : 1.f, dot = 0;
    for (int j = 0; j < g.D; j++) d[j] = dout[o + j] / den, dot += dout[o + j] * out[o + j];
    if (g.normalize) d[g.D] = -dot / den;
}

// Gradient of channel j of one part through an elementwise map (dphi: the row's m gradients).
static __device__ inline float dx_elementwise(const LinShape &g, float x, int t, int j, float phi_x,
                                              const float *dphi) {
    if (g.map == FEATURE_ELU1) return dphi[j] * (x > 0 ? 1.f : phi_x);
    if (g.map == FEATURE_RELU) return x > 0 ? dphi[j] : 0.f;
    float a = cos_angle(g, t);
    return x > 0 ? cosf(a) * dphi[j] + sinf(a) * dphi[g.D + j] : 0.f;
}

// dqkv += the gradient of V'[:, :D].
static __global__ void values_dx_kernel(float *dqkv, const float *dv, LinShape g) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)g.BH * g.T * g.D) return;
    int j = (int)(idx % g.D), t = (int)(idx / g.D % g.T), bh = (int)(idx / g.D / g.T);
    int b = bh / g.H, h = bh % g.H;
    size_t row = (size_t)bh * g.Tp + t;
    dqkv[((size_t)b * g.T + t) * 3 * g.C + 2 * g.C + h * g.D + j] += dv[row * g.Dv + j];
}

// dqkv += the gradients of phi(q), phi(k) through an elementwise map.
static __global__ void features_dx_kernel(float *dqkv, const float *qkv, const float *p,
                                          const float *f, const float *dp, const float *df,
                                          LinShape g) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)g.BH * g.T * g.D) return;
    int j = (int)(idx % g.D), t = (int)(idx / g.D % g.T), bh = (int)(idx / g.D / g.T);
    int b = bh / g.H, h = bh % g.H;
    size_t row = (size_t)bh * g.Tp + t, x = ((size_t)b * g.T + t) * 3 * g.C + h * g.D + j;
    size_t e = row * g.m + j;
    dqkv[x] += dx_elementwise(g, qkv[x], t, j, p[e], dp + row * g.m);
    dqkv[x + g.C] += dx_elementwise(g, qkv[x + g.C], t, j, f[e], df + row * g.m);
}

// g = dphi (.) phi, in place on dphi (FAVOR+ backward).
static __global__ void mul_kernel(float *dphi, const float *phi, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dphi[i] *= phi[i];
}

// FAVOR+ backward of one part, one block per real row: dxt = W^T g (in dxt_in, from a GEMM),
// d = (dxt - sum(g) xt) * scale, then through x / max(|x|, eps) when qk_norm; dqkv += it.
static __global__ void rf_backward_kernel(float *dqkv, const float *dxt_in, const float *gphi,
                                          const float *xt, const float *qkv, LinShape g,
                                          int which) {
    int bt = blockIdx.x, t = bt % g.T, bh = bt / g.T, b = bh / g.H, h = bh % g.H;
    size_t row = (size_t)bh * g.Tp + t;
    const float *x = qkv + ((size_t)b * g.T + t) * 3 * g.C + which * g.C + h * g.D;
    float *dx = dqkv + ((size_t)b * g.T + t) * 3 * g.C + which * g.C + h * g.D;
    float gsum = 0;
    for (int i = threadIdx.x; i < g.m; i += blockDim.x) gsum += gphi[row * g.m + i];
    gsum = block_sum(gsum);
    float n2 = 0, dot = 0;
    for (int i = threadIdx.x; i < g.D; i += blockDim.x) {
        float d = (dxt_in[row * g.D + i] - gsum * xt[row * g.D + i]) * g.scale;
        n2 += x[i] * x[i], dot += d * x[i];
    }
    n2 = block_sum(n2);
    dot = block_sum(dot);
    float n = sqrtf(n2);
    for (int i = threadIdx.x; i < g.D; i += blockDim.x) {
        float d = (dxt_in[row * g.D + i] - gsum * xt[row * g.D + i]) * g.scale;
        if (!g.qk_norm)
            dx[i] += d;
        else if (n <= 1e-6f)
            dx[i] += d / 1e-6f;
        else
            dx[i] += (d - dot / n * x[i] / n) / n;
    }
}

// Prefix states S_c (exclusive) of phi(K)^T V' per chunk.
static void chunk_states(const LinShape &g, const Work &w) {
    int batch = g.BH * g.nc, L = g.L, m = g.m, Dv = g.Dv;
    gemm_rm(true, false, m, Dv, L, 1, w.f, m, (long long)L * m, w.v, Dv, (long long)L * Dv, 0,
            w.states, Dv, (long long)m * Dv, batch);
    size_t n = (size_t)g.BH * m * Dv;
    exclusive_scan_kernel<<<ceil_div(n, 256), 256>>>(w.states, g.BH, g.nc, m * Dv, 0);
    CUDA_LAUNCH_CHECK();
}

// tri_c = tril(a_c b_c^T) for every chunk (a, b: [BH, Tp, K]).
static void causal_scores(const LinShape &g, float *tri, const float *a, const float *b, int K) {
    int batch = g.BH * g.nc, L = g.L;
    gemm_rm(false, true, L, L, K, 1, a, K, (long long)L * K, b, K, (long long)L * K, 0, tri, L,
            (long long)L * L, batch);
    size_t n = (size_t)batch * L * L;
    causal_mask_kernel<<<ceil_div(n, 256), 256>>>(tri, (size_t)batch, L);
    CUDA_LAUNCH_CHECK();
}

// phi(q), phi(k) into w.p, w.f [BH, Tp, m]. fmap: the map's parameters (FAVOR+: W [m, D];
// circulant: r, s [nb, D]).
static void features(const LinShape &g, const Work &w, const float *qkv, const float *const *fmap) {
    size_t nm = (size_t)g.BH * g.Tp * g.m;
    int rows = g.BH * g.Tp;
    if (!random_features(g)) {
        gather_features_kernel<<<ceil_div(nm, 256), 256>>>(w.p, w.f, qkv, g);
        CUDA_LAUNCH_CHECK();
    } else {
        float *xt[2] = {w.xt_q, w.xt_k}, *phi[2] = {w.p, w.f};
        for (int part = 0; part < 2; part++) {
            rf_inputs_kernel<<<rows, 128>>>(xt[part], w.half_sq + (size_t)part * rows, qkv, g,
                                            part);
            CUDA_LAUNCH_CHECK();
            // every row of every head against the shared projection: z = W xt [rows, m]
            if (g.map == FEATURE_FAVOR)
                gemm_rm(false, true, rows, g.m, g.D, 1, xt[part], g.D, 0, fmap[0], g.D, 0, 0,
                        phi[part], g.m, 0, 1);
            else
                circulant_project_cuda(phi[part], xt[part], fmap[0], fmap[1], rows, g.D, g.m);
            rf_exp_kernel<<<ceil_div(nm, 256), 256>>>(phi[part], w.half_sq + (size_t)part * rows,
                                                      g);
            CUDA_LAUNCH_CHECK();
        }
    }
}

// dqkv += the gradient through the map of dphi(q), dphi(k) in w.dp, w.df (overwritten), and
// the circulant map's dr into dfmap[0].
static void features_backward(const LinShape &g, const Work &w, float *dqkv, const float *qkv,
                              const float *const *fmap, float *const *dfmap) {
    size_t n = (size_t)g.BH * g.T * g.D, rows = (size_t)g.BH * g.Tp, nm = rows * g.m;
    if (!random_features(g)) {
        features_dx_kernel<<<ceil_div(n, 256), 256>>>(dqkv, qkv, w.p, w.f, w.dp, w.df, g);
        CUDA_LAUNCH_CHECK();
        return;
    }
    // FAVOR+: d phi_i / d xt = phi_i (w_i - xt), so dxt = W^T (dphi (.) phi) - sum(dphi (.) phi) xt
    float *dphi[2] = {w.dp, w.df}, *phi[2] = {w.p, w.f}, *xt[2] = {w.xt_q, w.xt_k};
    for (int part = 0; part < 2; part++) {
        mul_kernel<<<ceil_div(nm, 256), 256>>>(dphi[part], phi[part], nm);
        CUDA_LAUNCH_CHECK();
        // dxt [rows, D] = g [rows, m] W [m, D], into the work buffer w.g
        if (g.map == FEATURE_FAVOR)
            gemm_rm(false, false, (int)rows, g.D, g.m, 1, dphi[part], g.m, 0, fmap[0], g.D, 0, 0,
                    w.g, g.D, 0, 1);
        else
            circulant_project_backward_cuda(w.g, dfmap ? dfmap[0] : NULL, dphi[part], xt[part],
                                            fmap[0], fmap[1], (int)rows, g.D, g.m);
        rf_backward_kernel<<<g.BH * g.T, 128>>>(dqkv, w.g, dphi[part], xt[part], qkv, g, part);
        CUDA_LAUNCH_CHECK();
    }
}
