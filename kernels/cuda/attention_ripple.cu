// Ripple attention, the twin of kernels/cpu/attention_ripple.c (mixers.md section 14): the same
// summed-area table over phi(k) v'^T on the patch grid and the same stick-breaking ring weights,
// written for correctness first: the table is built by one block per (batch, head) whose
// threads each own elements of the m x Dv cell and walk the cells in order; each query is one
// block reading its R boxes from four corners. Backward is the CPU algorithm in the same
// layout: per-query blocks (dphi(q), dN', dz), then one block per (batch, head) that
// accumulates the corner gradients query by query (each thread its own elements: no atomics,
// a fixed order) and runs the transposed table, then one block per key for phi(k) and v.
// The feature maps, V' = [V | 1] and the maps' backward are linear_core.cuh's.
#include "../attention_ripple.h"
#include "linear_core.cuh"

// The family's shape with the whole sequence as one chunk and the normaliser column.
static LinShape ripple_lin_shape(const OpShape *s) {
    LinShape g = lin_shape(s);
    g.L = g.Tp = s->T, g.nc = 1, g.full = 1, g.normalize = 1, g.Dv = g.D + 1;
    return g;
}

// The signed corners of box r around grid token gt, as the CPU file.
struct Corners {
    int cell[4], n;
    float sign[4];
};
__device__ inline Corners box_corners(const RippleGrid &rg, int gt, int r) {
    int ti = gt / rg.W, tj = gt % rg.W;
    int r0 = max(ti - r, 0), r1 = min(ti + r, rg.Hg - 1);
    int c0 = max(tj - r, 0), c1 = min(tj + r, rg.W - 1);
    Corners k;
    k.n = 0;
    int rows[2] = {r1, r0 - 1}, cols[2] = {c1, c0 - 1};
    for (int a = 0; a < 2; a++)
        for (int c = 0; c < 2; c++)
            if (rows[a] >= 0 && cols[c] >= 0) {
                k.cell[k.n] = rows[a] * rg.W + cols[c];
                k.sign[k.n++] = (a + c) % 2 ? -1.f : 1.f;
            }
    return k;
}

__device__ inline float softplusf_(float x) {
    return x > 20.f ? x : log1pf(expf(x));
}

// alpha [R + 1] of query t of head h (log space, as the CPU's stick_break); z [R] kept.
__device__ void stick_break_dev(const float *xproj, const float *bias, int T, int H, int R, int b,
                                int h, int t, float *z, float *alpha) {
    const float *x = xproj + (((size_t)b * T + t) * H + h) * R;
    float log_rest = 0;
    for (int r = 0; r < R; r++) {
        z[r] = x[r] + bias[h * R + r];
        alpha[r] = expf(log_rest - softplusf_(-z[r]));
        log_rest -= softplusf_(z[r]);
    }
    alpha[R] = expf(log_rest);
}

// SAT [BH, cells, m Dv] and every-key sum total [BH, m Dv]; one block per (batch, head).
__global__ void ripple_sat_kernel(float *sat, float *total, const float *f, const float *v,
                                  RippleGrid rg, int T, int m, int Dv) {
    int bh = blockIdx.x;
    size_t e = (size_t)m * Dv, cells = (size_t)rg.Hg * rg.W;
    float *S = sat + (size_t)bh * cells * e;
    const float *fb = f + (size_t)bh * T * m, *vb = v + (size_t)bh * T * Dv;
    for (size_t x = threadIdx.x; x < e; x += blockDim.x) {
        int a = (int)(x / Dv), c = (int)(x % Dv);
        for (size_t cell = 0; cell < cells; cell++) {
            int i = (int)(cell / rg.W), j = (int)(cell % rg.W), u = rg.P + (int)cell;
            float val = (int)cell < rg.n ? fb[(size_t)u * m + a] * vb[(size_t)u * Dv + c] : 0.f;
            if (i > 0) val += S[(cell - rg.W) * e + x];
            if (j > 0) val += S[(cell - 1) * e + x];
            if (i > 0 && j > 0) val -= S[(cell - rg.W - 1) * e + x];
            S[cell * e + x] = val;
        }
        float tot = cells ? S[(cells - 1) * e + x] : 0.f;
        for (int u = 0; u < rg.P; u++) tot += fb[(size_t)u * m + a] * vb[(size_t)u * Dv + c];
        total[(size_t)bh * e + x] = tot;
    }
}

// A [(R + 1), Dv] of query t into shared memory: A_r = phi(q_t) . Box_r, A_R = phi(q_t) . total
// (only A_R for a prefix query).
__device__ void query_reads_dev(float *A, const float *pt, const float *S, const float *tot,
                                const RippleGrid &rg, int t, int m, int Dv) {
    size_t e = (size_t)m * Dv;
    for (int c = threadIdx.x; c < Dv; c += blockDim.x) {
        if (t >= rg.P)
            for (int r = 0; r < rg.R; r++) {
                Corners k = box_corners(rg, t - rg.P, r);
                float acc = 0;
                for (int q = 0; q < k.n; q++) {
                    const float *cell = S + (size_t)k.cell[q] * e;
                    float part = 0;
                    for (int a = 0; a < m; a++) part += pt[a] * cell[(size_t)a * Dv + c];
                    acc += k.sign[q] * part;
                }
                A[r * Dv + c] = acc;
            }
        float acc = 0;
        for (int a = 0; a < m; a++) acc += pt[a] * tot[(size_t)a * Dv + c];
        A[rg.R * Dv + c] = acc;
    }
}

// Shared memory of a query block: A [(R+1) Dv], num / dnum [Dv], z [R], alpha, dalpha [R+1].
static size_t query_shared(int R, int Dv) {
    return sizeof(float) * ((size_t)(R + 1) * Dv + Dv + R + 2 * (R + 1) + 2);
}

// One block per query (bh, t): o_t and its normaliser.
__global__ void ripple_forward_kernel(float *out, float *den_bht, const float *p, const float *sat,
                                      const float *total, const float *xproj, const float *bias,
                                      RippleGrid rg, int B, int T, int C, int H, int m, float eps) {
    extern __shared__ float sh[];
    int D = C / H, Dv = D + 1, R = rg.R, bh = blockIdx.x / T, t = blockIdx.x % T;
    int b = bh / H, h = bh % H;
    float *A = sh, *num = A + (size_t)(R + 1) * Dv, *z = num + Dv, *alpha = z + R;
    size_t e = (size_t)m * Dv, cells = (size_t)rg.Hg * rg.W;
    const float *pt = p + ((size_t)bh * T + t) * m;
    query_reads_dev(A, pt, sat + (size_t)bh * cells * e, total + (size_t)bh * e, rg, t, m, Dv);
    if (threadIdx.x == 0 && t >= rg.P) stick_break_dev(xproj, bias, T, H, R, b, h, t, z, alpha);
    __syncthreads();
    for (int c = threadIdx.x; c < Dv; c += blockDim.x) {
        float acc = 0;
        if (t < rg.P)
            acc = A[R * Dv + c];
        else
            for (int r = 0; r <= R; r++)
                acc += alpha[r] * (A[r * Dv + c] - (r ? A[(r - 1) * Dv + c] : 0.f));
        num[c] = acc;
    }
    __syncthreads();
    float den = num[D] + eps;
    if (threadIdx.x == 0) den_bht[(size_t)bh * T + t] = den;
    for (int j = threadIdx.x; j < D; j += blockDim.x)
        out[((size_t)b * T + t) * C + h * D + j] = num[j] / den;
}

// One block per query: dN' (into dn [BH, T, Dv]), the ring coefficients c_r (coef [BH, T,
// R + 1]; a prefix query: c_R = 1, the rest 0), dz (dxproj, and dz_bt [BH, T, R] for the bias)
// and dphi(q_t) (dp, overwritten).
__global__ void ripple_query_backward_kernel(float *dn, float *coef, float *dz_bt, float *dxproj,
                                             float *dp, const float *dout, const float *out,
                                             const float *den_bht, const float *p, const float *sat,
                                             const float *total, const float *xproj,
                                             const float *bias, RippleGrid rg, int B, int T, int C,
                                             int H, int m) {
    extern __shared__ float sh[];
    int D = C / H, Dv = D + 1, R = rg.R, bh = blockIdx.x / T, t = blockIdx.x % T;
    int b = bh / H, h = bh % H;
    float *A = sh, *dnum = A + (size_t)(R + 1) * Dv, *z = dnum + Dv, *alpha = z + R;
    float *dalpha = alpha + R + 1;
    size_t e = (size_t)m * Dv, cells = (size_t)rg.Hg * rg.W;
    const float *S = sat + (size_t)bh * cells * e, *tot = total + (size_t)bh * e;
    const float *pt = p + ((size_t)bh * T + t) * m;
    const float *gy = dout + ((size_t)b * T + t) * C + h * D,
                *o = out + ((size_t)b * T + t) * C + h * D;
    float den = den_bht[(size_t)bh * T + t], dot = 0;
    for (int j = threadIdx.x; j < D; j += blockDim.x) dnum[j] = gy[j] / den, dot += gy[j] * o[j];
    dot = block_sum(dot);
    if (threadIdx.x == 0) dnum[D] = -dot / den;
    query_reads_dev(A, pt, S, tot, rg, t, m, Dv);
    __syncthreads();
    float *cf = coef + ((size_t)bh * T + t) * (R + 1);
    if (threadIdx.x == 0) {
        if (t < rg.P) {
            for (int r = 0; r < R; r++) cf[r] = 0.f, dz_bt[((size_t)bh * T + t) * R + r] = 0.f;
            cf[R] = 1.f;
        } else {
            stick_break_dev(xproj, bias, T, H, R, b, h, t, z, alpha);
            for (int r = 0; r <= R; r++) {
                float d = 0;
                for (int c = 0; c < Dv; c++)
                    d += dnum[c] * (A[r * Dv + c] - (r ? A[(r - 1) * Dv + c] : 0.f));
                dalpha[r] = d;
            }
            float later = dalpha[R] * alpha[R];
            float *dx = dxproj + (((size_t)b * T + t) * H + h) * R;
            for (int r = R - 1; r >= 0; r--) {
                float beta = 1.f / (1.f + expf(-z[r])), gr = dalpha[r] * alpha[r];
                float dzr = (1 - beta) * gr - beta * later;
                later += gr;
                dx[r] += dzr;
                dz_bt[((size_t)bh * T + t) * R + r] = dzr;
            }
            for (int r = 0; r < R; r++) cf[r] = alpha[r] - alpha[r + 1];
            cf[R] = alpha[R];
        }
    }
    __syncthreads();
    for (int c = threadIdx.x; c < Dv; c += blockDim.x) dn[((size_t)bh * T + t) * Dv + c] = dnum[c];
    // dphi(q_t)[a] = sum_r c_r (Box_r dN')[a] + c_R (total dN')[a]
    for (int a = threadIdx.x; a < m; a += blockDim.x) {
        float acc = 0;
        if (t >= rg.P)
            for (int r = 0; r < R; r++) {
                Corners k = box_corners(rg, t - rg.P, r);
                for (int q = 0; q < k.n; q++) {
                    const float *cell = S + (size_t)k.cell[q] * e + (size_t)a * Dv;
                    float part = 0;
                    for (int c = 0; c < Dv; c++) part += cell[c] * dnum[c];
                    acc += cf[r] * k.sign[q] * part;
                }
            }
        float part = 0;
        for (int c = 0; c < Dv; c++) part += tot[(size_t)a * Dv + c] * dnum[c];
        dp[((size_t)bh * T + t) * m + a] = acc + cf[R] * part;
    }
}

// One block per (batch, head): the gradient of every cell's phi(k) v'^T. Each thread owns
// elements x = (a, c): the corner gradients +-c_r phi(q_t)[a] dN'_t[c] query by query, the
// transposed table (a 2-D suffix sum), plus the every-key part; gtotal [BH, m Dv] for the
// prefix keys.
__global__ void ripple_cells_backward_kernel(float *gsat, float *gtotal, const float *p,
                                             const float *dn, const float *coef, RippleGrid rg,
                                             int T, int m, int Dv) {
    int bh = blockIdx.x, R = rg.R;
    size_t e = (size_t)m * Dv, cells = (size_t)rg.Hg * rg.W;
    float *G = gsat + (size_t)bh * cells * e;
    for (size_t x = threadIdx.x; x < e; x += blockDim.x) {
        int a = (int)(x / Dv), c = (int)(x % Dv);
        for (size_t cell = 0; cell < cells; cell++) G[cell * e + x] = 0.f;
        float tot = 0;
        for (int t = 0; t < T; t++) {
            const float *cf = coef + ((size_t)bh * T + t) * (R + 1);
            float pd = p[((size_t)bh * T + t) * m + a] * dn[((size_t)bh * T + t) * Dv + c];
            tot += cf[R] * pd;
            if (t < rg.P) continue;
            for (int r = 0; r < R; r++) {
                Corners k = box_corners(rg, t - rg.P, r);
                for (int q = 0; q < k.n; q++)
                    G[(size_t)k.cell[q] * e + x] += k.sign[q] * cf[r] * pd;
            }
        }
        for (long cell = (long)cells - 1; cell >= 0; cell--) {
            int i = (int)(cell / rg.W), j = (int)(cell % rg.W);
            float val = G[cell * e + x];
            if (i + 1 < rg.Hg) val += G[(cell + rg.W) * e + x];
            if (j + 1 < rg.W) val += G[(cell + 1) * e + x];
            if (i + 1 < rg.Hg && j + 1 < rg.W) val -= G[(cell + rg.W + 1) * e + x];
            G[cell * e + x] = val;
        }
        for (size_t cell = 0; cell < (size_t)rg.n; cell++) G[cell * e + x] += tot;
        gtotal[(size_t)bh * e + x] = tot;
    }
}

// One block per key (bh, u): dphi(k_u) = G v'_u (df, overwritten) and dv_u += G^T phi(k_u).
__global__ void ripple_keys_backward_kernel(float *df, float *dqkv, const float *gsat,
                                            const float *gtotal, const float *f, const float *v,
                                            RippleGrid rg, int T, int C, int H, int m) {
    int D = C / H, Dv = D + 1, bh = blockIdx.x / T, u = blockIdx.x % T, b = bh / H, h = bh % H;
    size_t e = (size_t)m * Dv, cells = (size_t)rg.Hg * rg.W;
    const float *G =
        u < rg.P ? gtotal + (size_t)bh * e : gsat + ((size_t)bh * cells + (u - rg.P)) * e;
    const float *fu = f + ((size_t)bh * T + u) * m, *vu = v + ((size_t)bh * T + u) * Dv;
    for (int a = threadIdx.x; a < m; a += blockDim.x) {
        float acc = 0;
        for (int c = 0; c < Dv; c++) acc += G[(size_t)a * Dv + c] * vu[c];
        df[((size_t)bh * T + u) * m + a] = acc;
    }
    for (int c = threadIdx.x; c < D; c += blockDim.x) {
        float acc = 0;
        for (int a = 0; a < m; a++) acc += G[(size_t)a * Dv + c] * fu[a];
        dqkv[((size_t)b * T + u) * 3 * C + 2 * C + h * D + c] += acc;
    }
}

// dbias[h, r] += sum over b, t of dz_bt, in a fixed order.
__global__ void ripple_bias_backward_kernel(float *dbias, const float *dz_bt, int B, int T, int H,
                                            int R) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= H * R) return;
    int h = idx / R, r = idx % R;
    float acc = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) acc += dz_bt[(((size_t)b * H + h) * T + t) * R + r];
    dbias[idx] += acc;
}

// Features, V', the table and the every-key sum; the table lives in bufs[0], totals in w.states.
static float *ripple_prepare(const LinShape &g, const Work &w, const RippleGrid &rg,
                             const float *qkv, const float *const *fmap) {
    static float *sat = NULL;
    static size_t have = 0;
    size_t e = (size_t)g.m * g.Dv, cells = (size_t)rg.Hg * rg.W;
    float *S = mt_cuda_grow(&sat, &have, (size_t)g.BH * (cells ? cells : 1) * e);
    size_t nv = (size_t)g.BH * g.T * g.Dv;
    gather_values_kernel<<<ceil_div(nv, 256), 256>>>(w.v, qkv, g);
    CUDA_LAUNCH_CHECK();
    features(g, w, qkv, fmap);
    ripple_sat_kernel<<<g.BH, 256>>>(S, w.states, w.f, w.v, rg, g.T, g.m, g.Dv);
    CUDA_LAUNCH_CHECK();
    return S;
}

extern "C" void attention_ripple_forward_cuda(float *out_btc, float *den_bht, const float *qkv_btc3,
                                              const float *xproj, const float *bias,
                                              const float *const *fmap, const OpShape *s) {
    LinShape g = ripple_lin_shape(s);
    RippleGrid rg = ripple_grid(s);
    Work w = work_for(g, false);
    float *S = ripple_prepare(g, w, rg, qkv_btc3, fmap);
    ripple_forward_kernel<<<g.BH * g.T, 128, query_shared(rg.R, g.Dv)>>>(
        out_btc, den_bht, w.p, S, w.states, xproj, bias, rg, g.B, g.T, g.C, g.H, g.m, g.eps);
    CUDA_LAUNCH_CHECK();
}

extern "C" void attention_ripple_backward_cuda(float *dqkv_btc3, float *dxproj, float *dbias,
                                               float *const *dfmap, const float *dout_btc,
                                               const float *out_btc, const float *den_bht,
                                               const float *qkv_btc3, const float *xproj,
                                               const float *bias, const float *const *fmap,
                                               const OpShape *s) {
    LinShape g = ripple_lin_shape(s);
    RippleGrid rg = ripple_grid(s);
    Work w = work_for(g, true);
    float *S = ripple_prepare(g, w, rg, qkv_btc3, fmap);
    static float *bufs[3];
    static size_t have[3];
    size_t e = (size_t)g.m * g.Dv, cells = (size_t)rg.Hg * rg.W, rows = (size_t)g.BH * g.T;
    float *gsat = mt_cuda_grow(&bufs[0], &have[0], (size_t)g.BH * (cells ? cells : 1) * e);
    float *coef = mt_cuda_grow(&bufs[1], &have[1], rows * (rg.R + 1));
    float *dz_bt = mt_cuda_grow(&bufs[2], &have[2], rows * rg.R);
    ripple_query_backward_kernel<<<g.BH * g.T, 128, query_shared(rg.R, g.Dv)>>>(
        w.dn, coef, dz_bt, dxproj, w.dp, dout_btc, out_btc, den_bht, w.p, S, w.states, xproj, bias,
        rg, g.B, g.T, g.C, g.H, g.m);
    CUDA_LAUNCH_CHECK();
    ripple_cells_backward_kernel<<<g.BH, 256>>>(gsat, w.rstates, w.p, w.dn, coef, rg, g.T, g.m,
                                                g.Dv);
    CUDA_LAUNCH_CHECK();
    ripple_keys_backward_kernel<<<g.BH * g.T, 128>>>(w.df, dqkv_btc3, gsat, w.rstates, w.f, w.v, rg,
                                                     g.T, g.C, g.H, g.m);
    CUDA_LAUNCH_CHECK();
    if (dbias) {
        ripple_bias_backward_kernel<<<ceil_div(g.H * rg.R, 64), 64>>>(dbias, dz_bt, g.B, g.T, g.H,
                                                                      rg.R);
        CUDA_LAUNCH_CHECK();
    }
    features_backward(g, w, dqkv_btc3, qkv_btc3, fmap, dfmap);
}

// ---- the row's kernels (kernels/cpu/attention_ripple.c has the row)
// ------------------------------
static void ripple_fwd(const OpShape *s, const float *const *in, float *const *out, float *sv) {
    attention_ripple_forward_cuda(out[0], sv, in[CORE_IN_QKV], in[CORE_IN_XPROJ],
                                  in[CORE_IN_PARAMS], in + CORE_IN_PARAMS + 1, s);
}
static void ripple_bwd(const OpShape *s, const float *const *in, const float *const *out,
                       const float *sv, const float *const *dout, float *const *din) {
    attention_ripple_backward_cuda(din[CORE_IN_QKV], din[CORE_IN_XPROJ], din[CORE_IN_PARAMS],
                                   din + CORE_IN_PARAMS + 1, dout[0], out[0], sv, in[CORE_IN_QKV],
                                   in[CORE_IN_XPROJ], in[CORE_IN_PARAMS], in + CORE_IN_PARAMS + 1,
                                   s);
}
extern "C" const CudaKernels cuda_op_ripple = {ripple_fwd, ripple_bwd, NULL};
