// Central finite differences in double precision against every backward: each row of the op
// table on each of its test shapes (options resolved as a config gives them), each mixer row
// in a mixer layer (with and without the output gate, rotary and the short convolution) built
// through the trainer's own config validation, and whole models. New ops and mixers are checked
// here without any new test code; a row without test shapes, or a mixer row without FLOPs, is
// a failure. Inputs of size 0 (absent for a shape) and non-trainable parameters (buffers) get
// no gradient and are skipped.
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/ops.h"
#include "../src/model.h"
#include "../src/rng.h"
#include "../src/train.h"

static int failures = 0;
static const double H_STEP = 1e-5, RTOL = 1e-6, ATOL = 1e-8;

static void fill_normal(double *x, size_t n, uint64_t key, double std) {
    for (size_t i = 0; i < n; i++) x[i] = std * rng_normal(key, i);
}

static double dot(const double *a, const double *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

// d loss / d x at x's current value: central differences at steps 2h and h combined by
// Richardson extrapolation, (4 D(h) - D(2h)) / 3, which cancels the h^2 truncation term, so
// ops with sharp curvature (normalisations of small vectors) are checked to RTOL as well,
// with about the rounding error of D(h) alone.
static double fd_derivative(double *x, double (*loss)(void *), void *ctx) {
    double keep = *x, d[2];
    for (int k = 0; k < 2; k++) {
        double h = k ? H_STEP : 2 * H_STEP;
        *x = keep + h;
        double lp = loss(ctx);
        *x = keep - h;
        double lm = loss(ctx);
        d[k] = (lp - lm) / (2 * h);
    }
    *x = keep;
    return (4 * d[1] - d[0]) / 3;
}

// Compares analytic and numeric gradients of one buffer; reports the worst element.
static void compare(const char *what, const double *analytic, const double *numeric, size_t n) {
    double worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double err = fabs(analytic[i] - numeric[i]);
        double tol = ATOL + RTOL * fmax(fabs(analytic[i]), fabs(numeric[i]));
        if (err / tol > worst) worst = err / tol, at = i;
    }
    int ok = worst <= 1.0;
    if (!ok) failures++;
    printf("%-4s %-52s n=%-6zu worst err/tol %.3g%s\n", ok ? "ok" : "FAIL", what, n, worst,
           ok ? "" : " <--");
    if (!ok) printf("     at %zu: analytic %.12g numeric %.12g\n", at, analytic[at], numeric[at]);
}

// ---- ops -------------------------------------------------------------------------------
typedef struct {
    const OpDef_f64 *op;
    OpShape s;
    double *in[OP_MAX_IO], *out[OP_MAX_IO], *wout[OP_MAX_IO], *saved;
    size_t in_n[OP_MAX_IO], out_n[OP_MAX_IO], saved_n;
} OpCase;

static double op_loss(OpCase *c) {
    c->op->forward(&c->s, (const double *const *)c->in, c->out, c->saved);
    double l = 0;
    for (int o = 0; o < c->op->n_out; o++) l += dot(c->out[o], c->wout[o], c->out_n[o]);
    return l;
}
static double op_loss_v(void *c) {
    return op_loss(c);
}

static void check_op(const OpDef_f64 *op, const OpTest *test, int test_index) {
    OpShape s = test->s;
    char err[256];
    if (op_options_apply(op->options, op->fixed, test->opts, s.T, &s, err, sizeof(err)) ||
        (op->check && op->check(&s, err, sizeof(err)))) {
        printf("FAIL op %s [shape %d]: %s\n", op->name, test_index, err);
        failures++;
        return;
    }
    OpCase c = {.op = op, .s = s};
    op->sizes(&s, c.in_n, c.out_n, &c.saved_n);
    int n_rows = s.B * s.T, *ids = malloc(sizeof(int) * (size_t)n_rows);
    for (int i = 0; i < n_rows; i++) {  // ids for lookups; every third target ignored
        ids[i] = (int)rng_below(rng_key(7, 1, 0, 0), (uint64_t)i, (uint64_t)(s.V > 0 ? s.V : 1));
        if (!strcmp(op->name, "crossentropy") && i % 3 == 1) ids[i] = -1;
    }
    c.s.ids = ids;
    OpParam params[OP_MAX_PARAMS];
    int n_params = op->params ? op->params(&s, params) : 0;
    for (int i = 0; i < op->n_in; i++) {
        c.in[i] = malloc(sizeof(double) * (c.in_n[i] ? c.in_n[i] : 1));
        fill_normal(c.in[i], c.in_n[i], rng_key(11, (uint64_t)test_index, (uint64_t)i, 0), 1.0);
    }
    for (int o = 0; o < op->n_out; o++) {
        c.out[o] = malloc(sizeof(double) * c.out_n[o]);
        c.wout[o] = malloc(sizeof(double) * c.out_n[o]);
        fill_normal(c.wout[o], c.out_n[o], rng_key(13, (uint64_t)test_index, (uint64_t)o, 0), 1.0);
    }
    c.saved = malloc(sizeof(double) * (c.saved_n ? c.saved_n : 1));
    op_loss(&c);
    double *din[OP_MAX_IO];
    for (int i = 0; i < op->n_in; i++) din[i] = calloc(c.in_n[i] ? c.in_n[i] : 1, sizeof(double));
    op->backward(&c.s, (const double *const *)c.in, (const double *const *)c.out, c.saved,
                 (const double *const *)c.wout, din);
    for (int i = 0; i < op->n_in; i++) {
        int param = i - CORE_IN_PARAMS;
        if (!c.in_n[i] || (param >= 0 && param < n_params && !params[param].trainable)) continue;
        double *num = malloc(sizeof(double) * c.in_n[i]);
        for (size_t j = 0; j < c.in_n[i]; j++) num[j] = fd_derivative(&c.in[i][j], op_loss_v, &c);
        char what[96];
        snprintf(what, sizeof(what), "op %s [shape %d] d(input %d)", op->name, test_index, i);
        compare(what, din[i], num, c.in_n[i]);
        free(num);
    }
    for (int i = 0; i < op->n_in; i++) free(c.in[i]), free(din[i]);
    for (int o = 0; o < op->n_out; o++) free(c.out[o]), free(c.wout[o]);
    free(c.saved);
    free(ids);
}

// ---- mixers ----------------------------------------------------------------------------
// A model config as the trainer builds one: the defaults, a small base, then `overrides`
// ("key=value ..."), validated and resolved by the trainer's own functions.
static int build_config(ModelConfig *mc, const char *overrides, char *err, size_t errlen) {
    Config c;
    config_defaults(&c);
    char all[2048];
    snprintf(all, sizeof(all),
             "model.vocab_size=11 model.d_model=8 model.n_layers=1 model.n_heads=2 model.d_ff=12 "
             "model.init_std=0.5 data.seq_len=8 data.num_kv_pairs=2 %s",
             overrides);
    for (char *save = NULL, *kv = strtok_r(all, " ", &save); kv; kv = strtok_r(NULL, " ", &save))
        if (config_override(&c, kv, err, errlen)) return -1;
    if (config_validate(&c, 1, err, errlen)) return -1;
    return model_config_from(&c, 11, (int)c.seq_len, mc, err, errlen);
}

// The mixer row's first test shape (its width, heads and options) in a one-layer model.
static int mixer_config(int row, int gate, int conv, ModelConfig *mc, char *err, size_t errlen) {
    const OpDef_f64 *op = OPS_f64[row];
    const OpTest *t = &op->tests[0];
    char ov[1024];
    int n = snprintf(ov, sizeof(ov), "model.mixer=%s model.gate=%s mixer.conv_kernel=%d", op->name,
                     gate ? "true" : "false", conv);
    if (t->s.C)
        n += snprintf(ov + n, sizeof(ov) - n, " model.d_model=%d model.n_heads=%d", t->s.C,
                      t->s.H ? t->s.H : 1);
    for (const char *p = t->opts; p && *p;) {  // the row's options as mixer.* keys
        while (*p == ' ') p++;
        size_t k = strcspn(p, " ");
        if (k) n += snprintf(ov + n, sizeof(ov) - n, " mixer.%.*s", (int)k, p);
        p += k;
    }
    if (build_config(mc, ov, err, errlen)) return -1;
    return mixer_check_f64(mc, 0, &BACKEND_CPU_f64, err, errlen);
}

typedef struct {
    const ModelConfig *cfg;
    int B, T;
    const Segments *seg;  // packed rows, or NULL
    double *x, *y, *wy, *acts, *w[MAX_PARAMS_PER_LAYER];
} MixerCase;

static double mixer_loss(MixerCase *c) {
    mixer_forward_f64(c->cfg, 0, &BACKEND_CPU_f64, c->B, c->T, c->seg, c->y, c->x, c->w, c->acts);
    return dot(c->y, c->wy, (size_t)c->B * c->T * c->cfg->d_model);
}

static void fd_buffer(const char *what, double *buf, size_t n, const double *analytic,
                      double (*loss)(void *), void *ctx) {
    double *num = malloc(sizeof(double) * n);
    for (size_t j = 0; j < n; j++) num[j] = fd_derivative(&buf[j], loss, ctx);
    compare(what, analytic, num, n);
    free(num);
}

static double mixer_loss_v(void *c) {
    return mixer_loss(c);
}

// Packed rows (data.pack) of the packed checks: B 2, T 11, examples of 4, 1 and 6 tokens in
// row 0 and of 7 and 4 in row 1 (a 1-token example, and lengths off every chunk size).
static int seg_row[] = {0, 0, 0, 1, 1}, seg_start[] = {0, 4, 5, 0, 7}, seg_len[] = {4, 1, 6, 7, 4};
static const Segments PACKED = {5, seg_row, seg_start, seg_len};

// The packed layer against each example run alone (B = 1, T = len, nothing packed): outputs,
// input gradients and the parameter gradients (the examples' sum) agree to rounding. With the
// finite-difference check of the packed layer itself, this is the reset's contract.
static void check_packed_equals_separate(MixerCase *c, const char *what, const double *dx,
                                         double *const *dw, const ParamInfo *specs, int k) {
    const ModelConfig *cfg = c->cfg;
    size_t C = cfg->d_model;
    double worst = 0, scale = 0;
    double *sum_dw[MAX_PARAMS_PER_LAYER];
    for (int i = 0; i < k; i++) sum_dw[i] = calloc(specs[i].size, sizeof(double));
    for (int e = 0; e < PACKED.n; e++) {
        int len = PACKED.len[e];
        size_t t0 = (size_t)PACKED.row[e] * c->T + PACKED.start[e], n = (size_t)len * C;
        double *y = malloc(sizeof(double) * n), *ex_dx = calloc(n, sizeof(double));
        double *acts =
            malloc(sizeof(double) * mixer_acts_size_f64(cfg, 0, &BACKEND_CPU_f64, 1, len, NULL));
        double *scratch =
            malloc(sizeof(double) * mixer_scratch_size_f64(cfg, 0, &BACKEND_CPU_f64, 1, len));
        mixer_forward_f64(cfg, 0, &BACKEND_CPU_f64, 1, len, NULL, y, c->x + t0 * C, c->w, acts);
        mixer_backward_f64(cfg, 0, &BACKEND_CPU_f64, 1, len, NULL, ex_dx, sum_dw, c->wy + t0 * C,
                           c->x + t0 * C, c->w, acts, scratch);
        for (size_t j = 0; j < n; j++) {
            double d = fmax(fabs(y[j] - c->y[t0 * C + j]), fabs(ex_dx[j] - dx[t0 * C + j]));
            worst = fmax(worst, d), scale = fmax(scale, fabs(y[j]));
        }
        free(y), free(ex_dx), free(acts), free(scratch);
    }
    for (int i = 0; i < k; i++) {
        for (size_t j = 0; j < specs[i].size; j++)
            worst = fmax(worst, fabs(sum_dw[i][j] - dw[i][j]));
        free(sum_dw[i]);
    }
    int ok = worst <= 1e-10 * fmax(1.0, scale);
    printf("%s %s packed == separate: worst |diff| %.2e\n", ok ? "ok  " : "FAIL", what, worst);
    failures += !ok;
}

static void check_mixer(int row, int gate, int rope, int conv, int pack) {
    ModelConfig cfg;
    char err[256];
    const char *name = OPS_f64[row]->name;
    if (mixer_config(row, gate, conv, &cfg, err, sizeof(err))) {
        printf("FAIL mixer %s: its first test shape does not build a model: %s\n", name, err);
        failures++;
        return;
    }
    cfg.rope[0] = rope;
    // Rotary positions act on q|k|v: a core that reads another input has them refused.
    if (rope && mixer_slots(&cfg, 0).in_w != 3 * cfg.d_model) {
        if (!mixer_check_f64(&cfg, 0, &BACKEND_CPU_f64, err, sizeof(err))) {
            printf("FAIL mixer %s: rope=on over a non-q|k|v input is not refused\n", name);
            failures++;
        } else {
            printf("ok   mixer %s gate=%d rope=1 refused: %s\n", name, gate, err);
        }
        return;
    }
    MixerCase c = {.cfg = &cfg, .B = 2, .T = pack ? 11 : 7, .seg = pack ? &PACKED : NULL};
    size_t N = (size_t)c.B * c.T, C = cfg.d_model;
    ParamInfo specs[MAX_PARAMS_PER_LAYER];
    int k = mixer_param_specs(&cfg, 0, specs);
    c.x = malloc(sizeof(double) * N * C);
    c.y = malloc(sizeof(double) * N * C);
    c.wy = malloc(sizeof(double) * N * C);
    c.acts =
        malloc(sizeof(double) * mixer_acts_size_f64(&cfg, 0, &BACKEND_CPU_f64, c.B, c.T, c.seg));
    fill_normal(c.x, N * C, rng_key(3, 1, 0, 0), 1.0);
    fill_normal(c.wy, N * C, rng_key(3, 2, 0, 0), 1.0);
    double *dw[MAX_PARAMS_PER_LAYER];
    for (int i = 0; i < k; i++) {
        c.w[i] = malloc(sizeof(double) * specs[i].size);
        dw[i] = calloc(specs[i].size, sizeof(double));
        fill_normal(c.w[i], specs[i].size, rng_key(3, 3, (uint64_t)i, 0), 0.5);
    }
    double *dx = calloc(N * C, sizeof(double));
    double *scratch =
        malloc(sizeof(double) * mixer_scratch_size_f64(&cfg, 0, &BACKEND_CPU_f64, c.B, c.T));
    mixer_loss(&c);
    mixer_backward_f64(&cfg, 0, &BACKEND_CPU_f64, c.B, c.T, c.seg, dx, dw, c.wy, c.x, c.w, c.acts,
                       scratch);
    char what[96];
    const char *packed = pack ? " packed" : "";
    if (pack) {
        snprintf(what, sizeof(what), "mixer %s gate=%d rope=%d conv=%d", name, gate, rope, conv);
        check_packed_equals_separate(&c, what, dx, dw, specs, k);
    }
    snprintf(what, sizeof(what), "mixer %s gate=%d rope=%d conv=%d%s dx", name, gate, rope, conv,
             packed);
    fd_buffer(what, c.x, N * C, dx, mixer_loss_v, &c);
    for (int i = 0; i < k; i++) {
        if (!specs[i].trainable) continue;
        snprintf(what, sizeof(what), "mixer %s gate=%d rope=%d conv=%d%s d%.40s", name, gate, rope,
                 conv, packed, specs[i].name);
        fd_buffer(what, c.w[i], specs[i].size, dw[i], mixer_loss_v, &c);
    }
    for (int i = 0; i < k; i++) free(c.w[i]), free(dw[i]);
    free(c.x), free(c.y), free(c.wy), free(c.acts), free(dx), free(scratch);
}

// ---- whole model -----------------------------------------------------------------------
typedef struct {
    Model_f64 *m;
    const int *ids, *targets, *pos;  // pos: packed rows, or NULL
} ModelCase;

static double model_loss_v(void *p) {
    ModelCase *c = p;
    ForwardStats st = model_forward_packed_f64(c->m, c->ids, c->targets, c->pos, 1.0);
    return st.loss_sum;
}

// The on_grads_final contract the bucketed all-reduce relies on: when backward reports
// [from, n) final, those gradients already hold their final values, and from only falls,
// down to 0 at the end.
typedef struct {
    const Model_f64 *m;
    double *snapshot;  // each element as it was when first reported final
    size_t lowest;
    int calls, out_of_order;
} FinalHook;

static void record_final(void *ctx, size_t from) {
    FinalHook *h = ctx;
    h->calls++;
    if (from > h->lowest) h->out_of_order++;
    for (size_t i = from; i < h->lowest; i++) h->snapshot[i] = h->m->grads[i];
    if (from < h->lowest) h->lowest = from;
}

static void check_model_config(const char *label, ModelConfig cfg) {
    Model_f64 m;
    char err[256];
    if (model_build_f64(&m, &cfg, &BACKEND_CPU_f64, err, sizeof(err))) {
        printf("FAIL model %s: %s\n", label, err);
        failures++;
        return;
    }
    model_init_f64(&m, 5);
    int B = 2, T = 6, N = B * T, ids[12], targets[12];
    for (int i = 0; i < N; i++) {
        ids[i] = (int)rng_below(rng_key(9, 1, 0, 0), (uint64_t)i, (uint64_t)cfg.vocab_size);
        // Most models leave every 4th position unscored (the head gathers the scored rows);
        // the "-lm" ones score every position (the head reads the final norm in place).
        int lm = strstr(label, "-lm") != NULL;
        targets[i] = i % 4 == 0 && !lm ? -1
                                       : (int)rng_below(rng_key(9, 2, 0, 0), (uint64_t)i,
                                                        (uint64_t)cfg.vocab_size);
    }
    model_set_batch_f64(&m, B, T);
    // "-packed" models: rows of 3+2+1 and 4+2 examples (positions restart at each)
    static const int pos[12] = {0, 1, 2, 0, 1, 0, 0, 1, 2, 3, 0, 1};
    ModelCase c = {&m, ids, targets, strstr(label, "-packed") ? pos : NULL};
    model_loss_v(&c);
    model_zero_grad_f64(&m);
    FinalHook hook = {&m, malloc(sizeof(double) * m.n_params), m.n_params, 0, 0};
    m.on_grads_final = record_final, m.grads_final_ctx = &hook;
    model_backward_f64(&m);
    m.on_grads_final = NULL;
    size_t early = 0;
    for (size_t i = 0; i < m.n_params; i++) early += hook.snapshot[i] != m.grads[i];
    int hook_ok = hook.lowest == 0 && !hook.out_of_order && early == 0 &&
                  hook.calls == cfg.n_layers + 2 + (cfg.head == HEAD_AUTOENCODER);
    failures += !hook_ok;
    printf("%-4s model %s: on_grads_final, %d calls, %zu value(s) changed after reported final\n",
           hook_ok ? "ok" : "FAIL", label, hook.calls, early);
    free(hook.snapshot);
    double *analytic = malloc(sizeof(double) * m.n_params);
    memcpy(analytic, m.grads, sizeof(double) * m.n_params);
    char what[96];
    for (int t = 0; t < m.n_tensors; t++) {
        if (!m.info[t].trainable) continue;
        snprintf(what, sizeof(what), "model %s d%s", label, m.info[t].name);
        fd_buffer(what, m.params + m.info[t].offset, m.info[t].size, analytic + m.info[t].offset,
                  model_loss_v, &c);
    }
    free(analytic);
    if (c.pos) {  // each example alone (B = 1, T = its length) scores what it scores packed
        model_forward_packed_f64(&m, ids, targets, pos, 1.0);
        double packed_losses[12], worst = 0;
        memcpy(packed_losses, m.losses, sizeof(packed_losses));
        for (int start = 0, end; start < N; start = end) {
            for (end = start + 1; end < N && end % T && pos[end]; end++) continue;
            model_set_batch_f64(&m, 1, end - start);
            model_forward_f64(&m, ids + start, targets + start, 1.0);
            for (int i = start; i < end; i++)
                worst = fmax(worst, fabs(m.losses[i - start] - packed_losses[i]));
        }
        int ok = worst <= 1e-12;
        printf("%-4s model %s packed == separate: worst |loss diff| %.2e\n", ok ? "ok" : "FAIL",
               label, worst);
        failures += !ok;
    }
    model_free_f64(&m);
}

static void check_model(const char *label, const char *overrides) {
    ModelConfig cfg;
    char err[256];
    if (build_config(&cfg, overrides, err, sizeof(err))) {
        printf("FAIL model %s: %s\n", label, err);
        failures++;
        return;
    }
    check_model_config(label, cfg);
}

// ---- the ViT path ---------------------------------------------------------------------------
// The whole ViT loss (patch embedding, class token or mean pooling, learned or fixed 2-D sin-cos
// positions, dropout at every site, label smoothing) against finite differences in every
// trainable tensor; 3x4x4 images in patches of 2 (a 2x2 grid), 5 classes, B = 3.
typedef struct {
    Model_f64 *m;
    const float *pixels;
    const int *labels;
    ImageStep step;
} VitCase;

static double vit_loss_v(void *p) {
    VitCase *c = p;
    return model_forward_images_f64(c->m, c->pixels, c->labels, &c->step, 1.0).loss_sum;
}

static void check_vit(const char *label, const char *overrides, int pool, int pos, double dropout,
                      double smoothing) {
    ModelConfig cfg;
    char err[256], ov[1024];
    snprintf(ov, sizeof(ov), "model.rope=off model.tie_embeddings=false %s", overrides);
    if (build_config(&cfg, ov, err, sizeof(err))) {
        printf("FAIL vit %s: %s\n", label, err);
        failures++;
        return;
    }
    VisionConfig v = {2, 4, 4, 3, pool, pos, dropout, smoothing};
    cfg.vision = v, cfg.vocab_size = 5, cfg.max_positions = 0, cfg.seq_len = vit_tokens(&v);
    Model_f64 m;
    if (model_build_f64(&m, &cfg, &BACKEND_CPU_f64, err, sizeof(err))) {
        printf("FAIL vit %s: %s\n", label, err);
        failures++;
        return;
    }
    model_init_f64(&m, 5);
    int B = 3, T = vit_tokens(&v), labels[3] = {4, 0, 2};
    float pixels[3 * 4 * 4 * 3];
    for (int i = 0; i < 3 * 4 * 4 * 3; i++) pixels[i] = (float)rng_normal(rng_key(9, 3, 0, 0), i);
    model_set_batch_f64(&m, B, T);
    VitCase c = {&m, pixels, labels, {dropout > 0, rng_key(9, 4, 0, 0), 17}};
    vit_loss_v(&c);
    model_zero_grad_f64(&m);
    FinalHook hook = {&m, malloc(sizeof(double) * m.n_params), m.n_params, 0, 0};
    m.on_grads_final = record_final, m.grads_final_ctx = &hook;
    model_backward_f64(&m);
    m.on_grads_final = NULL;
    size_t early = 0;
    for (size_t i = 0; i < m.n_params; i++) early += hook.snapshot[i] != m.grads[i];
    int hook_ok =
        hook.lowest == 0 && !hook.out_of_order && early == 0 && hook.calls == cfg.n_layers + 2;
    failures += !hook_ok;
    printf("%-4s vit %s: on_grads_final, %d calls, %zu value(s) changed after reported final\n",
           hook_ok ? "ok" : "FAIL", label, hook.calls, early);
    free(hook.snapshot);
    double *analytic = malloc(sizeof(double) * m.n_params);
    memcpy(analytic, m.grads, sizeof(double) * m.n_params);
    char what[96];
    int checked = 0;
    for (int t = 0; t < m.n_tensors; t++) {
        if (!m.info[t].trainable) continue;
        snprintf(what, sizeof(what), "vit %s d%s", label, m.info[t].name);
        fd_buffer(what, m.params + m.info[t].offset, m.info[t].size, analytic + m.info[t].offset,
                  vit_loss_v, &c);
        checked++;
    }
    // sincos2d positions are a buffer: no gradient, and rows of sin/cos values
    for (int t = 0; t < m.n_tensors; t++)
        if (!strcmp(m.info[t].name, "pos_embed") &&
            (pos == VIT_POS_SINCOS2D) == m.info[t].trainable) {
            printf("FAIL vit %s: pos_embed trainable=%d under model.pos %d\n", label,
                   m.info[t].trainable, pos);
            failures++;
        }
    printf("ok   vit %s: %d trainable tensors checked\n", label, checked);
    free(analytic);
    model_free_f64(&m);
}

// ---- activation checkpointing ------------------------------------------------------------
// model.recompute: the same model with some or all blocks recomputed in backward gives
// bitwise the same losses and gradients as the stored form (packed rows too, so a mixer's
// per-example calls are redone as well), and the activations shrink (every case recomputes
// at least two blocks: one block alone saves nothing, its arena is its own size).
static void check_recompute(const char *label, const char *overrides, const char *recompute) {
    ModelConfig cfg[2];
    char err[256], ov[1024];
    snprintf(ov, sizeof(ov), "%s model.recompute=%s", overrides, recompute);
    if (build_config(&cfg[0], overrides, err, sizeof(err)) ||
        build_config(&cfg[1], ov, err, sizeof(err))) {
        printf("FAIL recompute %s: %s\n", label, err);
        failures++;
        return;
    }
    int B = 2, T = 6, N = B * T, ids[12], targets[12];
    static const int pos[12] = {0, 1, 2, 0, 1, 0, 0, 1, 2, 3, 0, 1};
    const int *packed = strstr(label, "-packed") ? pos : NULL;
    for (int i = 0; i < N; i++) {
        ids[i] = (int)rng_below(rng_key(9, 3, 0, 0), (uint64_t)i, (uint64_t)cfg[0].vocab_size);
        targets[i] = i % 5 == 0 ? -1
                                : (int)rng_below(rng_key(9, 4, 0, 0), (uint64_t)i,
                                                 (uint64_t)cfg[0].vocab_size);
    }
    Model_f64 m[2];
    double loss[2], *grads[2];
    size_t acts[2];
    for (int r = 0; r < 2; r++) {
        if (model_build_f64(&m[r], &cfg[r], &BACKEND_CPU_f64, err, sizeof(err))) {
            printf("FAIL recompute %s: %s\n", label, err);
            failures++;
            return;
        }
        model_init_f64(&m[r], 5);
        model_set_batch_f64(&m[r], B, T);
        loss[r] = model_forward_packed_f64(&m[r], ids, targets, packed, 1.0).loss_sum;
        model_zero_grad_f64(&m[r]);
        model_backward_f64(&m[r]);
        grads[r] = m[r].grads, acts[r] = m[r].acts_size;
    }
    int same = m[0].n_params == m[1].n_params && loss[0] == loss[1] &&
               !memcmp(grads[0], grads[1], sizeof(double) * m[0].n_params);
    int smaller = acts[1] < acts[0];
    failures += !same || !smaller;
    printf("%-4s recompute %s (%s): loss and %zu gradients %s, activations %zu -> %zu values\n",
           same && smaller ? "ok" : "FAIL", label, recompute, m[0].n_params,
           same ? "bitwise equal" : "DIFFER", acts[0], acts[1]);
    model_free_f64(&m[0]), model_free_f64(&m[1]);
}

int main(void) {
    // The shapes are tiny: extra threads only add barrier waits (minutes instead of a second on
    // a loaded machine). Thread-count independence is the reference and ranks tests' job.
    omp_set_num_threads(1);
    for (int i = 0; i < N_OPS_f64; i++) {
        const OpDef_f64 *op = OPS_f64[i];
        if (!op->n_tests) {
            printf("FAIL op %s: the row declares no test shapes\n", op->name);
            failures++;
        }
        if (op->mixer && !op->flops) {
            printf("FAIL mixer %s: the row declares no FLOPs (bench would count matmuls only)\n",
                   op->name);
            failures++;
        }
        for (int t = 0; t < op->n_tests; t++)
            if (op->tests[t].s.T <= 16) check_op(op, &op->tests[t], t);  // longer: the reference's
    }
    for (int i = 0; i < N_OPS_f64; i++) {
        if (!OPS_f64[i]->mixer) continue;
        for (int gate = 0; gate <= 1; gate++)
            for (int rope = 0; rope <= 1; rope++) check_mixer(i, gate, rope, 0, 0);
        check_mixer(i, 1, OPS_f64[i]->rope_default, 3, 0);
        // packed rows: every state, mask, convolution window and rotary angle restarts
        for (int rope = 0; rope <= 1; rope++) check_mixer(i, 1, rope, 3, 1);
    }

    // causal = false: the class token (first) sees the patches (a causal mixer would hide them).
    // Ripple: 2 layers, since the class token reads every key alike (its ring weights act on
    // the patches, which reach the class token in the next layer).
    check_vit("cls-learned", "model.n_layers=2 mixer.causal=false", VIT_POOL_CLS, VIT_POS_LEARNED,
              0, 0);
    check_vit("cls-learned-causal", "model.n_layers=1", VIT_POOL_CLS, VIT_POS_LEARNED, 0, 0);
    check_vit("cls-sincos2d-ripple-dropout",
              "model.n_layers=2 model.mixer=ripple mixer.grid_w=2 mixer.prefix_tokens=1 "
              "mixer.ripple_rings=2",
              VIT_POOL_CLS, VIT_POS_SINCOS2D, 0.2, 0.1);
    check_vit("mean-learned-hydra", "model.mixer=hydra mixer.causal=false", VIT_POOL_MEAN,
              VIT_POS_LEARNED, 0.1, 0.1);
    check_vit("mean-sincos2d-layernorm", "model.norm=layernorm model.mlp_bias=true", VIT_POOL_MEAN,
              VIT_POS_SINCOS2D, 0, 0.1);
    check_vit("cls-sincos2d-dropout-smoothing",
              "model.n_layers=2 model.proj_bias=true mixer.causal=false", VIT_POOL_CLS,
              VIT_POS_SINCOS2D, 0.3, 0.2);
    check_vit("mean-learned-dropout-recompute", "model.n_layers=2 model.recompute=all",
              VIT_POOL_MEAN, VIT_POS_LEARNED, 0.25, 0);
    check_vit("cls-learned-linear-dropout", "model.mixer=linear mixer.causal=false", VIT_POOL_CLS,
              VIT_POS_LEARNED, 0.2, 0.1);
    check_model("hybrid-gelu-tied-gate",
                "model.n_layers=2 model.mixer=softmax,linear model.gate=true mixer.chunk=3");
    check_model("linear-gelu-erf", "model.mixer=linear model.mlp=gelu_erf mixer.chunk=3");
    check_model("linear-relu-swiglu-untied",
                "model.mixer=linear model.mlp=swiglu model.tie_embeddings=false "
                "mixer.feature_map=relu mixer.chunk=3");
    // Redrawable buffers, a learned circulant row and a per-token projection in one model.
    check_model("favor-circulant-loglinear-conv-gate",
                "model.n_layers=3 model.mixer=favor,circulant_favor,loglinear model.gate=true "
                "mixer.conv_kernel=2 mixer.chunk=3 mixer.features=6");
    // More position rows (data.seq_len 8) than the checked T: the unused ones get no gradient.
    check_model("linear-positions", "model.mixer=linear model.pos_embedding=true mixer.chunk=3");
    check_model("softmax-nomlp", "model.mixer=softmax model.mlp=none");
    check_model("softmax-nomlp-lm", "model.mixer=softmax model.mlp=none");
    check_model("softmax-positions-conv-packed",
                "model.mixer=softmax model.pos_embedding=true mixer.conv_kernel=3");
    check_model("hybrid-gdn-mamba2-packed",
                "model.n_layers=2 model.mixer=gated_deltanet,mamba2 model.d_model=8 "
                "model.rope=off mixer.chunk=2");
    // The PyTorch-matching options (docs/pytorch-port.md): LayerNorm with biases, biased
    // linears, PyTorch's initialisation and decay on every tensor, alone and together.
    check_model("layernorm", "model.mixer=linear model.norm=layernorm mixer.chunk=3");
    check_model("linear-mlp-proj-bias-gate",
                "model.mixer=linear model.mlp_bias=true model.proj_bias=true model.gate=true "
                "mixer.conv_kernel=2 mixer.chunk=3");
    check_model("pytorch-e029-softmax-untied-positions",
                "model.n_layers=2 model.mixer=softmax model.rope=off model.norm=layernorm "
                "model.mlp_bias=true model.proj_bias=true model.init=pytorch optim.decay=all "
                "model.pos_embedding=true model.tie_embeddings=false");
    check_model("pytorch-relu-swiglu-loglinear",
                "model.n_layers=2 model.mixer=linear,loglinear model.mlp=swiglu "
                "model.norm=layernorm model.mlp_bias=true model.proj_bias=true model.init=pytorch "
                "mixer.feature_map=relu mixer.chunk=3");

    // MAD's encoder-pool-decoder head (compression), under both norms; every position is
    // scored through the last one's state, so the blocks' gradient arrives there only.
    check_model("autoencoder-mamba2-swiglu",
                "model.n_layers=2 model.mixer=mamba2,gla model.mlp=swiglu model.head=autoencoder "
                "data.task=compression data.vocab_size=16 mixer.chunk=3 mixer.d_state=4 "
                "mixer.gate_rank=2");
    check_model("autoencoder-layernorm-untied",
                "model.mixer=softmax model.head=autoencoder model.norm=layernorm "
                "model.tie_embeddings=false model.init=pytorch");

    check_recompute("hybrid-swiglu-gate",
                    "model.n_layers=3 model.mixer=softmax,gla,linear model.mlp=swiglu "
                    "model.gate=true mixer.conv_kernel=2 mixer.chunk=3",
                    "all");
    check_recompute("gdn-mamba2-packed",
                    "model.n_layers=3 model.mixer=gated_deltanet,mamba2,softmax model.d_model=8 "
                    "model.rope=off mixer.chunk=2",
                    "0,2");
    check_recompute("nomlp-layernorm",
                    "model.n_layers=2 model.mixer=linear model.mlp=none "
                    "model.norm=layernorm mixer.chunk=3",
                    "all");

    printf("%s: %d failure(s)\n", failures ? "FAILED" : "PASSED", failures);
    return failures ? 1 : 0;
}
