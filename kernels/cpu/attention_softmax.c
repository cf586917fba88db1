// Multi-head softmax attention (mixers.md section 1), causal or bidirectional (mixer.causal). One
// (batch, head) per OpenMP iteration; inside it BLAS does QK^T and PV (the OpenMP OpenBLAS runs
// single-threaded inside a parallel region, so the two levels of parallelism do not oversubscribe
// the cores). The probabilities P [B,H,T,T] are saved for backward: this is the CPU reference,
// where memory is cheap and recomputation would double the time. Under context parallelism a
// slice after pos0 tokens attends their keys and values too (the prefix form of the op row),
// and saves [B,H,T,pos0+T].
#include "../attention_softmax.h"

#include <stdlib.h>
#include <string.h>

#include "../ops.h"
#include "../real.h"
#include "vexp.h"

// The keys and values of head h of sequence b, [P + T, D] each, into kv (keys) and kv + S D
// (values): the prefix's P tokens ([B, P, 2C]: k | v) then the call's own T.
static void gather_kv(real *kv, const real *prefix, const real *qkv_btc3, int b, int h, int P,
                      int T, int C, int D) {
    size_t S = (size_t)P + T, ld = 3 * (size_t)C;
    real *k = kv, *v = kv + S * D;
    for (int u = 0; u < P; u++) {
        const real *row = prefix + ((size_t)b * P + u) * 2 * C + (size_t)h * D;
        memcpy(k + (size_t)u * D, row, sizeof(real) * D);
        memcpy(v + (size_t)u * D, row + C, sizeof(real) * D);
    }
    for (int t = 0; t < T; t++) {
        const real *row = qkv_btc3 + ((size_t)b * T + t) * ld + C + (size_t)h * D;
        memcpy(k + (P + (size_t)t) * D, row, sizeof(real) * D);
        memcpy(v + (P + (size_t)t) * D, row + C, sizeof(real) * D);
    }
}

// P tokens before the call (context parallelism; 0 otherwise): prefix [B, P, 2C] holds their
// keys and values, and row t of the call attends the S = P + T keys [prefix; own] up to P + t.
// causal = 0: row t covers every key (j < S), so the masked-out part below is empty.
static void softmax_forward(real *out_btc, real *att_bhts, const real *qkv_btc3, const real *prefix,
                            int P, int B, int T, int C, int H, int causal) {
    int D = C / H, ld = 3 * C, S = P + T;
    real scale = 1 / sqrt((real)D);
#pragma omp parallel
    {
        real *kv = P ? malloc(sizeof(real) * 2 * (size_t)S * D) : NULL;
#pragma omp for schedule(static)
        for (int bh = 0; bh < B * H; bh++) {
            int b = bh / H, h = bh % H;
            const real *q = qkv_btc3 + (size_t)b * T * ld + h * D;
            const real *k = q + C, *v = q + 2 * C;
            int ldk = ld;
            if (P) {  // the keys and values contiguous: [prefix; own]
                gather_kv(kv, prefix, qkv_btc3, b, h, P, T, C, D);
                k = kv, v = kv + (size_t)S * D, ldk = D;
            }
            real *att = att_bhts + (size_t)bh * T * S;
            real *o = out_btc + (size_t)b * T * C + h * D;
            cblas_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, S, D, scale, q, ld, k, ldk, 0,
                       att, S);
            for (int t = 0; t < T; t++) {
                real *row = att + (size_t)t * S;
                int last = causal ? P + t : S - 1;
                real mx = row[0];
                for (int j = 1; j <= last; j++) mx = row[j] > mx ? row[j] : mx;
                for (int j = 0; j <= last; j++) row[j] = vexp(row[j] - mx);  // vectorised
                real sum = 0;
                for (int j = 0; j <= last; j++) sum += row[j];  // in order: bitwise reproducible
                real inv = 1 / sum;
                for (int j = 0; j <= last; j++) row[j] *= inv;
                for (int j = last + 1; j < S; j++) row[j] = 0;  // the zeros make PV a plain GEMM
            }
            cblas_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, D, S, 1, att, S, v, ldk, 0, o,
                       C);
        }
        free(kv);
    }
}

// dV = P^T dO, dP = dO V^T, dS = P (.) (dP - rowsum(dP (.) P)), dQ = dS K s, dK = dS^T Q s.
// With a prefix, the gradients of its keys and values are added into dprefix [B, P, 2C].
static void softmax_backward(real *dqkv_btc3, real *dprefix, const real *dout_btc,
                             const real *qkv_btc3, const real *prefix, const real *att_bhts, int P,
                             int B, int T, int C, int H, int causal) {
    int D = C / H, ld = 3 * C, S = P + T;
    real scale = 1 / sqrt((real)D);
#pragma omp parallel
    {
        real *ds = malloc(sizeof(real) * (size_t)T * S);
        real *kv = P ? malloc(sizeof(real) * 2 * (size_t)S * D) : NULL;
        real *dkv = P ? malloc(sizeof(real) * 2 * (size_t)S * D) : NULL;
#pragma omp for schedule(static)
        for (int bh = 0; bh < B * H; bh++) {
            int b = bh / H, h = bh % H;
            size_t off = (size_t)b * T * ld + h * D;
            const real *q = qkv_btc3 + off, *k = q + C, *v = q + 2 * C;
            real *dq = dqkv_btc3 + off, *dk = dq + C, *dv = dq + 2 * C;
            int ldk = ld;
            real beta = 1;  // own rows: add into dqkv directly
            if (P) {        // [prefix; own] rows: into dkv, then split below
                gather_kv(kv, prefix, qkv_btc3, b, h, P, T, C, D);
                k = kv, v = kv + (size_t)S * D, dk = dkv, dv = dkv + (size_t)S * D, ldk = D;
                beta = 0;
            }
            const real *att = att_bhts + (size_t)bh * T * S;
            const real *dout = dout_btc + (size_t)b * T * C + h * D;
            cblas_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, S, D, T, 1, att, S, dout, C, beta,
                       dv, ldk);
            cblas_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, S, D, 1, dout, C, v, ldk, 0, ds,
                       S);
            for (int t = 0; t < T; t++) {
                const real *p = att + (size_t)t * S;
                real *row = ds + (size_t)t * S;
                int last = causal ? P + t : S - 1;
                real dot = 0;
                for (int j = 0; j <= last; j++) dot += row[j] * p[j];
                for (int j = 0; j <= last; j++) row[j] = p[j] * (row[j] - dot);
                for (int j = last + 1; j < S; j++) row[j] = 0;
            }
            cblas_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, D, S, scale, ds, S, k, ldk, 1,
                       dq, ld);
            cblas_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, S, D, T, scale, ds, S, q, ld, beta,
                       dk, ldk);
            if (!P) continue;
            for (int u = 0; u < S; u++) {  // rows < P: the prefix's; the rest: this call's own
                real *to = u < P ? dprefix + ((size_t)b * P + u) * 2 * C + (size_t)h * D
                                 : dqkv_btc3 + ((size_t)b * T + u - P) * ld + C + (size_t)h * D;
                for (int j = 0; j < D; j++)
                    to[j] += dk[(size_t)u * D + j], to[C + j] += dv[(size_t)u * D + j];
            }
        }
        free(ds), free(kv), free(dkv);
    }
}

// ---- the row -----------------------------------------------------------------------------------

// saved: the probabilities [B, H, T, pos0 + T] (pos0 > 0: a slice after pos0 tokens)
static void softmax_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    op_core_sizes(s, in, out, 0, NULL, 0);
    *saved = (size_t)s->B * s->H * s->T * ((size_t)s->pos0 + s->T);
}
static void softmax_fwd_prefix(const OpShape *s, const real *const *in, real *const *out, real *sv,
                               const real *prefix) {
    softmax_forward(out[0], sv, in[CORE_IN_QKV], prefix, prefix ? s->pos0 : 0, s->B, s->T, s->C,
                    s->H, OPT_OF(SoftmaxOpts, s).causal);
}
static void softmax_bwd_prefix(const OpShape *s, const real *const *in, const real *const *out,
                               const real *sv, const real *const *dout, real *const *din,
                               const real *prefix, real *dprefix) {
    (void)out;
    softmax_backward(din[CORE_IN_QKV], dprefix, dout[0], in[CORE_IN_QKV], prefix, sv,
                     prefix ? s->pos0 : 0, s->B, s->T, s->C, s->H, OPT_OF(SoftmaxOpts, s).causal);
}
static void softmax_fwd(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    softmax_fwd_prefix(s, in, out, sv, NULL);
}
static void softmax_bwd(const OpShape *s, const real *const *in, const real *const *out,
                        const real *sv, const real *const *dout, real *const *din) {
    softmax_bwd_prefix(s, in, out, sv, dout, din, NULL, NULL);
}
// What a later slice reads of this one: every token's key and value, [B, T, 2C].
static size_t softmax_prefix_width(const OpShape *s) {
    return 2 * (size_t)s->C;
}
static void softmax_prefix_pack(const OpShape *s, const real *const *in, real *rows) {
    size_t N = (size_t)s->B * s->T, C = s->C;
    for (size_t n = 0; n < N; n++)
        memcpy(rows + n * 2 * C, in[CORE_IN_QKV] + n * 3 * C + C, sizeof(real) * 2 * C);
}
static void softmax_prefix_unpack_add(const OpShape *s, const real *rows, real *const *din) {
    size_t N = (size_t)s->B * s->T, C = s->C;
    for (size_t n = 0; n < N; n++)
        for (size_t j = 0; j < 2 * C; j++)
            din[CORE_IN_QKV][n * 3 * C + C + j] += rows[n * 2 * C + j];
}

// QK^T and PV, 2 D multiply-adds per key and head: over (T + 1) / 2 keys on average when
// causal, over all T keys when bidirectional.
static double softmax_flops(const OpShape *s) {
    return (OPT_OF(SoftmaxOpts, s).causal ? 2.0 : 4.0) * s->T * s->C;
}

#ifdef MT_DOUBLE
// o_t = sum_{u in U_t} exp(q_t . k_u / sqrt(D)) v_u / sum_{u in U_t} exp(q_t . k_u / sqrt(D)),
// term by term with the running maximum subtracted; U_t = {u <= t} (causal) or {u < T}.
static int softmax_reference(const OpShape *s, const double *const *in, double *out) {
    int T = s->T, C = s->C, H = s->H, D = C / H, causal = OPT_OF(SoftmaxOpts, s).causal;
    double *w = malloc(sizeof(double) * T);
    for (int b = 0; b < s->B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                const double *q = in[CORE_IN_QKV] + ((size_t)b * T + t) * 3 * C + h * D;
                double mx = -INFINITY, sum = 0;
                int last = causal ? t : T - 1;
                for (int u = 0; u <= last; u++) {
                    const double *k = in[CORE_IN_QKV] + ((size_t)b * T + u) * 3 * C + C + h * D;
                    double d = 0;
                    for (int j = 0; j < D; j++) d += q[j] * k[j];
                    w[u] = d / sqrt((double)D);
                    mx = w[u] > mx ? w[u] : mx;
                }
                for (int u = 0; u <= last; u++) sum += w[u] = exp(w[u] - mx);
                double *o = out + ((size_t)b * T + t) * C + h * D;
                for (int j = 0; j < D; j++) {
                    o[j] = 0;
                    for (int u = 0; u <= last; u++)
                        o[j] += w[u] / sum *
                                in[CORE_IN_QKV][((size_t)b * T + u) * 3 * C + 2 * C + h * D + j];
                }
            }
    free(w);
    return 0;
}
#else
#define softmax_reference NULL
#endif

static const OpOption softmax_options[] = {MIXER_CAUSAL_OPTION(offsetof(SoftmaxOpts, causal)),
                                           {NULL}};

// clang-format off
const F(OpDef) F(op_softmax) = {
    .name = "softmax", .n_in = 1, .n_out = 1,
    .sizes = softmax_sizes, .forward = softmax_fwd, .backward = softmax_bwd,
    .options = softmax_options,
    .prefix_width = softmax_prefix_width, .prefix_pack = softmax_prefix_pack,
    .prefix_unpack_add = softmax_prefix_unpack_add, .forward_prefix = softmax_fwd_prefix,
    .backward_prefix = softmax_bwd_prefix,
    .mixer = 1, .help = "multi-head softmax attention, causal or bidirectional (mixer.causal)",
    .rope_default = 1,
    .flops = softmax_flops, .reference = softmax_reference,
    .n_tests = 6,
    .tests = {{{.B = 2, .T = 5, .C = 8, .H = 2}}, {{.B = 1, .T = 1, .C = 4, .H = 1}},
              {{.B = 1, .T = 33, .C = 12, .H = 3}},
              {{.B = 2, .T = 5, .C = 8, .H = 2}, "causal=false"},
              {{.B = 1, .T = 1, .C = 4, .H = 1}, "causal=false"},
              {{.B = 1, .T = 33, .C = 12, .H = 3}, "causal=false"}}};
// clang-format on
