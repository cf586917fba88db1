// Gated linear attention (GLA), the twin of kernels/cpu/attention_gla.c. One block per
// (batch, head), D threads. Forward: one thread per value column j of the D x D state
// (key-major in global memory, column j touched by thread j only), the recurrence token by
// token (the CPU row runs the chunkwise form of the same function), saving each chunk's
// entering state in the CPU row's layout. Backward: one thread per key row i (the decay
// alpha_i scales row i, so the state update, dq, dk and dalpha need no other thread); it
// recomputes a chunk's per-token states from the saved one into a value-major buffer (coalesced
// for a thread per row) and sweeps them in reverse; dv sums over rows through shared memory in
// a fixed order, so a run is bitwise repeatable. Not yet the CPU row's chunkwise backward.
// mixer.head_norm (on by default) normalises each head's readout after the recurrence and is
// undone first in backward, as in the CPU row.
#include "../attention_gla.h"
#include "cuda_common.cuh"

#define GLA_HEAD_NORM_EPS 1e-5f

// mixer.chunk, or T when the sequence is shorter (as the CPU row's gla_chunk).
static int gla_chunk(const OpShape *s) {
    int L = OPT_OF(GlaOpts, s).chunk;
    return s->T > 0 && s->T < L ? s->T : L;
}

__device__ inline float gla_logsigmoid(float z) {
    return z < 0.f ? z - log1pf(expf(z)) : -log1pf(expf(-z));
}

// Shared memory: qs (scaled q), ks, as (the decays) [D] of the current token.
__global__ void gla_forward_kernel(float *out, float *states, const float *qkv, const float *xp,
                                   const float *bias, float inv, int T, int C, int H, int L, int nc,
                                   float *cur_all) {
    extern __shared__ float sh[];
    int bh = blockIdx.x, b = bh / H, h = bh % H, D = C / H, j = threadIdx.x;
    float *qs = sh, *ks = sh + D, *as = ks + D, *cur = cur_all + (size_t)bh * D * D;
    float qscale = rsqrtf((float)D);
    for (int i = 0; i < D; i++) cur[i * D + j] = 0.f;
    for (int t = 0; t < T; t++) {
        if (t % L == 0)
            for (int i = 0; i < D; i++)
                states[((size_t)bh * nc + t / L) * D * D + i * D + j] = cur[i * D + j];
        size_t row = (size_t)b * T + t;
        const float *q = qkv + row * 3 * C + h * D;
        qs[j] = q[j] * qscale, ks[j] = q[C + j];
        as[j] = expf(gla_logsigmoid(xp[row * C + h * D + j] + bias[h * D + j]) * inv);
        __syncthreads();
        float v = q[2 * C + j], acc = 0.f;
        for (int i = 0; i < D; i++) {
            float s = as[i] * cur[i * D + j] + ks[i] * v;
            cur[i * D + j] = s;
            acc += s * qs[i];
        }
        out[row * C + h * D + j] = acc;
        __syncthreads();
    }
}

// Thread x is key row x (and, for dv, value column x). states and dS are value-major
// ([j D + i]). Shared memory: red [D][D + 1] (a row per i), vs (v_t), dos (do_t) [D].
__global__ void gla_backward_kernel(float *dqkv, float *dxp, float *part, const float *dout,
                                    const float *qkv, const float *xp, const float *bias, float inv,
                                    const float *saved, int T, int C, int H, int L, int nc,
                                    float *states_all, float *dS_all) {
    extern __shared__ float sh[];
    int bh = blockIdx.x, b = bh / H, h = bh % H, D = C / H, x = threadIdx.x, ld = D + 1;
    float *red = sh, *vs = red + (size_t)D * ld, *dos = vs + D;
    float *states = states_all + (size_t)bh * (L + 1) * D * D, *dS = dS_all + (size_t)bh * D * D;
    float qscale = rsqrtf((float)D), pb = 0.f, bx = bias[h * D + x];
    for (int j = 0; j < D; j++) dS[j * D + x] = 0.f;
    for (int c = nc - 1; c >= 0; c--) {
        int t0 = c * L, len = T - t0 < L ? T - t0 : L;
        for (int j = 0; j < D; j++)
            states[j * D + x] = saved[((size_t)bh * nc + c) * D * D + (size_t)x * D + j];
        for (int r = 0; r < len; r++) {
            size_t row = (size_t)b * T + t0 + r;
            const float *q = qkv + row * 3 * C + h * D;
            vs[x] = q[2 * C + x];
            __syncthreads();
            float a = expf(gla_logsigmoid(xp[row * C + h * D + x] + bx) * inv), k = q[C + x];
            const float *prev = states + (size_t)r * D * D;
            float *next = states + (size_t)(r + 1) * D * D;
            for (int j = 0; j < D; j++) next[j * D + x] = a * prev[j * D + x] + k * vs[j];
            __syncthreads();
        }
        for (int r = len - 1; r >= 0; r--) {
            size_t row = (size_t)b * T + t0 + r, qrow = row * 3 * C + h * D;
            const float *q = qkv + qrow;
            vs[x] = q[2 * C + x], dos[x] = dout[row * C + h * D + x];
            __syncthreads();
            float z = xp[row * C + h * D + x] + bx, a = expf(gla_logsigmoid(z) * inv);
            float qh = q[x] * qscale, k = q[C + x], dqh = 0.f, dk = 0.f, da = 0.f;
            const float *Sn = states + (size_t)(r + 1) * D * D, *Sp = states + (size_t)r * D * D;
            // dS_t = dS + qh do^T; dqh = S_t do; dk = dS_t v; dalpha = <dS_t, S_{t-1}> (row x);
            // dS_{t-1} = alpha dS_t
            for (int j = 0; j < D; j++) {
                float d = dS[j * D + x] + qh * dos[j];
                dqh += Sn[j * D + x] * dos[j];
                dk += d * vs[j];
                da += d * Sp[j * D + x];
                red[x * ld + j] = d * k;
                dS[j * D + x] = a * d;
            }
            __syncthreads();
            float dv = 0.f;
            for (int i = 0; i < D; i++) dv += red[i * ld + x];
            dqkv[qrow + x] += qscale * dqh;
            dqkv[qrow + C + x] += dk;
            dqkv[qrow + 2 * C + x] += dv;
            float dz = da * a * inv / (1.f + expf(z));  // d log sigmoid(z) / dz = sigmoid(-z)
            dxp[row * C + h * D + x] += dz;
            pb += dz;
            __syncthreads();
        }
    }
    part[(size_t)bh * D + x] = pb;  // = part[b C + h D + x]
}

// mixer.head_norm, one thread per (token, head) row of D: y = (o / rms(o)) (.) w in place,
// saving o / rms and 1 / rms where the CPU row does (after the chunk states).
__global__ void head_norm_forward_kernel(float *o, float *onorm, float *rinv, const float *w,
                                         size_t rows, int D) {
    size_t r = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    float *x = o + r * D, *xn = onorm + r * D, ss = 0.f;
    for (int j = 0; j < D; j++) ss += x[j] * x[j];
    float ri = rsqrtf(ss / D + GLA_HEAD_NORM_EPS);
    rinv[r] = ri;
    for (int j = 0; j < D; j++) xn[j] = x[j] * ri, x[j] = xn[j] * w[j];
}

// do = (g - xn mean(g (.) xn)) / rms with g = dy (.) w; prod = dy (.) xn, summed over the rows
// for dw by sum_batch_partials (in order).
__global__ void head_norm_backward_kernel(float *dout_raw, float *prod, const float *dy,
                                          const float *w, const float *onorm, const float *rinv,
                                          size_t rows, int D) {
    size_t r = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    const float *g = dy + r * D, *xn = onorm + r * D;
    float dot = 0.f;
    for (int j = 0; j < D; j++) dot += g[j] * w[j] * xn[j];
    dot /= D;
    for (int j = 0; j < D; j++) {
        dout_raw[r * D + j] = (g[j] * w[j] - xn[j] * dot) * rinv[r];
        prod[r * D + j] = g[j] * xn[j];
    }
}

static void gla_fwd_full(const OpShape *s, const float *const *in, float *const *out, float *sv) {
    static float *cur;
    static size_t have;
    int D = s->C / s->H, L = gla_chunk(s), nc = (s->T + L - 1) / L;
    float inv = (float)(1.0 / OPT_OF(GlaOpts, s).gate_norm);
    float *c = mt_cuda_grow(&cur, &have, (size_t)s->B * s->H * D * D);
    gla_forward_kernel<<<s->B * s->H, D, sizeof(float) * 3 * D>>>(
        out[0], sv, in[CORE_IN_QKV], in[CORE_IN_XPROJ], in[CORE_IN_PARAMS], inv, s->T, s->C, s->H,
        L, nc, c);
    CUDA_CHECK(cudaGetLastError());
    if (OPT_OF(GlaOpts, s).head_norm) {
        size_t rows = (size_t)s->B * s->T * s->H;
        float *onorm = sv + (size_t)s->B * s->H * nc * D * D;
        head_norm_forward_kernel<<<ceil_div((long long)rows, 128), 128>>>(
            out[0], onorm, onorm + (size_t)s->B * s->T * s->C, in[CORE_IN_PARAMS + 1], rows, D);
        CUDA_CHECK(cudaGetLastError());
    }
}

static void gla_bwd_full(const OpShape *s, const float *const *in, const float *const *,
                         const float *sv, const float *const *dout, float *const *din) {
    static float *bufs[5];
    static size_t have[5];
    int B = s->B, H = s->H, C = s->C, D = C / H, L = gla_chunk(s), nc = (s->T + L - 1) / L;
    float inv = (float)(1.0 / OPT_OF(GlaOpts, s).gate_norm);
    // The recurrence's output gradient: dout itself, or through the head norm.
    const float *dout_raw = dout[0];
    if (OPT_OF(GlaOpts, s).head_norm) {
        size_t rows = (size_t)B * s->T * H, n = (size_t)B * s->T * C;
        const float *onorm = sv + (size_t)B * H * nc * D * D;
        float *draw = mt_cuda_grow(&bufs[3], &have[3], n);
        float *prod = mt_cuda_grow(&bufs[4], &have[4], n);
        head_norm_backward_kernel<<<ceil_div((long long)rows, 128), 128>>>(
            draw, prod, dout[0], in[CORE_IN_PARAMS + 1], onorm, onorm + n, rows, D);
        CUDA_CHECK(cudaGetLastError());
        sum_batch_partials(din[CORE_IN_PARAMS + 1], prod, (int)rows, D, (size_t)D);
        dout_raw = draw;
    }
    float *states = mt_cuda_grow(&bufs[0], &have[0], (size_t)B * H * (L + 1) * D * D);
    float *dS = mt_cuda_grow(&bufs[1], &have[1], (size_t)B * H * D * D);
    float *part = mt_cuda_grow(&bufs[2], &have[2], (size_t)B * C);
    size_t shared = sizeof(float) * ((size_t)D * (D + 1) + 2 * D);
    CUDA_CHECK(cudaFuncSetAttribute(gla_backward_kernel,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shared));
    gla_backward_kernel<<<B * H, D, shared>>>(
        din[CORE_IN_QKV], din[CORE_IN_XPROJ], part, dout_raw, in[CORE_IN_QKV], in[CORE_IN_XPROJ],
        in[CORE_IN_PARAMS], inv, sv, s->T, C, H, L, nc, states, dS);
    CUDA_CHECK(cudaGetLastError());
    sum_batch_partials(din[CORE_IN_PARAMS], part, B, C, (size_t)C);
}

// The low-rank gate (mixer.gate_rank R > 0): the full-rank kernels on the expanded logits
// x W_a1 W_a2 [B, T, C], recomputed in backward, whose gradient of them goes back through
// W_a2 (gate_up, after gate_bias and the optional head norm gain), as the CPU file does.
static int gla_up_index(const OpShape *s) {
    return CORE_IN_PARAMS + 1 + (OPT_OF(GlaOpts, s).head_norm ? 1 : 0);
}

static void gla_fwd(const OpShape *s, const float *const *in, float *const *out, float *sv) {
    static float *buf;
    static size_t have;
    int R = OPT_OF(GlaOpts, s).gate_rank, N = s->B * s->T;
    if (!R) {
        gla_fwd_full(s, in, out, sv);
        return;
    }
    float *logits = mt_cuda_grow(&buf, &have, (size_t)N * s->C);
    matmul_forward_cuda(logits, in[CORE_IN_XPROJ], in[gla_up_index(s)], N, R, s->C);
    const float *in2[OP_MAX_IO] = {NULL};
    for (int i = 0; i <= gla_up_index(s); i++) in2[i] = in[i];
    in2[CORE_IN_XPROJ] = logits;
    gla_fwd_full(s, in2, out, sv);
}

static void gla_bwd(const OpShape *s, const float *const *in, const float *const *out,
                    const float *sv, const float *const *dout, float *const *din) {
    static float *bufs[2];
    static size_t have[2];
    int R = OPT_OF(GlaOpts, s).gate_rank, N = s->B * s->T, up = gla_up_index(s);
    if (!R) {
        gla_bwd_full(s, in, out, sv, dout, din);
        return;
    }
    float *logits = mt_cuda_grow(&bufs[0], &have[0], (size_t)N * s->C);
    float *dlogits = mt_cuda_grow(&bufs[1], &have[1], (size_t)N * s->C);
    matmul_forward_cuda(logits, in[CORE_IN_XPROJ], in[up], N, R, s->C);
    CUDA_CHECK(cudaMemset(dlogits, 0, sizeof(float) * (size_t)N * s->C));
    const float *in2[OP_MAX_IO] = {NULL};
    float *din2[OP_MAX_IO] = {NULL};
    for (int i = 0; i <= up; i++) in2[i] = in[i], din2[i] = din[i];
    in2[CORE_IN_XPROJ] = logits, din2[CORE_IN_XPROJ] = dlogits;
    gla_bwd_full(s, in2, out, sv, dout, din2);
    matmul_backward_cuda(din[CORE_IN_XPROJ], din[up], dlogits, in[CORE_IN_XPROJ], in[up], N, R,
                         s->C);
}

extern "C" const CudaKernels cuda_op_gla = {gla_fwd, gla_bwd, NULL};
