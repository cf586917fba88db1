// The ViT path's small ops (kernels/vision.h) and their rows of the op table: dropout, mean
// pooling, cross-entropy with label smoothing. The patch embedding is a host reshape plus the
// matmul row, positions are the backend's positions_forward, the class token a copy.
#include "../vision.h"

#include <string.h>

#include "../ops.h"
#include "../real.h"
#include "../rng.h"

void F(dropout_forward)(real *out, const real *in, size_t rows, int width, double p, uint64_t key,
                        uint64_t row0) {
    uint64_t thr = dropout_threshold(p);
    real keep_scale = (real)(1.0 / (1.0 - p));
    size_t n = rows * (size_t)width;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        uint64_t idx = row0 * (uint64_t)width + i;
        out[i] = (rng_u64(key, idx) >> 11) < thr ? 0 : in[i] * keep_scale;
    }
}

void F(dropout_backward)(real *din, const real *dout, size_t rows, int width, double p,
                         uint64_t key, uint64_t row0) {
    uint64_t thr = dropout_threshold(p);
    real keep_scale = (real)(1.0 / (1.0 - p));
    size_t n = rows * (size_t)width;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        uint64_t idx = row0 * (uint64_t)width + i;
        if ((rng_u64(key, idx) >> 11) >= thr) din[i] += dout[i] * keep_scale;
    }
}

void F(mean_pool_forward)(real *out, const real *x, int B, int T, int C) {
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) {
            double s = 0;
            for (int t = 0; t < T; t++) s += x[((size_t)b * T + t) * C + c];
            out[(size_t)b * C + c] = (real)(s / T);
        }
}

void F(mean_pool_backward)(real *dx, const real *dout, int B, int T, int C) {
    real inv = (real)(1.0 / T);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++)
                dx[((size_t)b * T + t) * C + c] += dout[(size_t)b * C + c] * inv;
}

// ---- rows -------------------------------------------------------------------------------
#define N_ROWS(s) ((size_t)(s)->B * (s)->T)

// The row's element index starts at row 1 of the site (row0 = 1): a nonzero offset is tested.
static void dropout_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    in[0] = out[0] = N_ROWS(s) * s->C, *saved = 0;
}
static void dropout_fwd(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    (void)sv;
    DropoutOpts o = OPT_OF(DropoutOpts, s);
    F(dropout_forward)(out[0], in[0], N_ROWS(s), s->C, o.p, rng_key((uint64_t)o.key, 0, 0, 0), 1);
}
static void dropout_bwd(const OpShape *s, const real *const *in, const real *const *out,
                        const real *sv, const real *const *dout, real *const *din) {
    (void)in, (void)out, (void)sv;
    DropoutOpts o = OPT_OF(DropoutOpts, s);
    F(dropout_backward)
    (din[0], dout[0], N_ROWS(s), s->C, o.p, rng_key((uint64_t)o.key, 0, 0, 0), 1);
}
static const OpOption dropout_options[] = {
    {"p", OPT_FLOAT, "0.25", NULL, 0, 0.99, offsetof(DropoutOpts, p), 0, "drop probability"},
    {"key", OPT_INT, "7", NULL, 0, 1e9, offsetof(DropoutOpts, key), 0, "mask stream"},
    {NULL}};

static void pool_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    in[0] = N_ROWS(s) * s->C, out[0] = (size_t)s->B * s->C, *saved = 0;
}
static void pool_fwd(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    (void)sv;
    F(mean_pool_forward)(out[0], in[0], s->B, s->T, s->C);
}
static void pool_bwd(const OpShape *s, const real *const *in, const real *const *out,
                     const real *sv, const real *const *dout, real *const *din) {
    (void)in, (void)out, (void)sv;
    F(mean_pool_backward)(din[0], dout[0], s->B, s->T, s->C);
}

static void ces_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    in[0] = N_ROWS(s) * s->V, out[0] = N_ROWS(s), *saved = 0;
}
static void ces_fwd(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    (void)sv;
    F(crossentropy_smooth_forward)
    (out[0], in[0], s->ids, s->B * s->T, s->V, OPT_OF(SmoothOpts, s).smoothing);
}
static void ces_bwd(const OpShape *s, const real *const *in, const real *const *out, const real *sv,
                    const real *const *dout, real *const *din) {
    (void)out, (void)sv;
    F(crossentropy_smooth_backward)
    (din[0], dout[0], in[0], s->ids, s->B * s->T, s->V, OPT_OF(SmoothOpts, s).smoothing);
}
static const OpOption smooth_options[] = {{"smoothing", OPT_FLOAT, "0.1", NULL, 0, 1,
                                           offsetof(SmoothOpts, smoothing), 0, "label smoothing"},
                                          {NULL}};

// clang-format off
const F(OpDef) F(op_dropout) = {"dropout", 1, 1, dropout_sizes, dropout_fwd, dropout_bwd,
    .n_tests = 2, .tests = {{{.B = 2, .T = 3, .C = 5}, "p=0.3 key=11"},
                            {{.B = 1, .T = 4, .C = 6}, "p=0.6 key=3"}},
    .options = dropout_options};
const F(OpDef) F(op_mean_pool) = {"mean_pool", 1, 1, pool_sizes, pool_fwd, pool_bwd,
    .n_tests = 1, .tests = {{{.B = 2, .T = 5, .C = 3}}}};
const F(OpDef) F(op_crossentropy_smooth) = {"crossentropy_smooth", 1, 1, ces_sizes, ces_fwd,
    ces_bwd, .n_tests = 2, .tests = {{{.B = 2, .T = 3, .V = 7}, "smoothing=0.1"},
                                     {{.B = 1, .T = 2, .V = 5}, "smoothing=0"}},
    .options = smooth_options};
// clang-format on
