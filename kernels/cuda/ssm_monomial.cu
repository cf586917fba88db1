// Monomial transitions (mixers.md 22), the twin of kernels/cpu/ssm_monomial.c: the same inputs,
// outputs and gradients, nothing saved (backward reads the states from the output). The gates
// run one block per token (threads over the rows of P_t); the recurrence one block per batch
// row, a thread per state, sequential over T with the state in shared memory (an O(N) gather
// per step, O(N r) soft); backward's reverse pass is the same shape, its carry a gather per
// source (the CPU's order, no atomics), then one block per token turns the adjoints into dM_t
// and the selection logits' gradient, and dA_k = sum_t s_t,k dM_t is one matrix product.
// The biases' gradients: per batch row, tokens in reverse, then batch rows in order (the CPU's).
#include "../ssm_monomial.h"
#include "cuda_common.cuh"

#define MONO_TWO_PI_F 6.283185307179586f

static int mono_threads(int n) {
    int t = (n + 31) / 32 * 32;
    return t > 1024 ? 1024 : t;
}

// h_{t-1}[i] from the previous output row hp (Re [N], Im [N] at stride 1), or e_0 when hp is NULL.
__device__ inline float mono_h(const float *hp, int i) {
    return hp ? hp[i] : (i == 0 ? 1.f : 0.f);
}
__device__ inline float mono_hi(const float *hp, int N, int i) {
    return hp ? hp[N + i] : 0.f;
}

// (P_t h_{t-1})[shuffle(m)] (ssm_monomial.c mono_gather); pt_tok [N r], src_tok [N] of the token.
__device__ inline void mono_gather(const MonoDims &d, const float *hp, const float *pt_tok,
                                   const int *src_tok, int m, float &gr, float &gi) {
    int n = mono_shuffle(m, d.nb, d.r);
    if (d.select == MONO_STE) {
        gr = mono_h(hp, src_tok[n]), gi = mono_hi(hp, d.N, src_tok[n]);
        return;
    }
    const float *p = pt_tok + (size_t)n * d.r;
    int base = n / d.r * d.r;
    float sr = 0.f, si = 0.f;
    for (int j = 0; j < d.r; j++)
        sr += p[j] * mono_h(hp, base + j), si += p[j] * mono_hi(hp, d.N, base + j);
    gr = sr, gi = si;
}

// One block per token: the selection softmax (thread 0, in order, as the CPU), then per row n
// its logits over its block (k in order), first argmax, softmax (pt, when not NULL), and D of
// state n as (cos phi, sin phi, |D|, sigmoid(phase)).
__global__ void mono_gates_kernel(MonoDims d, const float *x, const float *A, const float *bmag,
                                  const float *bph, float *sk, float *pt, int *src, float *dg) {
    __shared__ float s[MONO_MAX_MATRICES];
    size_t tok = blockIdx.x;
    const float *xt = x + tok * d.W;
    if (threadIdx.x == 0) {
        float mx = xt[d.o_sel], sum = 0.f;
        for (int k = 1; k < d.K; k++) mx = fmaxf(mx, xt[d.o_sel + k]);
        for (int k = 0; k < d.K; k++) sum += s[k] = expf(xt[d.o_sel + k] - mx);
        for (int k = 0; k < d.K; k++) s[k] /= sum;
        if (sk)
            for (int k = 0; k < d.K; k++) sk[tok * d.K + k] = s[k];
    }
    __syncthreads();
    for (int n = threadIdx.x; n < d.N; n += blockDim.x) {
        float *p = pt ? pt + (tok * d.N + n) * d.r : NULL, bv = 0.f;
        int best = 0;
        for (int j = 0; j < d.r; j++) {
            float v = 0.f;
            for (int k = 0; k < d.K; k++) v += s[k] * A[((size_t)k * d.N + n) * d.r + j];
            if (p) p[j] = v;
            if (j == 0 || v > bv) bv = v, best = j;
        }
        if (src) src[tok * d.N + n] = n / d.r * d.r + best;
        if (p) {
            float z = 0.f;
            for (int j = 0; j < d.r; j++) z += p[j] = expf(p[j] - bv);
            for (int j = 0; j < d.r; j++) p[j] /= z;
        }
        float a = 1.f / (1.f + expf(-(xt[d.o_mag + n] + bmag[n])));
        float q = 1.f / (1.f + expf(-(xt[d.o_ph + n] + bph[n]))), phi = MONO_TWO_PI_F * q;
        float *g = dg + (tok * d.N + n) * 4;
        g[0] = cosf(phi), g[1] = sinf(phi), g[2] = a, g[3] = q;
    }
}

// One block per batch row: h_t = D_t (P_t h_{t-1})[shuffle] + Bx_t, double-buffered in shared
// memory (4 N floats).
__global__ void mono_forward_kernel(MonoDims d, const float *x, const float *pt, const int *src,
                                    const float *dg, float *out) {
    extern __shared__ float sh[];
    float *hp = sh, *hn = sh + 2 * d.N;
    int b = blockIdx.x, N = d.N;
    for (int m = threadIdx.x; m < N; m += blockDim.x) hp[m] = m == 0 ? 1.f : 0.f, hp[N + m] = 0.f;
    __syncthreads();
    for (int t = 0; t < d.T; t++) {
        size_t tok = (size_t)b * d.T + t;
        const float *xt = x + tok * d.W;
        for (int m = threadIdx.x; m < N; m += blockDim.x) {
            float gr, gi;
            mono_gather(d, hp, pt ? pt + tok * N * d.r : NULL, src ? src + tok * N : NULL, m, gr,
                        gi);
            const float *g4 = dg + (tok * N + m) * 4;
            float Dr = g4[2] * g4[0], Di = g4[2] * g4[1];
            float hr = Dr * gr - Di * gi + xt[d.o_bre + m],
                  hi = Dr * gi + Di * gr + xt[d.o_bim + m];
            hn[m] = hr, hn[N + m] = hi;
            out[tok * d.O + m] = hr, out[tok * d.O + N + m] = hi;
        }
        __syncthreads();  // every read of hp is done before the next step overwrites it
        float *tmp = hp;
        hp = hn, hn = tmp;
    }
}

// One block per batch row, tokens in reverse: G_t = dout_t + carry, the gradients of Bx, mag
// and phase, adj_t = conj(D_t) G_t (kept for the gate backward), then carry[j] = sum over the
// rows n of j's block of P_t[n][j] adj_t[unshuffle(n)], a gather per source j in n order.
// part [B, 2 N]: the row's d mag_bias, d phase_bias. Shared: carry, adj, part (6 N floats).
__global__ void mono_backward_scan_kernel(MonoDims d, const float *out, const float *gout,
                                          const float *pt, const int *src, const float *dg,
                                          float *dx, float *adj, float *part) {
    extern __shared__ float sh[];
    int b = blockIdx.x, N = d.N, r = d.r, soft = d.select == MONO_SOFT;
    float *carry = sh, *ad = sh + 2 * N, *acc = sh + 4 * N;
    for (int m = threadIdx.x; m < 2 * N; m += blockDim.x) carry[m] = 0.f, acc[m] = 0.f;
    __syncthreads();
    for (int t = d.T - 1; t >= 0; t--) {
        size_t tok = (size_t)b * d.T + t;
        const float *hp = t ? out + (tok - 1) * d.O : NULL, *g = gout + tok * d.O;
        const float *ptt = pt + tok * N * r;
        const int *st = src ? src + tok * N : NULL;
        float *dxt = dx + tok * d.W;
        for (int m = threadIdx.x; m < N; m += blockDim.x) {
            float Gr = g[m] + carry[m], Gi = g[N + m] + carry[N + m], gr, gi;
            dxt[d.o_bre + m] += Gr, dxt[d.o_bim + m] += Gi;
            mono_gather(d, hp, ptt, st, m, gr, gi);
            const float *g4 = dg + (tok * N + m) * 4;
            float cs = g4[0], sn = g4[1], a = g4[2], q = g4[3], Dr = a * cs, Di = a * sn;
            float dDr = gr * Gr + gi * Gi, dDi = gr * Gi - gi * Gr;  // conj(g) G
            float da = cs * dDr + sn * dDi, dphi = Dr * dDi - Di * dDr;
            float dmag = da * a * (1.f - a), dph = dphi * MONO_TWO_PI_F * q * (1.f - q);
            dxt[d.o_mag + m] += dmag, dxt[d.o_ph + m] += dph;
            acc[m] += dmag, acc[N + m] += dph;
            float ar = Dr * Gr + Di * Gi, ai = Dr * Gi - Di * Gr;  // conj(D) G
            ad[m] = ar, ad[N + m] = ai;
            adj[tok * 2 * N + m] = ar, adj[tok * 2 * N + N + m] = ai;
        }
        __syncthreads();  // carry read and adj written for every state
        for (int j = threadIdx.x; j < N; j += blockDim.x) {
            int base = j / r * r;
            float cr = 0.f, ci = 0.f;
            for (int n = base; n < base + r; n++) {
                float w = soft ? ptt[(size_t)n * r + j - base] : (st[n] == j ? 1.f : 0.f);
                int m = mono_unshuffle(n, d.nb, r);
                cr += w * ad[m], ci += w * ad[N + m];
            }
            carry[j] = cr, carry[N + j] = ci;
        }
        __syncthreads();
    }
    for (int m = threadIdx.x; m < 2 * N; m += blockDim.x) part[(size_t)b * 2 * N + m] = acc[m];
}

// One block per token: dP[n][j] = Re(conj(adj[unshuffle(n)]) h_{t-1}[base + j]), the row-softmax
// Jacobian to dM (in place of pt), then ds_k = <A_k, dM_t> (thread k, entries in order) and the
// selection logits' gradient through the softmax over K.
__global__ void mono_gates_backward_kernel(MonoDims d, const float *out, const float *A,
                                           const float *sk, const float *adj, float *pt,
                                           float *dx) {
    __shared__ float ds[MONO_MAX_MATRICES], sds;
    size_t tok = blockIdx.x, Nr = (size_t)d.N * d.r;
    int t = (int)(tok % d.T), N = d.N, r = d.r;
    const float *hp = t ? out + (tok - 1) * d.O : NULL, *ad = adj + tok * 2 * N;
    float *dM = pt + tok * Nr;
    for (int n = threadIdx.x; n < N; n += blockDim.x) {
        int m = mono_unshuffle(n, d.nb, r), base = n / r * r;
        float *p = dM + (size_t)n * r, dot = 0.f;
        for (int j = 0; j < r; j++)
            dot += p[j] * (ad[m] * mono_h(hp, base + j) + ad[N + m] * mono_hi(hp, N, base + j));
        for (int j = 0; j < r; j++)
            p[j] *= ad[m] * mono_h(hp, base + j) + ad[N + m] * mono_hi(hp, N, base + j) - dot;
    }
    __syncthreads();  // dM written by the block is visible to it
    for (int k = threadIdx.x; k < d.K; k += blockDim.x) {
        const float *a = A + (size_t)k * Nr;
        float acc = 0.f;
        for (size_t e = 0; e < Nr; e++) acc += a[e] * dM[e];
        ds[k] = acc;
    }
    __syncthreads();
    const float *s_t = sk + tok * d.K;
    if (threadIdx.x == 0) {
        float v = 0.f;
        for (int k = 0; k < d.K; k++) v += s_t[k] * ds[k];
        sds = v;
    }
    __syncthreads();
    for (int k = threadIdx.x; k < d.K; k += blockDim.x)
        dx[tok * d.W + d.o_sel + k] += s_t[k] * (ds[k] - sds);
}

// The u columns: out[tok, 2N + c] = x[tok, o_u + c] (forward), dx[tok, o_u + c] += dout[tok, 2N +
// c] (backward).
__global__ void mono_skip_kernel(float *dst, const float *src, MonoDims d, int backward) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)d.B * d.T * d.C) return;
    size_t tok = (size_t)(i / d.C), c = (size_t)(i % d.C);
    if (backward)
        dst[tok * d.W + d.o_u + c] += src[tok * d.O + 2 * d.N + c];
    else
        dst[tok * d.O + 2 * d.N + c] = src[tok * d.W + d.o_u + c];
}

static void monomial_fwd(const OpShape *s, const float *const *in, float *const *out, float *) {
    static float *bufs[2];
    static size_t have[2];
    MonoDims d = mono_dims(s);
    size_t NT = (size_t)d.B * d.T;
    int soft = d.select == MONO_SOFT, threads = mono_threads(d.N);
    float *dg = mt_cuda_grow(&bufs[0], &have[0], NT * 4 * d.N);
    float *pt = soft ? mt_cuda_grow(&bufs[1], &have[1], NT * d.N * d.r) : NULL;
    int *src = soft ? NULL : (int *)mt_cuda_temp_alloc(sizeof(int) * NT * d.N);
    mono_gates_kernel<<<(unsigned)NT, threads>>>(d, in[CORE_IN_QKV], in[CORE_IN_PARAMS],
                                                 in[CORE_IN_PARAMS + 1], in[CORE_IN_PARAMS + 2],
                                                 NULL, pt, src, dg);
    CUDA_LAUNCH_CHECK();
    mono_forward_kernel<<<d.B, threads, sizeof(float) * 4 * d.N>>>(d, in[CORE_IN_QKV], pt, src, dg,
                                                                   out[0]);
    CUDA_LAUNCH_CHECK();
    mono_skip_kernel<<<ceil_div((long long)NT * d.C, 128), 128>>>(out[0], in[CORE_IN_QKV], d, 0);
    CUDA_LAUNCH_CHECK();
    if (src) mt_cuda_temp_free(src, sizeof(int) * NT * d.N);
}

static void monomial_bwd(const OpShape *s, const float *const *in, const float *const *out,
                         const float *, const float *const *dout, float *const *din) {
    static float *bufs[5];
    static size_t have[5];
    MonoDims d = mono_dims(s);
    size_t NT = (size_t)d.B * d.T, Nr = (size_t)d.N * d.r;
    int soft = d.select == MONO_SOFT, threads = mono_threads(d.N);
    float *dg = mt_cuda_grow(&bufs[0], &have[0], NT * 4 * d.N);
    float *pt = mt_cuda_grow(&bufs[1], &have[1], NT * Nr);  // the rows' softmax, then dM
    float *sk = mt_cuda_grow(&bufs[2], &have[2], NT * d.K);
    float *adj = mt_cuda_grow(&bufs[3], &have[3], NT * 2 * d.N);
    float *part = mt_cuda_grow(&bufs[4], &have[4], (size_t)d.B * 2 * d.N);
    int *src = soft ? NULL : (int *)mt_cuda_temp_alloc(sizeof(int) * NT * d.N);
    mono_gates_kernel<<<(unsigned)NT, threads>>>(d, in[CORE_IN_QKV], in[CORE_IN_PARAMS],
                                                 in[CORE_IN_PARAMS + 1], in[CORE_IN_PARAMS + 2], sk,
                                                 pt, src, dg);
    CUDA_LAUNCH_CHECK();
    mono_backward_scan_kernel<<<d.B, threads, sizeof(float) * 6 * d.N>>>(
        d, out[0], dout[0], pt, src, dg, din[CORE_IN_QKV], adj, part);
    CUDA_LAUNCH_CHECK();
    mono_gates_backward_kernel<<<(unsigned)NT, threads>>>(d, out[0], in[CORE_IN_PARAMS], sk, adj,
                                                          pt, din[CORE_IN_QKV]);
    CUDA_LAUNCH_CHECK();
    // dA [K, N r] += S^T dM: column-major, dA^T [N r, K] = dM^T [N r, NT] S [NT, K].
    const float one = 1.f;
    CUBLAS_CHECK(mt_gemm(mt_cublas(), CUBLAS_OP_N, CUBLAS_OP_T, (int)Nr, d.K, (int)NT, &one, pt,
                         (int)Nr, sk, d.K, &one, din[CORE_IN_PARAMS], (int)Nr));
    sum_batch_partials(din[CORE_IN_PARAMS + 1], part, d.B, d.N, (size_t)2 * d.N);
    sum_batch_partials(din[CORE_IN_PARAMS + 2], part + d.N, d.B, d.N, (size_t)2 * d.N);
    mono_skip_kernel<<<ceil_div((long long)NT * d.C, 128), 128>>>(din[CORE_IN_QKV], dout[0], d, 1);
    CUDA_LAUNCH_CHECK();
    if (src) mt_cuda_temp_free(src, sizeof(int) * NT * d.N);
}

extern "C" const CudaKernels cuda_op_monomial = {monomial_fwd, monomial_bwd, NULL};
