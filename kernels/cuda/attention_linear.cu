// Linear attention, chunkwise when causal, the twin of kernels/cpu/attention_linear.c for the
// feature maps elu1, relu, cosFormer (2D wide), FAVOR+ (m random features: one GEMM of every row
// against the shared projection, then exp) and circulant FAVOR+ (the projection by cuFFT,
// circulant.cu). Per (batch, head) and chunk c of length L:
//   S_c = sum_{c' < c} phi(K_c')^T V'_c'            (states: one batched GEMM per chunk, then
//                                                    an exclusive prefix over chunks)
//   N'_c = phi(Q_c) S_c + tril(phi(Q_c) phi(K_c)^T) V'_c
//   o = N'[:, :D] / (N'[:, D] + eps)                 (V' = [V | 1] carries the normaliser)
// Every product is one strided-batched cuBLAS call over B*H*chunks; the sequence is padded to
// whole chunks with zero rows, which add nothing. As on the CPU only the normaliser is saved;
// features and states are recomputed in backward. Bidirectional (mixer.causal = false): one
// chunk of length T, S = phi(K)^T V' per (batch, head), N' = phi(Q) S; no scores, no scan.
#include "linear_core.cuh"

static LinShape row_shape(const OpShape *s) {
    LinShape g = lin_shape(s);
    if (!OPT_OF(LinearRowOpts, s).causal) g.L = g.Tp = s->T, g.nc = 1, g.full = 1;
    return g;
}

// phi(q), phi(k), V' and the prefix states.
static void prepare(const LinShape &g, const Work &w, const float *qkv, const float *const *fmap) {
    size_t nv = (size_t)g.BH * g.Tp * g.Dv;
    gather_values_kernel<<<ceil_div(nv, 256), 256>>>(w.v, qkv, g);
    CUDA_LAUNCH_CHECK();
    features(g, w, qkv, fmap);
    if (!g.full) {
        chunk_states(g, w);
        return;
    }
    gemm_rm(true, false, g.m, g.Dv, g.T, 1, w.f, g.m, (long long)g.T * g.m, w.v, g.Dv,
            (long long)g.T * g.Dv, 0, w.states, g.Dv, (long long)g.m * g.Dv, g.BH);
}

extern "C" void attention_linear_forward_cuda(float *out_btc, float *den_bht, const float *qkv_btc3,
                                              const float *const *fmap, const OpShape *s) {
    LinShape g = row_shape(s);
    Work w = work_for(g, false);
    prepare(g, w, qkv_btc3, fmap);
    int batch = g.BH * g.nc, L = g.L, m = g.m, Dv = g.Dv;
    // N' = P S + tril(P F^T) V' (bidirectional: S holds every key, N' = P S)
    gemm_rm(false, false, L, Dv, m, 1, w.p, m, (long long)L * m, w.states, Dv, (long long)m * Dv, 0,
            w.n, Dv, (long long)L * Dv, batch);
    if (!g.full) {
        causal_scores(g, w.tri, w.p, w.f, m);
        gemm_rm(false, false, L, Dv, L, 1, w.tri, L, (long long)L * L, w.v, Dv, (long long)L * Dv,
                1, w.n, Dv, (long long)L * Dv, batch);
    }
    size_t n = (size_t)g.BH * g.T * g.D;
    finish_forward_kernel<<<ceil_div(n, 256), 256>>>(out_btc, den_bht, w.n, g);
    CUDA_LAUNCH_CHECK();
}

// The CPU form's two sweeps as batched products (kernels/cpu/linear_scan.c):
//   dP_c = dN_c S_c^T + tril(dN_c V_c^T) F_c
//   dF_c = tril(dN_c V_c^T)^T P_c + V_c R_c^T,   R_c = sum_{c' > c} P_c'^T dN_c'
//   dV_c = tril(P_c F_c^T)^T dN_c + F_c R_c
extern "C" void attention_linear_backward_cuda(float *dqkv_btc3, float *const *dfmap,
                                               const float *dout_btc, const float *out_btc,
                                               const float *den_bht, const float *qkv_btc3,
                                               const float *const *fmap, const OpShape *s) {
    LinShape g = row_shape(s);
    Work w = work_for(g, true);
    prepare(g, w, qkv_btc3, fmap);
    int batch = g.BH * g.nc, L = g.L, m = g.m, Dv = g.Dv;
    long long sm = (long long)L * m, sv = (long long)L * Dv, ss = (long long)m * Dv;
    long long st = (long long)L * L;
    size_t rows = (size_t)g.BH * g.Tp;
    dn_kernel<<<ceil_div(rows, 256), 256>>>(w.dn, dout_btc, out_btc, den_bht, g);
    CUDA_LAUNCH_CHECK();
    // R: per-chunk P^T dN, then the exclusive suffix over chunks
    gemm_rm(true, false, m, Dv, L, 1, w.p, m, sm, w.dn, Dv, sv, 0, w.rstates, Dv, ss, batch);
    if (g.full) {
        // dP = dN S^T, dF = V' R^T, dV' = F R with S, R over the whole sequence
        gemm_rm(false, true, L, m, Dv, 1, w.dn, Dv, sv, w.states, Dv, ss, 0, w.dp, m, sm, batch);
        gemm_rm(false, true, L, m, Dv, 1, w.v, Dv, sv, w.rstates, Dv, ss, 0, w.df, m, sm, batch);
        gemm_rm(false, false, L, Dv, m, 1, w.f, m, sm, w.rstates, Dv, ss, 0, w.dv, Dv, sv, batch);
        size_t n = (size_t)g.BH * g.T * g.D;
        values_dx_kernel<<<ceil_div(n, 256), 256>>>(dqkv_btc3, w.dv, g);
        CUDA_LAUNCH_CHECK();
        features_backward(g, w, dqkv_btc3, qkv_btc3, fmap, dfmap);
        return;
    }
    size_t n_st = (size_t)g.BH * m * Dv;
    exclusive_scan_kernel<<<ceil_div(n_st, 256), 256>>>(w.rstates, g.BH, g.nc, m * Dv, 1);
    CUDA_LAUNCH_CHECK();
    // G = tril(dN V^T)
    causal_scores(g, w.tri, w.dn, w.v, Dv);
    gemm_rm(false, true, L, m, Dv, 1, w.dn, Dv, sv, w.states, Dv, ss, 0, w.dp, m, sm, batch);
    gemm_rm(false, false, L, m, L, 1, w.tri, L, st, w.f, m, sm, 1, w.dp, m, sm, batch);
    gemm_rm(true, false, L, m, L, 1, w.tri, L, st, w.p, m, sm, 0, w.df, m, sm, batch);
    gemm_rm(false, true, L, m, Dv, 1, w.v, Dv, sv, w.rstates, Dv, ss, 1, w.df, m, sm, batch);
    // A = tril(P F^T)
    causal_scores(g, w.tri, w.p, w.f, m);
    gemm_rm(true, false, L, Dv, L, 1, w.tri, L, st, w.dn, Dv, sv, 0, w.dv, Dv, sv, batch);
    gemm_rm(false, false, L, Dv, m, 1, w.f, m, sm, w.rstates, Dv, ss, 1, w.dv, Dv, sv, batch);
    size_t n = (size_t)g.BH * g.T * g.D;
    values_dx_kernel<<<ceil_div(n, 256), 256>>>(dqkv_btc3, w.dv, g);
    CUDA_LAUNCH_CHECK();
    features_backward(g, w, dqkv_btc3, qkv_btc3, fmap, dfmap);
}

// ---- the feature_map op: the maps alone, phi [B, H, T, m] (one chunk the whole sequence) ----

static LinShape map_shape(const OpShape *s) {
    LinShape g = lin_shape(s);
    g.L = g.Tp = s->T, g.nc = 1;
    return g;
}

extern "C" void feature_map_forward_cuda(float *phiq_bhtm, float *phik_bhtm, const float *qkv_btc3,
                                         const float *const *fmap, const OpShape *s) {
    LinShape g = map_shape(s);
    Work w = work_for(g, false, true);
    w.p = phiq_bhtm, w.f = phik_bhtm;
    features(g, w, qkv_btc3, fmap);
}

extern "C" void feature_map_backward_cuda(float *dqkv_btc3, float *const *dfmap,
                                          const float *dphiq_bhtm, const float *dphik_bhtm,
                                          const float *qkv_btc3, const float *const *fmap,
                                          const OpShape *s) {
    LinShape g = map_shape(s);
    Work w = work_for(g, true, true);
    features(g, w, qkv_btc3, fmap);  // phi again, into the work buffers
    size_t bytes = sizeof(float) * g.BH * g.Tp * g.m;
    CUDA_CHECK(cudaMemcpyAsync(w.dp, dphiq_bhtm, bytes, cudaMemcpyDeviceToDevice, 0));
    CUDA_CHECK(cudaMemcpyAsync(w.df, dphik_bhtm, bytes, cudaMemcpyDeviceToDevice, 0));
    features_backward(g, w, dqkv_btc3, qkv_btc3, fmap, dfmap);
}

// ---- the rows' kernels (kernels/cpu/attention_linear.c and feature_maps.c have the rows)
// ---------
static void linear_fwd(const OpShape *s, const float *const *in, float *const *out, float *sv) {
    attention_linear_forward_cuda(out[0], sv, in[CORE_IN_QKV], in + CORE_IN_PARAMS, s);
}
static void linear_bwd(const OpShape *s, const float *const *in, const float *const *out,
                       const float *sv, const float *const *dout, float *const *din) {
    attention_linear_backward_cuda(din[CORE_IN_QKV], din + CORE_IN_PARAMS, dout[0], out[0], sv,
                                   in[CORE_IN_QKV], in + CORE_IN_PARAMS, s);
}
static void fmap_fwd(const OpShape *s, const float *const *in, float *const *out, float *) {
    feature_map_forward_cuda(out[0], out[1], in[CORE_IN_QKV], in + CORE_IN_PARAMS, s);
}
static void fmap_bwd(const OpShape *s, const float *const *in, const float *const *, const float *,
                     const float *const *dout, float *const *din) {
    feature_map_backward_cuda(din[CORE_IN_QKV], din + CORE_IN_PARAMS, dout[0], dout[1],
                              in[CORE_IN_QKV], in + CORE_IN_PARAMS, s);
}
extern "C" const CudaKernels cuda_op_linear = {linear_fwd, linear_bwd, NULL};
extern "C" const CudaKernels cuda_op_favor = {linear_fwd, linear_bwd, NULL};
extern "C" const CudaKernels cuda_op_circulant_favor = {linear_fwd, linear_bwd, NULL};
extern "C" const CudaKernels cuda_op_cosformer = {linear_fwd, linear_bwd, NULL};
extern "C" const CudaKernels cuda_op_feature_map = {fmap_fwd, fmap_bwd, NULL};
