// Log-linear attention, the twin of kernels/cpu/attention_loglinear.c, every feature map. Per
// (batch, head), chunks of Lc = 2^c positions (aligned, so in-chunk levels are those of the
// in-chunk indices):
//   - in a chunk: the masked, level-weighted product (lambda_i^(level(i XOR j)) (p_i . f_j)) V';
//   - across chunks: leaf states N_0[j] = F_j^T V'_j and a segment tree of exact pairwise sums;
//     chunk ct reads, for every set bit h of ct, node (ct >> h) XOR 1 of height h, weighted by
//     its level c + 1 + h.
// Every product is one strided-batched cuBLAS call over B*H*chunks: the nodes each chunk reads
// at height h are first gathered into a per-chunk buffer (zero where the bit is not set).
// Backward runs the tree transposed: node gradients gathered from their readers in a fixed
// order, pushed down to the leaves, turned into dF, dV' there.
#include "../attention_loglinear.h"
#include "linear_core.cuh"

#define MAX_LEVELS 32

struct LogShape {
    LinShape g;
    int levels, cbits, heights, n_up;  // n_up: nodes of heights >= 1
    int up_off[32], count[32];         // first node of height h (>= 1) in the tree; nodes per h
};

static int bit_len(unsigned x) {
    return x ? 32 - __builtin_clz(x) : 0;
}

static LogShape log_shape(const OpShape *s) {
    LogShape q = {};
    q.g = lin_shape(s);
    q.g.L = loglinear_pow2_chunk(s);
    q.g.nc = (s->T + q.g.L - 1) / q.g.L, q.g.Tp = q.g.nc * q.g.L;
    q.levels = loglinear_levels(s);
    if (s->T < 1 || q.levels > MAX_LEVELS)
        mt_cuda_fail("attention_loglinear", "sequence length out of range", __FILE__, __LINE__);
    q.cbits = bit_len((unsigned)q.g.L) - 1;
    q.heights = q.g.nc > 1 ? bit_len((unsigned)(q.g.nc - 1)) : 0;
    q.n_up = 0;
    for (int h = 0; h < q.heights; h++) {
        q.count[h] = (q.g.nc + (1 << h) - 1) >> h;
        q.up_off[h] = h ? q.n_up : 0;
        if (h) q.n_up += q.count[h];
    }
    return q;
}

static __device__ inline int level_of(unsigned x, int levels) {
    int l = x ? 32 - __clz((int)x) : 0;
    return l < levels ? l : levels - 1;
}

// Node (h, id) of head bh: leaves (h = 0) in `leaves` [BH, nc, m Dv], the rest in `up`.
static __device__ inline float *node_at(float *leaves, float *up, const LogShape &q, int bh, int h,
                                        int id) {
    size_t sz = (size_t)q.g.m * q.g.Dv;
    if (!h) return leaves + ((size_t)bh * q.g.nc + id) * sz;
    return up + ((size_t)bh * q.n_up + q.up_off[h] + id) * sz;
}

// lambda = softplus(x W_x^T + b) [BH, Tp, levels] from lam_pre [B, T, H, levels]; pads zero.
static __global__ void lambda_kernel(float *lam, const float *pre, const float *bias, LogShape q) {
    const LinShape &g = q.g;
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)g.BH * g.Tp * q.levels) return;
    int l = (int)(idx % q.levels), t = (int)(idx / q.levels % g.Tp);
    int bh = (int)(idx / q.levels / g.Tp), b = bh / g.H, h = bh % g.H;
    if (t >= g.T) {
        lam[idx] = 0.f;
        return;
    }
    float x = pre[(((size_t)b * g.T + t) * g.H + h) * q.levels + l] + bias[h * q.levels + l];
    lam[idx] = x > 20.f ? x : log1pf(expf(x));
}

// node(h, i) = node(h-1, 2i) + node(h-1, 2i+1) (when that child exists)
static __global__ void build_up_kernel(float *leaves, float *up, LogShape q, int h) {
    size_t sz = (size_t)q.g.m * q.g.Dv;
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)q.g.BH * q.count[h] * sz) return;
    size_t e = idx % sz;
    int i = (int)(idx / sz % q.count[h]), bh = (int)(idx / sz / q.count[h]);
    float v = node_at(leaves, up, q, bh, h - 1, 2 * i)[e];
    if (2 * i + 1 < q.count[h - 1]) v += node_at(leaves, up, q, bh, h - 1, 2 * i + 1)[e];
    node_at(leaves, up, q, bh, h, i)[e] = v;
}

// gathered[bh, ct] = node(h, (ct >> h) ^ 1) where bit h of ct is set, else zero
static __global__ void gather_nodes_kernel(float *gathered, float *leaves, float *up, LogShape q,
                                           int h) {
    size_t sz = (size_t)q.g.m * q.g.Dv;
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)q.g.BH * q.g.nc * sz) return;
    size_t e = idx % sz;
    int ct = (int)(idx / sz % q.g.nc), bh = (int)(idx / sz / q.g.nc);
    gathered[idx] = (ct >> h) & 1 ? node_at(leaves, up, q, bh, h, (ct >> h) ^ 1)[e] : 0.f;
}

// In-chunk weights: s[i][j] = j <= i ? s * lambda_i^(level(i ^ j)) : 0
static __global__ void level_weight_kernel(float *s, const float *lam, LogShape q) {
    const LinShape &g = q.g;
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)g.BH * g.nc * g.L * g.L) return;
    int j = (int)(idx % g.L), i = (int)(idx / g.L % g.L);
    size_t chunk = idx / g.L / g.L, row = chunk * g.L + i;  // = bh * Tp + t
    s[idx] = j <= i ? s[idx] * lam[row * q.levels + level_of((unsigned)(i ^ j), q.levels)] : 0.f;
}

// n[row] += lambda_row^(level of height h) tmp[row] on the rows of chunks with bit h set
static __global__ void add_tree_read_kernel(float *n, const float *tmp, const float *lam,
                                            LogShape q, int h) {
    const LinShape &g = q.g;
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)g.BH * g.Tp * g.Dv) return;
    size_t row = idx / g.Dv;
    int ct = (int)(row % g.Tp) / g.L;
    if (!((ct >> h) & 1)) return;
    int l = q.cbits + h + 1 < q.levels ? q.cbits + h + 1 : q.levels - 1;
    n[idx] += lam[row * q.levels + l] * tmp[idx];
}

// Backward in-chunk, one thread per row i of a chunk: dlam_i^(l) = sum over j <= i at level l
// of S (.) G (written, the first contribution), then S, G scaled by the weights, zero above.
static __global__ void level_weight_backward_kernel(float *dlam, float *S, float *G,
                                                    const float *lam, LogShape q) {
    const LinShape &g = q.g;
    size_t row = (size_t)blockIdx.x * blockDim.x + threadIdx.x;  // = bh * Tp + t
    if (row >= (size_t)g.BH * g.Tp) return;
    int i = (int)(row % g.L);
    float acc[MAX_LEVELS];
    for (int l = 0; l < q.levels; l++) acc[l] = 0.f;
    float *s = S + row * g.L, *gr = G + row * g.L;
    const float *lr = lam + row * q.levels;
    for (int j = 0; j < g.L; j++) {
        if (j > i) {
            s[j] = gr[j] = 0.f;
            continue;
        }
        int l = level_of((unsigned)(i ^ j), q.levels);
        acc[l] += s[j] * gr[j];
        s[j] *= lr[l], gr[j] *= lr[l];
    }
    for (int l = 0; l < q.levels; l++) dlam[row * q.levels + l] = acc[l];
}

// Tree read backward at height h, one thread per row: dlam^(l_h) += dN' . tmp, and
// tmpw = lambda^(l_h) dN' (zero on rows of chunks that do not read at this height).
static __global__ void tree_read_backward_kernel(float *dlam, float *tmpw, const float *tmp,
                                                 const float *dn, const float *lam, LogShape q,
                                                 int h) {
    const LinShape &g = q.g;
    size_t row = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= (size_t)g.BH * g.Tp) return;
    int ct = (int)(row % g.Tp) / g.L;
    bool reads = (ct >> h) & 1;
    int l = q.cbits + h + 1 < q.levels ? q.cbits + h + 1 : q.levels - 1;
    float d = 0, w = reads ? lam[row * q.levels + l] : 0.f;
    for (int k = 0; k < g.Dv; k++) {
        float dnk = dn[row * g.Dv + k];
        d += dnk * tmp[row * g.Dv + k];
        tmpw[row * g.Dv + k] = w * dnk;
    }
    if (reads) dlam[row * q.levels + l] += d;
}

// dnode(h, id) = sum of the per-chunk gradients of its readers, chunks [(id+1) << h, (id+2) << h)
// (only even ids are read), in chunk order.
static __global__ void scatter_nodes_kernel(float *dleaves, float *dup, const float *dgathered,
                                            LogShape q, int h) {
    size_t sz = (size_t)q.g.m * q.g.Dv;
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)q.g.BH * q.count[h] * sz) return;
    size_t e = idx % sz;
    int id = (int)(idx / sz % q.count[h]), bh = (int)(idx / sz / q.count[h]);
    float acc = 0;
    if (!(id & 1))
        for (int ct = (id + 1) << h; ct < ((id + 2) << h) && ct < q.g.nc; ct++)
            acc += dgathered[((size_t)bh * q.g.nc + ct) * sz + e];
    node_at(dleaves, dup, q, bh, h, id)[e] = acc;
}

// A parent is the sum of its children: each child receives the parent's gradient.
static __global__ void push_down_kernel(float *dleaves, float *dup, LogShape q, int h) {
    size_t sz = (size_t)q.g.m * q.g.Dv;
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)q.g.BH * q.count[h - 1] * sz) return;
    size_t e = idx % sz;
    int c = (int)(idx / sz % q.count[h - 1]), bh = (int)(idx / sz / q.count[h - 1]);
    node_at(dleaves, dup, q, bh, h - 1, c)[e] += node_at(dleaves, dup, q, bh, h, c >> 1)[e];
}

// dlam_pre += dlam sigmoid(pre + bias) on the real rows
static __global__ void lambda_backward_kernel(float *dpre, const float *dlam, const float *pre,
                                              const float *bias, LogShape q) {
    const LinShape &g = q.g;
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;  // over [B, T, H, levels]
    if (idx >= (size_t)g.B * g.T * g.H * q.levels) return;
    int l = (int)(idx % q.levels), h = (int)(idx / q.levels % g.H);
    int t = (int)(idx / q.levels / g.H % g.T), b = (int)(idx / q.levels / g.H / g.T);
    float x = pre[idx] + bias[h * q.levels + l];
    dpre[idx] += dlam[(((size_t)b * g.H + h) * g.Tp + t) * q.levels + l] / (1.f + expf(-x));
}

// dbias[h, l] += sum over (b, t) of the same, one block per (h, l): a fixed-order sum.
static __global__ void bias_backward_kernel(float *dbias, const float *dlam, const float *pre,
                                            const float *bias, LogShape q) {
    const LinShape &g = q.g;
    int h = blockIdx.x / q.levels, l = blockIdx.x % q.levels;
    float acc = 0;
    for (int bt = threadIdx.x; bt < g.B * g.T; bt += blockDim.x) {
        int b = bt / g.T, t = bt % g.T;
        float x = pre[(((size_t)b * g.T + t) * g.H + h) * q.levels + l] + bias[blockIdx.x];
        acc += dlam[(((size_t)b * g.H + h) * g.Tp + t) * q.levels + l] / (1.f + expf(-x));
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) dbias[blockIdx.x] += acc;
}

struct LogWork {
    float *lam, *up, *gathered, *s2, *tmp, *dlam, *dup, *dleaves, *dgathered, *tmpw;
};

static LogWork log_work(const LogShape &q, bool backward) {
    static float *bufs[10];
    static size_t have[10];
    const LinShape &g = q.g;
    size_t rows = (size_t)g.BH * g.Tp, sz = (size_t)g.m * g.Dv;
    size_t chunks = (size_t)g.BH * g.nc, up = (size_t)g.BH * (q.n_up ? q.n_up : 1) * sz;
    LogWork w = {};
    w.lam = mt_cuda_grow(&bufs[0], &have[0], rows * q.levels);
    w.up = mt_cuda_grow(&bufs[1], &have[1], up);
    w.gathered = mt_cuda_grow(&bufs[2], &have[2], chunks * sz);
    w.tmp = mt_cuda_grow(&bufs[3], &have[3], rows * g.Dv);
    if (backward) {
        w.s2 = mt_cuda_grow(&bufs[4], &have[4], chunks * g.L * g.L);
        w.dlam = mt_cuda_grow(&bufs[5], &have[5], rows * q.levels);
        w.dup = mt_cuda_grow(&bufs[6], &have[6], up);
        w.dgathered = mt_cuda_grow(&bufs[8], &have[8], chunks * sz);
        w.tmpw = mt_cuda_grow(&bufs[9], &have[9], rows * g.Dv);
    }
    return w;
}

#define GRID(n) ceil_div((long long)(n), 256), 256

// Features, V', lambda, the leaves and the tree above them.
static void log_prepare(const LogShape &q, const Work &w, const LogWork &lw, const float *qkv,
                        const float *lam_pre, const float *lam_bias, const float *const *fmap) {
    const LinShape &g = q.g;
    int batch = g.BH * g.nc, L = g.L, m = g.m, Dv = g.Dv;
    gather_values_kernel<<<GRID((size_t)g.BH * g.Tp * Dv)>>>(w.v, qkv, g);
    CUDA_LAUNCH_CHECK();
    features(g, w, qkv, fmap);
    lambda_kernel<<<GRID((size_t)g.BH * g.Tp * q.levels)>>>(lw.lam, lam_pre, lam_bias, q);
    CUDA_LAUNCH_CHECK();
    if (!q.heights) return;
    gemm_rm(true, false, m, Dv, L, 1, w.f, m, (long long)L * m, w.v, Dv, (long long)L * Dv, 0,
            w.states, Dv, (long long)m * Dv, batch);
    for (int h = 1; h < q.heights; h++) {
        build_up_kernel<<<GRID((size_t)g.BH * q.count[h] * m * Dv)>>>(w.states, lw.up, q, h);
        CUDA_LAUNCH_CHECK();
    }
}

extern "C" void attention_loglinear_forward_cuda(float *out_btc, float *den_bht,
                                                 const float *qkv_btc3, const float *lam_pre,
                                                 const float *lam_bias, const float *const *fmap,
                                                 const OpShape *s) {
    LogShape q = log_shape(s);
    const LinShape &g = q.g;
    Work w = work_for(g, false);
    LogWork lw = log_work(q, false);
    log_prepare(q, w, lw, qkv_btc3, lam_pre, lam_bias, fmap);
    int batch = g.BH * g.nc, L = g.L, m = g.m, Dv = g.Dv;
    long long sm = (long long)L * m, sv = (long long)L * Dv, ss = (long long)m * Dv;
    long long st = (long long)L * L;
    // in-chunk: N' = (Lam . tril(P F^T)) V'
    gemm_rm(false, true, L, L, m, 1, w.p, m, sm, w.f, m, sm, 0, w.tri, L, st, batch);
    level_weight_kernel<<<GRID((size_t)batch * L * L)>>>(w.tri, lw.lam, q);
    CUDA_LAUNCH_CHECK();
    gemm_rm(false, false, L, Dv, L, 1, w.tri, L, st, w.v, Dv, sv, 0, w.n, Dv, sv, batch);
    // tree reads, one height at a time
    for (int h = 0; h < q.heights; h++) {
        gather_nodes_kernel<<<GRID((size_t)batch * m * Dv)>>>(lw.gathered, w.states, lw.up, q, h);
        CUDA_LAUNCH_CHECK();
        gemm_rm(false, false, L, Dv, m, 1, w.p, m, sm, lw.gathered, Dv, ss, 0, lw.tmp, Dv, sv,
                batch);
        add_tree_read_kernel<<<GRID((size_t)g.BH * g.Tp * Dv)>>>(w.n, lw.tmp, lw.lam, q, h);
        CUDA_LAUNCH_CHECK();
    }
    finish_forward_kernel<<<GRID((size_t)g.BH * g.T * g.D)>>>(out_btc, den_bht, w.n, g);
    CUDA_LAUNCH_CHECK();
}

extern "C" void attention_loglinear_backward_cuda(float *dqkv_btc3, float *dlam_pre,
                                                  float *dlam_bias, float *const *dfmap,
                                                  const float *dout_btc, const float *out_btc,
                                                  const float *den_bht, const float *qkv_btc3,
                                                  const float *lam_pre, const float *lam_bias,
                                                  const float *const *fmap, const OpShape *s) {
    LogShape q = log_shape(s);
    const LinShape &g = q.g;
    Work w = work_for(g, true);
    LogWork lw = log_work(q, true);
    lw.dleaves = w.rstates;  // [BH, nc, m Dv], unused otherwise by this op
    log_prepare(q, w, lw, qkv_btc3, lam_pre, lam_bias, fmap);
    int batch = g.BH * g.nc, L = g.L, m = g.m, Dv = g.Dv;
    long long sm = (long long)L * m, sv = (long long)L * Dv, ss = (long long)m * Dv;
    long long st = (long long)L * L;
    size_t rows = (size_t)g.BH * g.Tp;
    dn_kernel<<<GRID(rows)>>>(w.dn, dout_btc, out_btc, den_bht, g);
    CUDA_LAUNCH_CHECK();
    // in-chunk: S = P F^T, G = dN' V'^T; dlam from S . G; then with the weights applied,
    // dP = G F, dF = G^T P, dV' = S^T dN'
    gemm_rm(false, true, L, L, m, 1, w.p, m, sm, w.f, m, sm, 0, w.tri, L, st, batch);
    gemm_rm(false, true, L, L, Dv, 1, w.dn, Dv, sv, w.v, Dv, sv, 0, lw.s2, L, st, batch);
    level_weight_backward_kernel<<<GRID(rows)>>>(lw.dlam, w.tri, lw.s2, lw.lam, q);
    CUDA_LAUNCH_CHECK();
    gemm_rm(false, false, L, m, L, 1, lw.s2, L, st, w.f, m, sm, 0, w.dp, m, sm, batch);
    gemm_rm(true, false, L, m, L, 1, lw.s2, L, st, w.p, m, sm, 0, w.df, m, sm, batch);
    gemm_rm(true, false, L, Dv, L, 1, w.tri, L, st, w.dn, Dv, sv, 0, w.dv, Dv, sv, batch);
    if (q.heights) {
        // tree reads: R = P N_h gives dlam += dN' . R; with tmpw = lambda dN', dP += tmpw N_h^T
        // and each reading chunk's node gradient P^T tmpw
        for (int h = 0; h < q.heights; h++) {
            gather_nodes_kernel<<<GRID((size_t)batch * m * Dv)>>>(lw.gathered, w.states, lw.up, q,
                                                                  h);
            CUDA_LAUNCH_CHECK();
            gemm_rm(false, false, L, Dv, m, 1, w.p, m, sm, lw.gathered, Dv, ss, 0, lw.tmp, Dv, sv,
                    batch);
            tree_read_backward_kernel<<<GRID(rows)>>>(lw.dlam, lw.tmpw, lw.tmp, w.dn, lw.lam, q, h);
            CUDA_LAUNCH_CHECK();
            gemm_rm(false, true, L, m, Dv, 1, lw.tmpw, Dv, sv, lw.gathered, Dv, ss, 1, w.dp, m, sm,
                    batch);
            gemm_rm(true, false, m, Dv, L, 1, w.p, m, sm, lw.tmpw, Dv, sv, 0, lw.dgathered, Dv, ss,
                    batch);
            scatter_nodes_kernel<<<GRID((size_t)g.BH * q.count[h] * m * Dv)>>>(lw.dleaves, lw.dup,
                                                                               lw.dgathered, q, h);
            CUDA_LAUNCH_CHECK();
        }
        for (int h = q.heights - 1; h >= 1; h--) {
            push_down_kernel<<<GRID((size_t)g.BH * q.count[h - 1] * m * Dv)>>>(lw.dleaves, lw.dup,
                                                                               q, h);
            CUDA_LAUNCH_CHECK();
        }
        // leaves N_0[j] = F_j^T V'_j: dF_j += V'_j dN_0^T, dV'_j += F_j dN_0
        gemm_rm(false, true, L, m, Dv, 1, w.v, Dv, sv, lw.dleaves, Dv, ss, 1, w.df, m, sm, batch);
        gemm_rm(false, false, L, Dv, m, 1, w.f, m, sm, lw.dleaves, Dv, ss, 1, w.dv, Dv, sv, batch);
    }
    values_dx_kernel<<<GRID((size_t)g.BH * g.T * g.D)>>>(dqkv_btc3, w.dv, g);
    CUDA_LAUNCH_CHECK();
    features_backward(g, w, dqkv_btc3, qkv_btc3, fmap, dfmap);
    lambda_backward_kernel<<<GRID((size_t)g.B * g.T * g.H * q.levels)>>>(dlam_pre, lw.dlam, lam_pre,
                                                                         lam_bias, q);
    CUDA_LAUNCH_CHECK();
    bias_backward_kernel<<<g.H * q.levels, 256>>>(dlam_bias, lw.dlam, lam_pre, lam_bias, q);
    CUDA_LAUNCH_CHECK();
}

// ---- the rows' kernels (kernels/cpu/attention_loglinear.c has the rows)
// --------------------------
static void loglinear_fwd(const OpShape *s, const float *const *in, float *const *out, float *sv) {
    attention_loglinear_forward_cuda(out[0], sv, in[0], in[1], in[2], in + 3, s);
}
static void loglinear_bwd(const OpShape *s, const float *const *in, const float *const *out,
                          const float *sv, const float *const *dout, float *const *din) {
    attention_loglinear_backward_cuda(din[0], din[1], din[2], din + 3, dout[0], out[0], sv, in[0],
                                      in[1], in[2], in + 3, s);
}
extern "C" const CudaKernels cuda_op_loglinear = {loglinear_fwd, loglinear_bwd, NULL};
extern "C" const CudaKernels cuda_op_cos_loglinear = {loglinear_fwd, loglinear_bwd, NULL};
