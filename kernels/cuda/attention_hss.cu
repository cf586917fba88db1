// Linear attention with an HSS-structured state, the twin of kernels/cpu/attention_hss.c: the
// state's leaf blocks and every off-diagonal sibling block (in its rank-r coordinates
// U_I^T . V_J') are each an ordinary causal linear attention, so the op is a few chunkwise
// linear attentions over column blocks of the features and values, plus the projections
// into and out of the block coordinates (one GEMM each over all rows). The normaliser
// phi(q_t) . sum_{s<=t} phi(k_s) is the same chunkwise form with a ones column for V.
// Every buffer is [BH, Tp, width] (rows padded to whole chunks with zeros), so a column block
// of any of them is a strided batch of chunks.
#include "../attention_hss.h"
#include "linear_core.cuh"

// out (+)= causal chunkwise linear attention of the column blocks p [.., K] (ld ldp),
// f [.., K] (ldf), v [.., Dv] (ldv) of [BH, Tp, ld] buffers; beta 0 overwrites out, 1 adds.
static void la_forward_blocks(const LinShape &g, int K, int Dv, const float *p, int ldp,
                              const float *f, int ldf, const float *v, int ldv, float *out, int ldo,
                              float beta) {
    static float *bufs[2];
    static size_t have[2];
    int batch = g.BH * g.nc, L = g.L;
    float *states = mt_cuda_grow(&bufs[0], &have[0], (size_t)batch * K * Dv);
    float *tri = mt_cuda_grow(&bufs[1], &have[1], (size_t)batch * L * L);
    long long sp = (long long)L * ldp, sf = (long long)L * ldf, sv = (long long)L * ldv;
    long long so = (long long)L * ldo, ss = (long long)K * Dv, st = (long long)L * L;
    gemm_rm(true, false, K, Dv, L, 1, f, ldf, sf, v, ldv, sv, 0, states, Dv, ss, batch);
    exclusive_scan_kernel<<<ceil_div((size_t)g.BH * K * Dv, 256), 256>>>(states, g.BH, g.nc, K * Dv,
                                                                         0);
    CUDA_LAUNCH_CHECK();
    gemm_rm(false, false, L, Dv, K, 1, p, ldp, sp, states, Dv, ss, beta, out, ldo, so, batch);
    gemm_rm(false, true, L, L, K, 1, p, ldp, sp, f, ldf, sf, 0, tri, L, st, batch);
    causal_mask_kernel<<<ceil_div((size_t)batch * L * L, 256), 256>>>(tri, (size_t)batch, L);
    CUDA_LAUNCH_CHECK();
    gemm_rm(false, false, L, Dv, L, 1, tri, L, st, v, ldv, sv, 1, out, ldo, so, batch);
}

// dp, df, dv += the gradient of sum(dout . out) of la_forward_blocks (the CPU la_backward).
static void la_backward_blocks(const LinShape &g, int K, int Dv, const float *p, int ldp,
                               const float *f, int ldf, const float *v, int ldv, const float *dout,
                               int lddo, float *dp, int lddp, float *df, int lddf, float *dv,
                               int lddv) {
    static float *bufs[3];
    static size_t have[3];
    int batch = g.BH * g.nc, L = g.L;
    float *states = mt_cuda_grow(&bufs[0], &have[0], (size_t)batch * K * Dv);
    float *rstates = mt_cuda_grow(&bufs[1], &have[1], (size_t)batch * K * Dv);
    float *tri = mt_cuda_grow(&bufs[2], &have[2], (size_t)batch * L * L);
    long long sp = (long long)L * ldp, sf = (long long)L * ldf, sv = (long long)L * ldv;
    long long sg = (long long)L * lddo, ss = (long long)K * Dv, st = (long long)L * L;
    long long sdp = (long long)L * lddp, sdf = (long long)L * lddf, sdv = (long long)L * lddv;
    size_t n_st = (size_t)g.BH * K * Dv;
    // S: exclusive prefix of F^T V; R: exclusive suffix of P^T dout
    gemm_rm(true, false, K, Dv, L, 1, f, ldf, sf, v, ldv, sv, 0, states, Dv, ss, batch);
    exclusive_scan_kernel<<<ceil_div(n_st, 256), 256>>>(states, g.BH, g.nc, K * Dv, 0);
    CUDA_LAUNCH_CHECK();
    gemm_rm(true, false, K, Dv, L, 1, p, ldp, sp, dout, lddo, sg, 0, rstates, Dv, ss, batch);
    exclusive_scan_kernel<<<ceil_div(n_st, 256), 256>>>(rstates, g.BH, g.nc, K * Dv, 1);
    CUDA_LAUNCH_CHECK();
    // G = tril(dout V^T): dp += dout S^T + G F, df += G^T P + V R^T
    gemm_rm(false, true, L, L, Dv, 1, dout, lddo, sg, v, ldv, sv, 0, tri, L, st, batch);
    causal_mask_kernel<<<ceil_div((size_t)batch * L * L, 256), 256>>>(tri, (size_t)batch, L);
    CUDA_LAUNCH_CHECK();
    gemm_rm(false, true, L, K, Dv, 1, dout, lddo, sg, states, Dv, ss, 1, dp, lddp, sdp, batch);
    gemm_rm(false, false, L, K, L, 1, tri, L, st, f, ldf, sf, 1, dp, lddp, sdp, batch);
    gemm_rm(true, false, L, K, L, 1, tri, L, st, p, ldp, sp, 1, df, lddf, sdf, batch);
    gemm_rm(false, true, L, K, Dv, 1, v, ldv, sv, rstates, Dv, ss, 1, df, lddf, sdf, batch);
    // A = tril(P F^T): dv += A^T dout + F R
    gemm_rm(false, true, L, L, K, 1, p, ldp, sp, f, ldf, sf, 0, tri, L, st, batch);
    causal_mask_kernel<<<ceil_div((size_t)batch * L * L, 256), 256>>>(tri, (size_t)batch, L);
    CUDA_LAUNCH_CHECK();
    gemm_rm(true, false, L, Dv, L, 1, tri, L, st, dout, lddo, sg, 1, dv, lddv, sdv, batch);
    gemm_rm(false, false, L, Dv, K, 1, f, ldf, sf, rstates, Dv, ss, 1, dv, lddv, sdv, batch);
}

// ones [BH, Tp] (zero on pad rows): the normaliser's value column
static __global__ void ones_kernel(float *ones, LinShape g) {
    size_t row = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (row < (size_t)g.BH * g.Tp) ones[row] = (int)(row % g.Tp) < g.T ? 1.f : 0.f;
}

// out = num / den, den = eps + zden when normalised (else 1), den saved
static __global__ void hss_finish_kernel(float *out, float *den_bht, const float *num,
                                         const float *zden, LinShape g) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)g.BH * g.T * g.D) return;
    int j = (int)(idx % g.D), t = (int)(idx / g.D % g.T), bh = (int)(idx / g.D / g.T);
    size_t row = (size_t)bh * g.Tp + t;
    float den = g.normalize ? zden[row] + g.eps : 1.f;
    if (g.normalize && j == 0) den_bht[(size_t)bh * g.T + t] = den;
    int b = bh / g.H, h = bh % g.H;
    out[((size_t)b * g.T + t) * g.C + h * g.D + j] = num[row * g.D + j] / den;
}

// dn = do / den [BH, Tp, D] and dden = -(do . o) / den [BH, Tp] (zero on pad rows)
static __global__ void hss_dn_kernel(float *dn, float *dden, const float *dout, const float *out,
                                     const float *den_bht, LinShape g) {
    size_t row = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= (size_t)g.BH * g.Tp) return;
    int t = (int)(row % g.Tp), bh = (int)(row / g.Tp), b = bh / g.H, h = bh % g.H;
    if (t >= g.T) {
        for (int j = 0; j < g.D; j++) dn[row * g.D + j] = 0.f;
        dden[row] = 0.f;
        return;
    }
    size_t o = ((size_t)b * g.T + t) * g.C + h * g.D;
    float den = g.normalize ? den_bht[(size_t)bh * g.T + t] : 1.f, dot = 0;
    for (int j = 0; j < g.D; j++)
        dn[row * g.D + j] = dout[o + j] / den, dot += dout[o + j] * out[o + j];
    dden[row] = g.normalize ? -dot / den : 0.f;
}

struct HssWork {
    float *num, *ones, *zden, *pt, *ft, *vt, *y, *dpt, *dft, *dvt, *dden, *dones;
};

static HssWork hss_work(const LinShape &g, const HssTree &t, bool backward) {
    static float *bufs[12];
    static size_t have[12];
    // the widest block coordinates: depth 1's ranks (deeper blocks are narrower)
    size_t rows = (size_t)g.BH * g.Tp, r = t.J ? (t.ru[1] > t.rv[1] ? t.ru[1] : t.rv[1]) : 1;
    HssWork w = {};
    w.num = mt_cuda_grow(&bufs[0], &have[0], rows * g.D);
    w.ones = mt_cuda_grow(&bufs[1], &have[1], rows);
    w.zden = mt_cuda_grow(&bufs[2], &have[2], rows);
    w.pt = mt_cuda_grow(&bufs[3], &have[3], rows * r);
    w.ft = mt_cuda_grow(&bufs[4], &have[4], rows * r);
    w.vt = mt_cuda_grow(&bufs[5], &have[5], rows * r);
    w.y = mt_cuda_grow(&bufs[6], &have[6], rows * r);
    if (backward) {
        w.dpt = mt_cuda_grow(&bufs[7], &have[7], rows * r);
        w.dft = mt_cuda_grow(&bufs[8], &have[8], rows * r);
        w.dvt = mt_cuda_grow(&bufs[9], &have[9], rows * r);
        w.dden = mt_cuda_grow(&bufs[10], &have[10], rows);
        w.dones = mt_cuda_grow(&bufs[11], &have[11], rows);
    }
    return w;
}

// The block (depth l, row node k, column node k ^ 1): its row and column offsets and bases.
struct HssBlock {
    int rows0, cols0, mI, dJ, ru, rv;
    const float *u, *v;  // U_I [mI, ru] (ld Ru), V_J' [dJ, rv] (ld Rv)
};

static HssBlock hss_block(const HssTree &t, const float *u_basis, const float *v_basis, int l,
                          int k) {
    HssBlock b;
    b.mI = t.m >> l, b.dJ = t.D >> l, b.ru = t.ru[l], b.rv = t.rv[l];
    b.rows0 = k * b.mI, b.cols0 = (k ^ 1) * b.dJ;
    b.u = u_basis + (size_t)b.rows0 * t.Ru + t.cu[l];
    b.v = v_basis + (size_t)b.cols0 * t.Rv + t.cv[l];
    return b;
}

// pt = P[:, I] U_I, ft = F[:, I] U_I [rows, ru], vt = V[:, J'] V_J' [rows, rv]
static void hss_project(const LinShape &g, const HssTree &t, const HssBlock &b, const Work &w,
                        const HssWork &hw) {
    int rows = g.BH * g.Tp;
    gemm_rm(false, false, rows, b.ru, b.mI, 1, w.p + b.rows0, t.m, 0, b.u, t.Ru, 0, 0, hw.pt, b.ru,
            0, 1);
    gemm_rm(false, false, rows, b.ru, b.mI, 1, w.f + b.rows0, t.m, 0, b.u, t.Ru, 0, 0, hw.ft, b.ru,
            0, 1);
    gemm_rm(false, false, rows, b.rv, b.dJ, 1, w.v + b.cols0, g.D, 0, b.v, t.Rv, 0, 0, hw.vt, b.rv,
            0, 1);
}

// Features into w.p, w.f and the values (no ones column: the normaliser is separate) into w.v.
static LinShape hss_prepare(const OpShape *s, Work *w_out, HssWork *hw_out, HssTree *t_out,
                            const float *qkv, const float *const *fmap, bool backward) {
    LinShape g = lin_shape(s);
    g.Dv = g.D;  // V alone; the normaliser runs on its own ones column
    *t_out = hss_tree_of(s);
    Work w = work_for(g, backward);
    HssWork hw = hss_work(g, *t_out, backward);
    gather_values_kernel<<<ceil_div((size_t)g.BH * g.Tp * g.D, 256), 256>>>(w.v, qkv, g);
    CUDA_LAUNCH_CHECK();
    features(g, w, qkv, fmap);
    ones_kernel<<<ceil_div((size_t)g.BH * g.Tp, 256), 256>>>(hw.ones, g);
    CUDA_LAUNCH_CHECK();
    *w_out = w, *hw_out = hw;
    return g;
}

extern "C" void attention_hss_forward_cuda(float *out_btc, float *den_bht, const float *qkv_btc3,
                                           const float *u_basis, const float *v_basis,
                                           const float *const *fmap, const OpShape *s) {
    Work w;
    HssWork hw;
    HssTree t;
    LinShape g = hss_prepare(s, &w, &hw, &t, qkv_btc3, fmap, false);
    int mJ = t.m >> t.J, dJ = g.D >> t.J;
    for (int i = 0; i < (1 << t.J); i++)  // leaves cover every column: overwrite
        la_forward_blocks(g, mJ, dJ, w.p + i * mJ, t.m, w.f + i * mJ, t.m, w.v + i * dJ, g.D,
                          hw.num + i * dJ, g.D, 0);
    for (int l = 1; l <= t.J; l++)
        for (int k = 0; k < (1 << l); k++) {
            HssBlock b = hss_block(t, u_basis, v_basis, l, k);
            hss_project(g, t, b, w, hw);
            la_forward_blocks(g, b.ru, b.rv, hw.pt, b.ru, hw.ft, b.ru, hw.vt, b.rv, hw.y, b.rv, 0);
            // num[:, J'] += y V_J'^T
            gemm_rm(false, true, g.BH * g.Tp, b.dJ, b.rv, 1, hw.y, b.rv, 0, b.v, t.Rv, 0, 1,
                    hw.num + b.cols0, g.D, 0, 1);
        }
    if (g.normalize) la_forward_blocks(g, t.m, 1, w.p, t.m, w.f, t.m, hw.ones, 1, hw.zden, 1, 0);
    hss_finish_kernel<<<ceil_div((size_t)g.BH * g.T * g.D, 256), 256>>>(out_btc, den_bht, hw.num,
                                                                        hw.zden, g);
    CUDA_LAUNCH_CHECK();
}

extern "C" void attention_hss_backward_cuda(float *dqkv_btc3, float *const *dfmap,
                                            const float *dout_btc, const float *out_btc,
                                            const float *den_bht, const float *qkv_btc3,
                                            const float *u_basis, const float *v_basis,
                                            const float *const *fmap, const OpShape *s) {
    Work w;
    HssWork hw;
    HssTree t;
    LinShape g = hss_prepare(s, &w, &hw, &t, qkv_btc3, fmap, true);
    size_t rows = (size_t)g.BH * g.Tp;
    int mJ = t.m >> t.J, dJ = g.D >> t.J;
    float *dn = hw.num;  // the readout's gradient takes the readout's buffer
    hss_dn_kernel<<<ceil_div(rows, 256), 256>>>(dn, hw.dden, dout_btc, out_btc, den_bht, g);
    CUDA_LAUNCH_CHECK();
    CUDA_CHECK(cudaMemsetAsync(w.dp, 0, sizeof(float) * rows * t.m, 0));
    CUDA_CHECK(cudaMemsetAsync(w.df, 0, sizeof(float) * rows * t.m, 0));
    CUDA_CHECK(cudaMemsetAsync(w.dv, 0, sizeof(float) * rows * g.D, 0));
    if (g.normalize) {
        CUDA_CHECK(cudaMemsetAsync(hw.dones, 0, sizeof(float) * rows, 0));
        la_backward_blocks(g, t.m, 1, w.p, t.m, w.f, t.m, hw.ones, 1, hw.dden, 1, w.dp, t.m, w.df,
                           t.m, hw.dones, 1);
    }
    for (int i = 0; i < (1 << t.J); i++)
        la_backward_blocks(g, mJ, dJ, w.p + i * mJ, t.m, w.f + i * mJ, t.m, w.v + i * dJ, g.D,
                           dn + i * dJ, g.D, w.dp + i * mJ, t.m, w.df + i * mJ, t.m, w.dv + i * dJ,
                           g.D);
    for (int l = 1; l <= t.J; l++)
        for (int k = 0; k < (1 << l); k++) {
            HssBlock b = hss_block(t, u_basis, v_basis, l, k);
            hss_project(g, t, b, w, hw);
            // the block's readout gradient in its coordinates: dy = dn[:, J'] V_J'
            gemm_rm(false, false, (int)rows, b.rv, b.dJ, 1, dn + b.cols0, g.D, 0, b.v, t.Rv, 0, 0,
                    hw.y, b.rv, 0, 1);
            CUDA_CHECK(cudaMemsetAsync(hw.dpt, 0, sizeof(float) * rows * b.ru, 0));
            CUDA_CHECK(cudaMemsetAsync(hw.dft, 0, sizeof(float) * rows * b.ru, 0));
            CUDA_CHECK(cudaMemsetAsync(hw.dvt, 0, sizeof(float) * rows * b.rv, 0));
            la_backward_blocks(g, b.ru, b.rv, hw.pt, b.ru, hw.ft, b.ru, hw.vt, b.rv, hw.y, b.rv,
                               hw.dpt, b.ru, hw.dft, b.ru, hw.dvt, b.rv);
            // back through the projections: dP[:, I] += dpt U_I^T, dF likewise, dV[:, J'] +=
            // dvt V_J'^T
            gemm_rm(false, true, (int)rows, b.mI, b.ru, 1, hw.dpt, b.ru, 0, b.u, t.Ru, 0, 1,
                    w.dp + b.rows0, t.m, 0, 1);
            gemm_rm(false, true, (int)rows, b.mI, b.ru, 1, hw.dft, b.ru, 0, b.u, t.Ru, 0, 1,
                    w.df + b.rows0, t.m, 0, 1);
            gemm_rm(false, true, (int)rows, b.dJ, b.rv, 1, hw.dvt, b.rv, 0, b.v, t.Rv, 0, 1,
                    w.dv + b.cols0, g.D, 0, 1);
        }
    values_dx_kernel<<<ceil_div((size_t)g.BH * g.T * g.D, 256), 256>>>(dqkv_btc3, w.dv, g);
    CUDA_LAUNCH_CHECK();
    features_backward(g, w, dqkv_btc3, qkv_btc3, fmap, dfmap);
}

// ---- the row's kernels (kernels/cpu/attention_hss.c has the row)
// ---------------------------------
static void hss_fwd(const OpShape *s, const float *const *in, float *const *out, float *sv) {
    attention_hss_forward_cuda(out[0], sv, in[0], in[2], in[3], in + 4, s);
}
static void hss_bwd(const OpShape *s, const float *const *in, const float *const *out,
                    const float *sv, const float *const *dout, float *const *din) {
    attention_hss_backward_cuda(din[0], din + 4, dout[0], out[0], sv, in[0], in[2], in[3], in + 4,
                                s);
}
extern "C" const CudaKernels cuda_op_hss = {hss_fwd, hss_bwd, NULL};
