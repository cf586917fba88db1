// The circulant-diagonal SSM (mixers.md 17), the twin of kernels/cpu/ssm_circulant_diagonal.c:
// the same inputs, saved entering states and composites, the same three phases:
//   1. every (batch row, chunk) at once, one step of all chunks per iteration: the end states
//      from a zero start and the composites P_c (the n columns of the identity through the
//      chunk), each step one batched cuFFT R2C / C2R pair over every vector;
//   2. cyclic reduction over the chunks, each level one batched GEMV kernel and one
//      cublasSgemmBatched over pointer arrays (the backward's level 0 reads the saved composites
//      transposed and in reverse chunk order, which no strided batch expresses);
//   3. the chunks rerun from their entering states, states out.
// Backward: the adjoint's chunk sends (phase 1), their reduction with P_c^T (phase 2), then per
// step of every chunk the gradients; h_{t-1} comes from the forward's output (the layer hands
// it to backward), so no rerun. A step's vectors are length-n real transforms: FFTs of one
// vector per (batch row, chunk), or n + 1 for the composites, batched across the sequence.
// The composite products stay fp32 under precision: bf16 (they compound across chunks).
#include "../ssm_circulant_diagonal.h"
#include "cufft_plans.cuh"

// Which (batch row, chunk) unit u of a vector set is: row u / upr, chunk c_first + c_step (u %
// upr); per_unit vectors each (1, or n composite columns).
struct CdMap {
    int per_unit, upr, c_first, c_step;
};

// The token of step r of unit u, or false past the end of its chunk (the last one is partial).
__device__ inline bool cd_token(const CdDims &d, const CdMap &m, int unit, int r, size_t *tok,
                                int *t) {
    int b = unit / m.upr, c = m.c_first + m.c_step * (unit % m.upr);
    int len = min(d.L, d.T - c * d.L);
    if (r >= len) return false;
    *t = c * d.L + r;
    *tok = (size_t)b * d.T + *t;
    return true;
}

// cd_real_bin of the header, for device code.
__device__ inline int cd_real_bin_d(int k, int n) {
    return k == 0 || 2 * k == n;
}

__device__ inline float cd_sigmoid(float x) {
    return 1.f / (1.f + expf(-x));
}

// d1, d2 [NT][n] and lam / n [NT][K] of every token.
__global__ void cd_coef_kernel(CdDims d, const float *in0, const float *b_d1, const float *b_d2,
                               const float *b_rho, const float *b_th, float *d1, float *d2,
                               cufftComplex *lamn) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    int w = d.n + d.K;
    if (idx >= (size_t)d.B * d.T * w) return;
    size_t tok = idx / w;
    int e = (int)(idx % w);
    const float *raw = in0 + tok * d.W_in;
    if (e < d.n) {
        d1[tok * d.n + e] = tanhf(raw[d.o_d1 + e] + b_d1[e]);
        d2[tok * d.n + e] = tanhf(raw[d.o_d2 + e] + b_d2[e]);
        return;
    }
    int k = e - d.n;
    float rho = (float)CD_RHO_MAX * cd_sigmoid(raw[d.o_rho + k] + b_rho[k]) / d.n;
    float th = raw[d.o_th + k] + b_th[k], sn, cs;
    sincosf(th, &sn, &cs);
    lamn[tok * d.K + k] =
        cd_real_bin_d(k, d.n) ? make_cuComplex(rho * cs, 0.f) : make_cuComplex(rho * cs, rho * sn);
}

// U = coef (.) H for the vectors of active units (coef: d2 forward, d1 for the adjoint).
__global__ void cd_pre_kernel(CdDims d, CdMap m, int nvec, int r, const float *H, float *U,
                              const float *coef) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)nvec * d.n) return;
    int i = (int)(idx % d.n), unit = (int)(idx / d.n / m.per_unit), t;
    size_t tok;
    if (!cd_token(d, m, unit, r, &tok, &t)) return;
    U[idx] = coef[tok * d.n + i] * H[idx];
}

// S *= lam / n (or its conjugate: Circ^T's spectrum).
__global__ void cd_spec_kernel(CdDims d, CdMap m, int nvec, int r, cufftComplex *S,
                               const cufftComplex *lamn, int conj) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)nvec * d.K) return;
    int k = (int)(idx % d.K), unit = (int)(idx / d.K / m.per_unit), t;
    size_t tok;
    if (!cd_token(d, m, unit, r, &tok, &t)) return;
    cufftComplex a = S[idx], l = lamn[tok * d.K + k];
    float li = conj ? -l.y : l.y;
    S[idx] = make_cuComplex(a.x * l.x - a.y * li, a.x * li + a.y * l.x);
}

// H = coef (.) U + add, add the row of `add` (leading dimension ld) at the token (forward: B x)
// or, with prev, at the token before it from the chunk's second step on (the adjoint's dout);
// emit: the state to the output too.
__global__ void cd_post_kernel(CdDims d, CdMap m, int nvec, int r, float *H, const float *U,
                               const float *coef, const float *add, int ld, int prev, float *emit) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)nvec * d.n) return;
    int i = (int)(idx % d.n), unit = (int)(idx / d.n / m.per_unit), t;
    size_t tok;
    if (!cd_token(d, m, unit, r, &tok, &t)) return;
    float h = coef[tok * d.n + i] * U[idx];
    if (add && !prev) h += add[tok * ld + i];
    if (add && prev && r > 0) h += add[(tok - 1) * ld + i];
    H[idx] = h;
    if (emit) emit[tok * d.W_out + i] = h;
}

// One step r of every unit of a vector set: H <- A_r H (+ add), or A_r^T H with adjoint.
struct CdWork {
    float *d1, *d2, *u;
    cufftComplex *lamn, *spec;
};

static void cd_step_set(const CdDims &d, const CdMap &m, int nvec, int r, float *H, const CdWork &w,
                        int adjoint, const float *add, int ld, int prev, float *emit) {
    size_t nr = (size_t)nvec * d.n, nc = (size_t)nvec * d.K;
    cd_pre_kernel<<<ceil_div(nr, 256), 256>>>(d, m, nvec, r, H, w.u, adjoint ? w.d1 : w.d2);
    CUDA_LAUNCH_CHECK();
    CUFFT_CHECK(cufftExecR2C(mt_cufft_plan(d.n, nvec, CUFFT_R2C), w.u, w.spec));
    cd_spec_kernel<<<ceil_div(nc, 256), 256>>>(d, m, nvec, r, w.spec, w.lamn, adjoint);
    CUDA_LAUNCH_CHECK();
    CUFFT_CHECK(cufftExecC2R(mt_cufft_plan(d.n, nvec, CUFFT_C2R), w.spec, w.u));
    cd_post_kernel<<<ceil_div(nr, 256), 256>>>(d, m, nvec, r, H, w.u, adjoint ? w.d2 : w.d1, add,
                                               ld, prev, emit);
    CUDA_LAUNCH_CHECK();
}

// ---- cyclic reduction (the CPU's cd_cyclic_reduction) ------------------------------------------

struct CdLv {
    const float *base;  // level 0: the saved composites [B][nc][n][n]; else [B][m][n][n]
    int m, trans, rev, level0;
};

__device__ inline const float *cd_lv_mat(const CdDims &d, const CdLv &lv, int b, long k) {
    size_t nn = (size_t)d.n * d.n;
    if (lv.level0) return lv.base + ((size_t)b * d.nc + (lv.rev ? d.nc - 1 - k : k)) * nn;
    return lv.base + ((size_t)b * lv.m + k) * nn;
}

__device__ inline long cd_cr_pos(long k, int level) {
    return ((k + 1) << level) - 1;
}

// One block per (batch row, i): X[pos(2i + dst)] += op(M_{2i + mat}) X[pos(2i + src)], i from
// i0; op(M) column-major, transposed with lv.trans.
__global__ void cd_cr_gemv_kernel(CdDims d, CdLv lv, int m_total, int level, int per_row, int i0,
                                  int mat, int src, int dst, float *X) {
    int b = blockIdx.x / per_row;
    long i = i0 + blockIdx.x % per_row;
    const float *A = cd_lv_mat(d, lv, b, 2 * i + mat);
    const float *x = X + ((size_t)b * m_total + cd_cr_pos(2 * i + src, level)) * d.n;
    float *y = X + ((size_t)b * m_total + cd_cr_pos(2 * i + dst, level)) * d.n;
    for (int r = threadIdx.x; r < d.n; r += blockDim.x) {
        float acc = 0.f;
        for (int c = 0; c < d.n; c++)
            acc += (lv.trans ? A[c + (size_t)r * d.n] : A[r + (size_t)c * d.n]) * x[c];
        y[r] += acc;
    }
}

// The batched products M'_i = op(M_{2i+1}) op(M_{2i}), i >= 1, of every batch row.
__global__ void cd_cr_ptr_kernel(CdDims d, CdLv lv, int half, float *next, const float **A,
                                 const float **Bm, float **C) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= d.B * (half - 1)) return;
    int b = j / (half - 1);
    long i = 1 + j % (half - 1);
    A[j] = cd_lv_mat(d, lv, b, 2 * i + 1);
    Bm[j] = cd_lv_mat(d, lv, b, 2 * i);
    C[j] = next + ((size_t)b * half + i) * d.n * d.n;
}

static void cd_cyclic_reduction(const CdDims &d, const float *comp, int adjoint, int m, float *X) {
    if (m < 2) return;
    int n = d.n, threads = n < 128 ? 32 * ceil_div(n, 32) : 128;
    size_t nn = (size_t)n * n;
    enum { MAX_LEVELS = 40 };
    CdLv lv[MAX_LEVELS];
    size_t bytes[MAX_LEVELS];
    lv[0] = CdLv{comp, m, adjoint, adjoint, 1};
    int levels = 1;
    const float one = 1.f, zero = 0.f;
    while (lv[levels - 1].m > 1) {
        const CdLv cur = lv[levels - 1];
        int l = levels - 1, half = cur.m / 2;
        bytes[levels] = sizeof(float) * (size_t)d.B * half * nn;
        float *next = (float *)mt_cuda_temp_alloc(bytes[levels]);
        cd_cr_gemv_kernel<<<d.B * half, threads>>>(d, cur, m, l, half, 0, 1, 0, 1, X);
        CUDA_LAUNCH_CHECK();
        if (half > 1) {
            int count = d.B * (half - 1);
            size_t pbytes = sizeof(float *) * (size_t)count;
            void *ptrs = mt_cuda_temp_alloc(3 * pbytes);
            const float **A = (const float **)ptrs, **Bm = A + count;
            float **C = (float **)(Bm + count);
            cd_cr_ptr_kernel<<<ceil_div(count, 128), 128>>>(d, cur, half, next, A, Bm, C);
            CUDA_LAUNCH_CHECK();
            cublasOperation_t op = cur.trans ? CUBLAS_OP_T : CUBLAS_OP_N;
            CUBLAS_CHECK(cublasSgemmBatched(mt_cublas(), op, op, n, n, n, &one, A, n, Bm, n, &zero,
                                            C, n, count));
            mt_cuda_temp_free(ptrs, 3 * pbytes);
        }
        lv[levels++] = CdLv{next, half, 0, 0, 0};
    }
    for (int l = levels - 2; l >= 0; l--) {
        int evens = (lv[l].m + 1) / 2;
        if (evens < 2) continue;
        cd_cr_gemv_kernel<<<d.B *(evens - 1), threads>>>(d, lv[l], m, l, evens - 1, 1, 0, -1, 0, X);
        CUDA_LAUNCH_CHECK();
    }
    for (int l = 1; l < levels; l++) mt_cuda_temp_free((void *)lv[l].base, bytes[l]);
}

// ---- buffers -----------------------------------------------------------------------------------

struct CdBufs {
    CdWork w, wc;  // the per-vector work of a set: one vector per unit, and the composites
    float *H, *Hc, *X, *part;
};

// Grown on demand and kept across calls. nvec: the most single vectors of a set; ncols: the
// composite columns (0: none).
static CdBufs cd_bufs(const CdDims &d, size_t nvec, size_t ncols) {
    static float *bufs[12];
    static size_t have[12];
    size_t NT = (size_t)d.B * d.T, n = d.n, K = d.K;
    CdBufs b;
    b.w.d1 = mt_cuda_grow(&bufs[0], &have[0], NT * n);
    b.w.d2 = mt_cuda_grow(&bufs[1], &have[1], NT * n);
    b.w.lamn = (cufftComplex *)mt_cuda_grow(&bufs[2], &have[2], NT * K * 2);
    b.w.u = mt_cuda_grow(&bufs[3], &have[3], nvec * n);
    b.w.spec = (cufftComplex *)mt_cuda_grow(&bufs[4], &have[4], nvec * K * 2);
    b.wc = b.w;
    b.wc.u = mt_cuda_grow(&bufs[5], &have[5], ncols * n + 1);
    b.wc.spec = (cufftComplex *)mt_cuda_grow(&bufs[6], &have[6], ncols * K * 2 + 2);
    b.H = mt_cuda_grow(&bufs[7], &have[7], nvec * n);
    b.Hc = mt_cuda_grow(&bufs[8], &have[8], ncols * n + 1);
    b.X = mt_cuda_grow(&bufs[9], &have[9], (size_t)d.B * d.nc * n);
    b.part = mt_cuda_grow(&bufs[10], &have[10], (size_t)d.B * d.nc * (2 * n + 2 * K));
    return b;
}

static void cd_coefs(const CdDims &d, const float *const *in, const CdWork &w) {
    size_t total = (size_t)d.B * d.T * (d.n + d.K);
    cd_coef_kernel<<<ceil_div(total, 256), 256>>>(d, in[CORE_IN_QKV], in[CORE_IN_PARAMS],
                                                  in[CORE_IN_PARAMS + 1], in[CORE_IN_PARAMS + 2],
                                                  in[CORE_IN_PARAMS + 3], w.d1, w.d2, w.lamn);
    CUDA_LAUNCH_CHECK();
}

// ---- forward -----------------------------------------------------------------------------------

// Hc: the identity in every composite unit (column j of unit u at (u n + j) n).
__global__ void cd_identity_kernel(float *Hc, int units, int n) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)units * n * n) return;
    int i = (int)(idx % n), j = (int)(idx / n % n);
    Hc[idx] = i == j ? 1.f : 0.f;
}

// The composites of chunks 1..m-1 (work [B][m-1][n][n]) into their saved slots [B][nc][n][n].
__global__ void cd_store_comp_kernel(CdDims d, int m, const float *Hc, float *comp) {
    size_t nn = (size_t)d.n * d.n, idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)d.B * (m - 1) * nn) return;
    size_t e = idx % nn, unit = idx / nn;
    int b = (int)(unit / (m - 1)), c = 1 + (int)(unit % (m - 1));
    comp[((size_t)b * d.nc + c) * nn + e] = Hc[idx];
}

// The entering states: 0 for chunk 0, else the reduction's unknown c - 1; to the saved copy and
// to the rerun's state H [B][nc][n].
__global__ void cd_enter_kernel(CdDims d, int m, const float *X, float *enter, float *H) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)d.B * d.nc * d.n) return;
    int i = (int)(idx % d.n), c = (int)(idx / d.n % d.nc), b = (int)(idx / d.n / d.nc);
    float v = c ? X[((size_t)b * m + c - 1) * d.n + i] : 0.f;
    enter[idx] = v, H[idx] = v;
}

// out's u columns = input 0's (forward, W_o's skip D), or din0's += dout's (backward).
__global__ void cd_skip_kernel(CdDims d, float *dst, int ld_dst, int off_dst, const float *src,
                               int ld_src, int off_src, int add) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)d.B * d.T * d.C) return;
    size_t tok = idx / d.C;
    int c = (int)(idx % d.C);
    float v = src[tok * ld_src + off_src + c];
    float *o = dst + tok * ld_dst + off_dst + c;
    *o = add ? *o + v : v;
}

static void circulant_diagonal_fwd(const OpShape *s, const float *const *in, float *const *out,
                                   float *saved) {
    CdDims d = cd_dims(s);
    int n = d.n, m = d.nc - 1;
    size_t ncols = m >= 2 ? (size_t)d.B * (m - 1) * n : 0;
    CdBufs bf = cd_bufs(d, (size_t)d.B * d.nc, ncols);
    cd_coefs(d, in, bf.w);
    float *enter = saved, *comp = saved + cd_saved_states(&d);
    const float *bx = in[CORE_IN_QKV] + d.o_bx;
    if (m > 0) {
        // Phase 1: chunks 0..nc-2 are whole, so every unit takes every step.
        CdMap ms = {1, m, 0, 1}, mc = {n, m - 1, 1, 1};
        CUDA_CHECK(cudaMemsetAsync(bf.X, 0, sizeof(float) * (size_t)d.B * m * n, 0));
        if (ncols) {
            cd_identity_kernel<<<ceil_div(ncols * n, 256), 256>>>(bf.Hc, d.B * (m - 1), n);
            CUDA_LAUNCH_CHECK();
        }
        for (int r = 0; r < d.L; r++) {
            cd_step_set(d, ms, d.B * m, r, bf.X, bf.w, 0, bx, d.W_in, 0, NULL);
            if (ncols) cd_step_set(d, mc, (int)ncols, r, bf.Hc, bf.wc, 0, NULL, 0, 0, NULL);
        }
        if (ncols) {
            size_t total = (size_t)d.B * (m - 1) * n * n;
            cd_store_comp_kernel<<<ceil_div(total, 256), 256>>>(d, m, bf.Hc, comp);
            CUDA_LAUNCH_CHECK();
        }
        // Phase 2
        cd_cyclic_reduction(d, comp, 0, m, bf.X);
    }
    // Phase 3
    cd_enter_kernel<<<ceil_div((size_t)d.B * d.nc * n, 256), 256>>>(d, m > 0 ? m : 1, bf.X, enter,
                                                                    bf.H);
    CUDA_LAUNCH_CHECK();
    CdMap ma = {1, d.nc, 0, 1};
    for (int r = 0; r < d.L; r++)
        cd_step_set(d, ma, d.B * d.nc, r, bf.H, bf.w, 0, bx, d.W_in, 0, out[0]);
    cd_skip_kernel<<<ceil_div((size_t)d.B * d.T * d.C, 256), 256>>>(
        d, out[0], d.W_out, n, in[CORE_IN_QKV], d.W_in, d.o_u, 0);
    CUDA_LAUNCH_CHECK();
}

// ---- backward ----------------------------------------------------------------------------------

// The adjoint entering the end of each unit's chunk: dout there, plus (phase 3) the reduction's
// unknown nc-2-c for every chunk but the last.
__global__ void cd_adjoint_init_kernel(CdDims d, CdMap m, int units, const float *dout,
                                       const float *X, int m_eq, float *G) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)units * d.n) return;
    int i = (int)(idx % d.n), unit = (int)(idx / d.n);
    int b = unit / m.upr, c = m.c_first + m.c_step * (unit % m.upr);
    int len = min(d.L, d.T - c * d.L);
    size_t tok = (size_t)b * d.T + c * d.L + len - 1;
    float g = dout[tok * d.W_out + i];
    if (X && c < d.nc - 1) g += X[((size_t)b * m_eq + (d.nc - 2 - c)) * d.n + i];
    G[idx] = g;
}

// Step r of every chunk, before the transforms: A2[u][0] = d2 (.) h_{t-1} (from the output;
// 0 at t = 0), A2[u][1] = dv = d1 (.) g.
__global__ void cd_grad_pre_kernel(CdDims d, CdMap m, int units, int r, const float *out,
                                   const float *G, const float *d1, const float *d2, float *A2) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)units * d.n) return;
    int i = (int)(idx % d.n), unit = (int)(idx / d.n), t;
    size_t tok;
    if (!cd_token(d, m, unit, r, &tok, &t)) return;
    float h = t > 0 ? out[(tok - 1) * d.W_out + i] : 0.f;
    A2[((size_t)unit * 2) * d.n + i] = d2[tok * d.n + i] * h;
    A2[((size_t)unit * 2 + 1) * d.n + i] = d1[tok * d.n + i] * G[idx];
}

// Per bin: G = (w / n) FFT(dv) conj(U) (real part only at the real bins) into rho's and theta's
// gradients; then the spectra of v = IFFT(lam U) and du = IFFT(conj(lam) FFT(dv)).
__global__ void cd_grad_spec_kernel(CdDims d, CdMap m, int units, int r, const float *in0,
                                    const float *b_rho, const float *b_th, const cufftComplex *lamn,
                                    cufftComplex *S2, float *din0, float *part) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)units * d.K) return;
    int k = (int)(idx % d.K), unit = (int)(idx / d.K), t;
    size_t tok;
    if (!cd_token(d, m, unit, r, &tok, &t)) return;
    cufftComplex *su = S2 + ((size_t)unit * 2) * d.K + k, *sv = su + d.K;
    cufftComplex U = *su, DV = *sv, l = lamn[tok * d.K + k];
    int real_bin = cd_real_bin_d(k, d.n);
    float wn = (real_bin ? 1.f : 2.f) / d.n;
    float gr = wn * (DV.x * U.x + DV.y * U.y), gi = real_bin ? 0.f : wn * (DV.y * U.x - DV.x * U.y);
    const float *raw = in0 + tok * d.W_in;
    float sg = cd_sigmoid(raw[d.o_rho + k] + b_rho[k]), rho = (float)CD_RHO_MAX * sg;
    float sn, cs;
    sincosf(raw[d.o_th + k] + b_th[k], &sn, &cs);
    float drho = (float)CD_RHO_MAX * sg * (1.f - sg) * (cs * gr + sn * gi);
    float dth = rho * (cs * gi - sn * gr);
    float *draw = din0 + tok * d.W_in, *p = part + (size_t)unit * (2 * d.n + 2 * d.K);
    draw[d.o_rho + k] += drho, p[2 * d.n + k] += drho;
    draw[d.o_th + k] += dth, p[2 * d.n + d.K + k] += dth;
    *su = make_cuComplex(l.x * U.x - l.y * U.y, l.x * U.y + l.y * U.x);
    *sv = make_cuComplex(l.x * DV.x + l.y * DV.y, l.x * DV.y - l.y * DV.x);
}

// After the transforms (A2[u][0] = v, A2[u][1] = du): d1's, d2's and B x's gradients, then the
// adjoint one step back, g <- d2 (.) du + dout_{t-1}.
__global__ void cd_grad_post_kernel(CdDims d, CdMap m, int units, int r, const float *out,
                                    const float *dout, const float *d1, const float *d2,
                                    const float *A2, float *G, float *din0, float *part) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)units * d.n) return;
    int i = (int)(idx % d.n), unit = (int)(idx / d.n), t;
    size_t tok;
    if (!cd_token(d, m, unit, r, &tok, &t)) return;
    float h = t > 0 ? out[(tok - 1) * d.W_out + i] : 0.f, g = G[idx];
    float v = A2[((size_t)unit * 2) * d.n + i], du = A2[((size_t)unit * 2 + 1) * d.n + i];
    float a1 = d1[tok * d.n + i], a2 = d2[tok * d.n + i];
    float da1 = g * v * (1.f - a1 * a1), da2 = du * h * (1.f - a2 * a2);
    float *draw = din0 + tok * d.W_in, *p = part + (size_t)unit * (2 * d.n + 2 * d.K);
    draw[d.o_d1 + i] += da1, p[i] += da1;
    draw[d.o_d2 + i] += da2, p[d.n + i] += da2;
    draw[d.o_bx + i] += g;
    G[idx] = a2 * du + (r > 0 ? dout[(tok - 1) * d.W_out + i] : 0.f);
}

// The biases' gradients: per entry, the partials of batch rows then chunks in order (the CPU's).
__global__ void cd_bias_grad_kernel(CdDims d, const float *part, float *db_d1, float *db_d2,
                                    float *db_rho, float *db_th) {
    int p = blockIdx.x * blockDim.x + threadIdx.x, np = 2 * d.n + 2 * d.K;
    if (p >= np) return;
    float acc = 0.f;
    for (size_t j = 0; j < (size_t)d.B * d.nc; j++) acc += part[j * np + p];
    if (p < d.n)
        db_d1[p] += acc;
    else if (p < 2 * d.n)
        db_d2[p - d.n] += acc;
    else if (p < 2 * d.n + d.K)
        db_rho[p - 2 * d.n] += acc;
    else
        db_th[p - 2 * d.n - d.K] += acc;
}

static void circulant_diagonal_bwd(const OpShape *s, const float *const *in,
                                   const float *const *out, const float *saved,
                                   const float *const *dout, float *const *din) {
    CdDims d = cd_dims(s);
    int n = d.n, K = d.K, m = d.nc - 1, units = d.B * d.nc;
    // The single-vector set holds two vectors per unit in phase 3 (h-side and g-side).
    CdBufs bf = cd_bufs(d, 2 * (size_t)units, 0);
    cd_coefs(d, in, bf.w);
    const float *comp = saved + cd_saved_states(&d);
    float *din0 = din[CORE_IN_QKV];
    if (m > 0) {
        // Phase 1: unit k is chunk nc-1-k, from a zero adjoint entering it.
        CdMap mk = {1, m, d.nc - 1, -1};
        cd_adjoint_init_kernel<<<ceil_div((size_t)d.B * m * n, 256), 256>>>(d, mk, d.B * m, dout[0],
                                                                            NULL, m, bf.X);
        CUDA_LAUNCH_CHECK();
        for (int r = d.L - 1; r >= 0; r--)
            cd_step_set(d, mk, d.B * m, r, bf.X, bf.w, 1, dout[0], d.W_out, 1, NULL);
        // Phase 2
        cd_cyclic_reduction(d, comp, 1, m, bf.X);
    }
    // Phase 3: every chunk at once, last step first.
    CdMap ma = {1, d.nc, 0, 1};
    float *G = bf.H, *A2 = bf.w.u;
    cd_adjoint_init_kernel<<<ceil_div((size_t)units * n, 256), 256>>>(d, ma, units, dout[0],
                                                                      m > 0 ? bf.X : NULL, m, G);
    CUDA_LAUNCH_CHECK();
    CUDA_CHECK(cudaMemsetAsync(bf.part, 0, sizeof(float) * (size_t)units * (2 * n + 2 * K), 0));
    size_t nr = (size_t)units * n, nk = (size_t)units * K;
    for (int r = d.L - 1; r >= 0; r--) {
        cd_grad_pre_kernel<<<ceil_div(nr, 256), 256>>>(d, ma, units, r, out[0], G, bf.w.d1, bf.w.d2,
                                                       A2);
        CUDA_LAUNCH_CHECK();
        CUFFT_CHECK(cufftExecR2C(mt_cufft_plan(n, 2 * units, CUFFT_R2C), A2, bf.w.spec));
        cd_grad_spec_kernel<<<ceil_div(nk, 256), 256>>>(
            d, ma, units, r, in[CORE_IN_QKV], in[CORE_IN_PARAMS + 2], in[CORE_IN_PARAMS + 3],
            bf.w.lamn, bf.w.spec, din0, bf.part);
        CUDA_LAUNCH_CHECK();
        CUFFT_CHECK(cufftExecC2R(mt_cufft_plan(n, 2 * units, CUFFT_C2R), bf.w.spec, A2));
        cd_grad_post_kernel<<<ceil_div(nr, 256), 256>>>(d, ma, units, r, out[0], dout[0], bf.w.d1,
                                                        bf.w.d2, A2, G, din0, bf.part);
        CUDA_LAUNCH_CHECK();
    }
    cd_skip_kernel<<<ceil_div((size_t)d.B * d.T * d.C, 256), 256>>>(d, din0, d.W_in, d.o_u, dout[0],
                                                                    d.W_out, n, 1);
    CUDA_LAUNCH_CHECK();
    cd_bias_grad_kernel<<<ceil_div(2 * n + 2 * K, 64), 64>>>(
        d, bf.part, din[CORE_IN_PARAMS], din[CORE_IN_PARAMS + 1], din[CORE_IN_PARAMS + 2],
        din[CORE_IN_PARAMS + 3]);
    CUDA_LAUNCH_CHECK();
}

extern "C" const CudaKernels cuda_op_circulant_diagonal = {circulant_diagonal_fwd,
                                                           circulant_diagonal_bwd, NULL};
