// Causal linear attention, chunkwise, the twin of kernels/cpu/attention_linear.c for the
// elementwise feature maps (elu1, relu). Per (batch, head) and chunk c of length L:
//   S_c = sum_{c' < c} phi(K_c')^T V'_c'            (states: one batched GEMM per chunk, then
//                                                    an exclusive prefix over chunks)
//   N'_c = phi(Q_c) S_c + tril(phi(Q_c) phi(K_c)^T) V'_c
//   o = N'[:, :D] / (N'[:, D] + eps)                 (V' = [V | 1] carries the normaliser)
// Every product is one strided-batched cuBLAS call over B*H*chunks; the sequence is padded to
// whole chunks with zero rows, which add nothing. As on the CPU only the normaliser is saved;
// features and states are recomputed in backward.
#include "cuda_common.cuh"

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
    int B, T, C, H, D, Dv, L, nc, Tp, BH, map, normalize;
    float eps;
};

static LinShape lin_shape(const OpShape *s) {
    LinShape g;
    g.B = s->B, g.T = s->T, g.C = s->C, g.H = s->H, g.D = s->C / s->H;
    g.Dv = s->normalize ? g.D + 1 : g.D;
    g.L = s->chunk < 1 || s->chunk > s->T ? s->T : s->chunk;
    g.nc = (s->T + g.L - 1) / g.L, g.Tp = g.nc * g.L, g.BH = s->B * s->H;
    g.map = s->feature_map, g.normalize = s->normalize, g.eps = (float)s->eps;
    return g;
}

// Work buffers, grown on demand and kept: the trainer calls the op with the same shapes every
// step, so after the first step nothing is allocated.
struct Work {
    float *p, *f, *v, *n, *states, *tri, *dn, *dp, *df, *dv, *rstates;
};
static float *grow(float **buf, size_t *have, size_t want) {
    if (want > *have) {
        if (*buf) CUDA_CHECK(cudaFree(*buf));
        CUDA_CHECK(cudaMalloc((void **)buf, sizeof(float) * want));
        *have = want;
    }
    return *buf;
}
static Work work_for(const LinShape &g, bool backward) {
    static float *bufs[11];
    static size_t have[11];
    size_t tm = (size_t)g.BH * g.Tp * g.D, tv = (size_t)g.BH * g.Tp * g.Dv;
    size_t st = (size_t)g.BH * g.nc * g.D * g.Dv, tri = (size_t)g.BH * g.nc * g.L * g.L;
    Work w;
    w.p = grow(&bufs[0], &have[0], tm), w.f = grow(&bufs[1], &have[1], tm);
    w.v = grow(&bufs[2], &have[2], tv), w.n = grow(&bufs[3], &have[3], tv);
    w.states = grow(&bufs[4], &have[4], st), w.tri = grow(&bufs[5], &have[5], tri);
    w.dn = w.dp = w.df = w.dv = w.rstates = NULL;
    if (backward) {
        w.dn = grow(&bufs[6], &have[6], tv), w.dp = grow(&bufs[7], &have[7], tm);
        w.df = grow(&bufs[8], &have[8], tm), w.dv = grow(&bufs[9], &have[9], tv);
        w.rstates = grow(&bufs[10], &have[10], st);
    }
    return w;
}

__device__ inline float phi(int map, float x) {
    return map == FEATURE_ELU1 ? (x > 0 ? x + 1 : expf(x)) : (x > 0 ? x : 0.f);
}
__device__ inline float dphi_dx(int map, float x, float phi_x) {
    return map == FEATURE_ELU1 ? (x > 0 ? 1.f : phi_x) : (x > 0 ? 1.f : 0.f);
}

// qkv [B,T,3C] -> phi(q), phi(k) [BH, Tp, D] and V' [BH, Tp, Dv]; padding rows are zero.
__global__ void gather_kernel(float *p, float *f, float *v, const float *qkv, LinShape g) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)g.BH * g.Tp * g.Dv) return;
    int j = (int)(idx % g.Dv), t = (int)(idx / g.Dv % g.Tp), bh = (int)(idx / g.Dv / g.Tp);
    int b = bh / g.H, h = bh % g.H;
    size_t row = ((size_t)bh * g.Tp + t);
    bool real_row = t < g.T;
    const float *x = qkv + ((size_t)b * g.T + t) * 3 * g.C + h * g.D;
    if (j < g.D) {
        p[row * g.D + j] = real_row ? phi(g.map, x[j]) : 0.f;
        f[row * g.D + j] = real_row ? phi(g.map, x[g.C + j]) : 0.f;
        v[row * g.Dv + j] = real_row ? x[2 * g.C + j] : 0.f;
    } else {
        v[row * g.Dv + j] = real_row ? 1.f : 0.f;  // the normaliser's ones column
    }
}

// Zero the strictly upper triangle (future positions) of every L x L chunk block.
__global__ void causal_mask_kernel(float *tri, size_t blocks, int L) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= blocks * L * L) return;
    int s = (int)(idx % L), t = (int)(idx / L % L);
    if (s > t) tri[idx] = 0.f;
}

// In place over chunks, per (bh, element): x_c <- sum_{c'<c} x_c' (reverse: sum_{c'>c}).
__global__ void exclusive_scan_kernel(float *x, int BH, int nc, int size, int reverse) {
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

__global__ void finish_forward_kernel(float *out, float *den_bht, const float *n, LinShape g) {
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
__global__ void dn_kernel(float *dn, const float *dout, const float *out, const float *den_bht,
                          LinShape g) {
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

// dqkv += the gradients of phi(q), phi(k) through the map and of V'[:, :D].
__global__ void scatter_kernel(float *dqkv, const float *qkv, const float *p, const float *f,
                               const float *dp, const float *df, const float *dv, LinShape g) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)g.BH * g.T * g.D) return;
    int j = (int)(idx % g.D), t = (int)(idx / g.D % g.T), bh = (int)(idx / g.D / g.T);
    int b = bh / g.H, h = bh % g.H;
    size_t row = (size_t)bh * g.Tp + t, x = ((size_t)b * g.T + t) * 3 * g.C + h * g.D + j;
    size_t e = row * g.D + j;
    dqkv[x] += dp[e] * dphi_dx(g.map, qkv[x], p[e]);
    dqkv[x + g.C] += df[e] * dphi_dx(g.map, qkv[x + g.C], f[e]);
    dqkv[x + 2 * g.C] += dv[row * g.Dv + j];
}

// Prefix states S_c (exclusive) of phi(K)^T V' per chunk.
static void chunk_states(const LinShape &g, const Work &w) {
    int batch = g.BH * g.nc, L = g.L, D = g.D, Dv = g.Dv;
    gemm_rm(true, false, D, Dv, L, 1, w.f, D, (long long)L * D, w.v, Dv, (long long)L * Dv, 0,
            w.states, Dv, (long long)D * Dv, batch);
    size_t n = (size_t)g.BH * D * Dv;
    exclusive_scan_kernel<<<ceil_div(n, 256), 256>>>(w.states, g.BH, g.nc, D * Dv, 0);
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

static void prepare(const LinShape &g, const Work &w, const float *qkv) {
    size_t n = (size_t)g.BH * g.Tp * g.Dv;
    gather_kernel<<<ceil_div(n, 256), 256>>>(w.p, w.f, w.v, qkv, g);
    CUDA_LAUNCH_CHECK();
    chunk_states(g, w);
}

extern "C" int attention_linear_check_cuda(const OpShape *s, char *err, size_t errlen) {
    if (s->feature_map == FEATURE_ELU1 || s->feature_map == FEATURE_RELU) return 0;
    const char *names[] = {"elu1", "relu", "favor", "circulant", "cosformer"};
    snprintf(err, errlen, "feature map %s has no cuda kernel yet (elu1 and relu have); use device: cpu",
             s->feature_map >= 0 && s->feature_map < 5 ? names[s->feature_map] : "?");
    return -1;
}

extern "C" void attention_linear_forward_cuda(float *out_btc, float *den_bht,
                                              const float *qkv_btc3, const OpShape *s) {
    LinShape g = lin_shape(s);
    Work w = work_for(g, false);
    prepare(g, w, qkv_btc3);
    int batch = g.BH * g.nc, L = g.L, D = g.D, Dv = g.Dv;
    // N' = P S + tril(P F^T) V'
    gemm_rm(false, false, L, Dv, D, 1, w.p, D, (long long)L * D, w.states, Dv, (long long)D * Dv,
            0, w.n, Dv, (long long)L * Dv, batch);
    causal_scores(g, w.tri, w.p, w.f, D);
    gemm_rm(false, false, L, Dv, L, 1, w.tri, L, (long long)L * L, w.v, Dv, (long long)L * Dv, 1,
            w.n, Dv, (long long)L * Dv, batch);
    size_t n = (size_t)g.BH * g.T * g.D;
    finish_forward_kernel<<<ceil_div(n, 256), 256>>>(out_btc, den_bht, w.n, g);
    CUDA_LAUNCH_CHECK();
}

// The CPU form's two sweeps as batched products (kernels/cpu/linear_scan.c):
//   dP_c = dN_c S_c^T + tril(dN_c V_c^T) F_c
//   dF_c = tril(dN_c V_c^T)^T P_c + V_c R_c^T,   R_c = sum_{c' > c} P_c'^T dN_c'
//   dV_c = tril(P_c F_c^T)^T dN_c + F_c R_c
extern "C" void attention_linear_backward_cuda(float *dqkv_btc3, const float *dout_btc,
                                               const float *out_btc, const float *den_bht,
                                               const float *qkv_btc3, const OpShape *s) {
    LinShape g = lin_shape(s);
    Work w = work_for(g, true);
    prepare(g, w, qkv_btc3);
    int batch = g.BH * g.nc, L = g.L, D = g.D, Dv = g.Dv;
    long long sm = (long long)L * D, sv = (long long)L * Dv, ss = (long long)D * Dv;
    long long st = (long long)L * L;
    size_t rows = (size_t)g.BH * g.Tp;
    dn_kernel<<<ceil_div(rows, 256), 256>>>(w.dn, dout_btc, out_btc, den_bht, g);
    CUDA_LAUNCH_CHECK();
    // R: per-chunk P^T dN, then the exclusive suffix over chunks
    gemm_rm(true, false, D, Dv, L, 1, w.p, D, sm, w.dn, Dv, sv, 0, w.rstates, Dv, ss, batch);
    size_t n_st = (size_t)g.BH * D * Dv;
    exclusive_scan_kernel<<<ceil_div(n_st, 256), 256>>>(w.rstates, g.BH, g.nc, D * Dv, 1);
    CUDA_LAUNCH_CHECK();
    // G = tril(dN V^T)
    causal_scores(g, w.tri, w.dn, w.v, Dv);
    gemm_rm(false, true, L, D, Dv, 1, w.dn, Dv, sv, w.states, Dv, ss, 0, w.dp, D, sm, batch);
    gemm_rm(false, false, L, D, L, 1, w.tri, L, st, w.f, D, sm, 1, w.dp, D, sm, batch);
    gemm_rm(true, false, L, D, L, 1, w.tri, L, st, w.p, D, sm, 0, w.df, D, sm, batch);
    gemm_rm(false, true, L, D, Dv, 1, w.v, Dv, sv, w.rstates, Dv, ss, 1, w.df, D, sm, batch);
    // A = tril(P F^T)
    causal_scores(g, w.tri, w.p, w.f, D);
    gemm_rm(true, false, L, Dv, L, 1, w.tri, L, st, w.dn, Dv, sv, 0, w.dv, Dv, sv, batch);
    gemm_rm(false, false, L, Dv, D, 1, w.f, D, sm, w.rstates, Dv, ss, 1, w.dv, Dv, sv, batch);
    size_t n = (size_t)g.BH * g.T * g.D;
    scatter_kernel<<<ceil_div(n, 256), 256>>>(dqkv_btc3, qkv_btc3, w.p, w.f, w.dp, w.df, w.dv, g);
    CUDA_LAUNCH_CHECK();
}
