// Multi-head softmax attention (mixers.md section 1), causal or bidirectional (mixer.causal). One
// (batch, head) per OpenMP iteration; inside it BLAS does QK^T and PV (the OpenMP OpenBLAS runs
// single-threaded inside a parallel region, so the two levels of parallelism do not oversubscribe
// the cores). The probabilities P [B,H,T,T] are saved for backward: this is the CPU reference,
// where memory is cheap and recomputation would double the time.
#include "../attention_softmax.h"

#include <stdlib.h>
#include <string.h>

#include "../ops.h"
#include "../real.h"
#include "vexp.h"

// causal = 0: row t covers every key (j < T), so the masked-out part below is empty.
void F(attention_softmax_forward)(real *out_btc, real *att_bhtt, const real *qkv_btc3, int B, int T,
                                  int C, int H, int causal) {
    int D = C / H, ld = 3 * C;
    real scale = 1 / sqrt((real)D);
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < B * H; bh++) {
        int b = bh / H, h = bh % H;
        const real *q = qkv_btc3 + (size_t)b * T * ld + h * D;
        const real *k = q + C, *v = q + 2 * C;
        real *att = att_bhtt + (size_t)bh * T * T;
        real *o = out_btc + (size_t)b * T * C + h * D;
        cblas_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, D, scale, q, ld, k, ld, 0, att,
                   T);
        for (int t = 0; t < T; t++) {
            real *row = att + (size_t)t * T;
            int last = causal ? t : T - 1;
            real mx = row[0];
            for (int j = 1; j <= last; j++) mx = row[j] > mx ? row[j] : mx;
            for (int j = 0; j <= last; j++) row[j] = vexp(row[j] - mx);  // vectorised
            real sum = 0;
            for (int j = 0; j <= last; j++) sum += row[j];  // in order: bitwise reproducible
            real inv = 1 / sum;
            for (int j = 0; j <= last; j++) row[j] *= inv;
            for (int j = last + 1; j < T; j++) row[j] = 0;  // the zeros make PV a plain GEMM
        }
        cblas_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, D, T, 1, att, T, v, ld, 0, o, C);
    }
}

// dV = P^T dO, dP = dO V^T, dS = P (.) (dP - rowsum(dP (.) P)), dQ = dS K s, dK = dS^T Q s.
void F(attention_softmax_backward)(real *dqkv_btc3, const real *dout_btc, const real *qkv_btc3,
                                   const real *att_bhtt, int B, int T, int C, int H, int causal) {
    int D = C / H, ld = 3 * C;
    real scale = 1 / sqrt((real)D);
#pragma omp parallel
    {
        real *ds = malloc(sizeof(real) * (size_t)T * T);
#pragma omp for schedule(static)
        for (int bh = 0; bh < B * H; bh++) {
            int b = bh / H, h = bh % H;
            size_t off = (size_t)b * T * ld + h * D;
            const real *q = qkv_btc3 + off, *k = q + C, *v = q + 2 * C;
            real *dq = dqkv_btc3 + off, *dk = dq + C, *dv = dq + 2 * C;
            const real *att = att_bhtt + (size_t)bh * T * T;
            const real *dout = dout_btc + (size_t)b * T * C + h * D;
            cblas_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, D, T, 1, att, T, dout, C, 1, dv,
                       ld);
            cblas_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, D, 1, dout, C, v, ld, 0, ds,
                       T);
            for (int t = 0; t < T; t++) {
                const real *p = att + (size_t)t * T;
                real *row = ds + (size_t)t * T;
                int last = causal ? t : T - 1;
                real dot = 0;
                for (int j = 0; j <= last; j++) dot += row[j] * p[j];
                for (int j = 0; j <= last; j++) row[j] = p[j] * (row[j] - dot);
                for (int j = last + 1; j < T; j++) row[j] = 0;
            }
            cblas_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, D, T, scale, ds, T, k, ld, 1,
                       dq, ld);
            cblas_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, D, T, scale, ds, T, q, ld, 1, dk,
                       ld);
        }
        free(ds);
    }
}

// ---- the row -----------------------------------------------------------------------------------

static void softmax_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    op_core_sizes(s, in, out, 0, NULL, 0);
    *saved = (size_t)s->B * s->H * s->T * s->T;
}
static void softmax_fwd(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    F(attention_softmax_forward)
    (out[0], sv, in[CORE_IN_QKV], s->B, s->T, s->C, s->H, OPT_OF(SoftmaxOpts, s).causal);
}
static void softmax_bwd(const OpShape *s, const real *const *in, const real *const *out,
                        const real *sv, const real *const *dout, real *const *din) {
    (void)out;
    F(attention_softmax_backward)
    (din[CORE_IN_QKV], dout[0], in[CORE_IN_QKV], sv, s->B, s->T, s->C, s->H,
     OPT_OF(SoftmaxOpts, s).causal);
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
