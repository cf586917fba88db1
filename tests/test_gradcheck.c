// Central finite differences in double precision against every backward: each row of the op
// table, each mixer of the mixer table (with and without the output gate, rotary and the
// short convolution), and whole models. New ops and mixers are checked here without any new
// test code. Inputs of size 0 (absent for a shape), inputs marked nondiff_in and
// non-trainable parameters (buffers) get no gradient and are skipped.
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/ops.h"
#include "../src/model.h"
#include "../src/rng.h"

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

static void check_op(const OpDef_f64 *op, OpShape s, int test_index) {
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
        if (!c.in_n[i] || (op->nondiff_in & (1u << i)) ||
            (param >= 0 && param < n_params && !params[param].trainable))
            continue;
        double *num = malloc(sizeof(double) * c.in_n[i]);
        for (size_t j = 0; j < c.in_n[i]; j++) {
            double keep = c.in[i][j];
            c.in[i][j] = keep + H_STEP;
            double lp = op_loss(&c);
            c.in[i][j] = keep - H_STEP;
            double lm = op_loss(&c);
            c.in[i][j] = keep;
            num[j] = (lp - lm) / (2 * H_STEP);
        }
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
// Head dim 4 with 6 random features (a partial second block), Fenwick chunks of 2 (T = 7:
// 4 chunks, a tree of height 2), an HSS tree of depth 2 with rank 1.
static ModelConfig small_config(int mixer, int gate) {
    ModelConfig c = {.vocab_size = 11, .d_model = 8, .n_layers = 1, .n_heads = 2, .d_ff = 12,
                     .mlp = MLP_GELU, .tie_embeddings = 1, .gate = gate, .rope_base = 10000,
                     .norm_eps = 1e-5, .init_std = 0.5, .feature_map = FEATURE_ELU1,
                     .normalize = 1, .chunk = 3, .attn_eps = 1e-6, .n_features = 6,
                     .qk_norm = 1, .max_len = 8, .hss_rank = 1, .hss_leaf = 1,
                     .hydra_norm = HYDRA_NORM_COUNT};
    for (int l = 0; l < MAX_LAYERS; l++) c.mixer[l] = mixer, c.rope[l] = MIXERS[mixer].rope_default;
    return c;
}

typedef struct {
    const ModelConfig *cfg;
    int B, T;
    double *x, *y, *wy, *acts, *w[MAX_PARAMS_PER_LAYER];
} MixerCase;

static double mixer_loss(MixerCase *c) {
    mixer_forward_f64(c->cfg, 0, &BACKEND_CPU_f64, c->B, c->T, c->y, c->x, c->w, c->acts);
    return dot(c->y, c->wy, (size_t)c->B * c->T * c->cfg->d_model);
}

static void fd_buffer(const char *what, double *buf, size_t n, const double *analytic,
                      double (*loss)(void *), void *ctx) {
    double *num = malloc(sizeof(double) * n);
    for (size_t j = 0; j < n; j++) {
        double keep = buf[j];
        buf[j] = keep + H_STEP;
        double lp = loss(ctx);
        buf[j] = keep - H_STEP;
        double lm = loss(ctx);
        buf[j] = keep;
        num[j] = (lp - lm) / (2 * H_STEP);
    }
    compare(what, analytic, num, n);
    free(num);
}

static double mixer_loss_v(void *c) { return mixer_loss(c); }

static void check_mixer(int mixer, int gate, int rope, int conv) {
    ModelConfig cfg = small_config(mixer, gate);
    cfg.rope[0] = rope;
    cfg.conv_kernel = conv;
    MixerCase c = {.cfg = &cfg, .B = 2, .T = 7};
    size_t N = (size_t)c.B * c.T, C = cfg.d_model;
    ParamInfo specs[MAX_PARAMS_PER_LAYER];
    int k = mixer_param_specs(&cfg, 0, specs);
    c.x = malloc(sizeof(double) * N * C);
    c.y = malloc(sizeof(double) * N * C);
    c.wy = malloc(sizeof(double) * N * C);
    c.acts = malloc(sizeof(double) * mixer_acts_size_f64(&cfg, 0, &BACKEND_CPU_f64, c.B, c.T));
    fill_normal(c.x, N * C, rng_key(3, 1, 0, 0), 1.0);
    fill_normal(c.wy, N * C, rng_key(3, 2, 0, 0), 1.0);
    double *dw[MAX_PARAMS_PER_LAYER];
    for (int i = 0; i < k; i++) {
        c.w[i] = malloc(sizeof(double) * specs[i].size);
        dw[i] = calloc(specs[i].size, sizeof(double));
        fill_normal(c.w[i], specs[i].size, rng_key(3, 3, (uint64_t)i, 0), 0.5);
    }
    double *dx = calloc(N * C, sizeof(double));
    double *scratch = malloc(sizeof(double) * mixer_scratch_size_f64(&cfg, 0, &BACKEND_CPU_f64, c.B, c.T));
    mixer_loss(&c);
    mixer_backward_f64(&cfg, 0, &BACKEND_CPU_f64, c.B, c.T, dx, dw, c.wy, c.x, c.w, c.acts, scratch);
    char what[96];
    snprintf(what, sizeof(what), "mixer %s gate=%d rope=%d conv=%d dx", MIXERS[mixer].name, gate,
             rope, conv);
    fd_buffer(what, c.x, N * C, dx, mixer_loss_v, &c);
    for (int i = 0; i < k; i++) {
        if (!specs[i].trainable) continue;
        snprintf(what, sizeof(what), "mixer %s gate=%d rope=%d conv=%d d%.40s", MIXERS[mixer].name,
                 gate, rope, conv, specs[i].name);
        fd_buffer(what, c.w[i], specs[i].size, dw[i], mixer_loss_v, &c);
    }
    for (int i = 0; i < k; i++) free(c.w[i]), free(dw[i]);
    free(c.x), free(c.y), free(c.wy), free(c.acts), free(dx), free(scratch);
}

// ---- whole model -----------------------------------------------------------------------
typedef struct {
    Model_f64 *m;
    const int *ids, *targets;
} ModelCase;

static double model_loss_v(void *p) {
    ModelCase *c = p;
    ForwardStats st = model_forward_f64(c->m, c->ids, c->targets, 1.0);
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

static void check_model(const char *label, ModelConfig cfg) {
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
        targets[i] = i % 4 == 0 ? -1 : (int)rng_below(rng_key(9, 2, 0, 0), (uint64_t)i,
                                                      (uint64_t)cfg.vocab_size);
    }
    model_set_batch_f64(&m, B, T);
    ModelCase c = {&m, ids, targets};
    model_loss_v(&c);
    model_zero_grad_f64(&m);
    FinalHook hook = {&m, malloc(sizeof(double) * m.n_params), m.n_params, 0, 0};
    m.on_grads_final = record_final, m.grads_final_ctx = &hook;
    model_backward_f64(&m);
    m.on_grads_final = NULL;
    size_t early = 0;
    for (size_t i = 0; i < m.n_params; i++) early += hook.snapshot[i] != m.grads[i];
    int hook_ok = hook.lowest == 0 && !hook.out_of_order && early == 0 &&
                  hook.calls == cfg.n_layers + 2;
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
    model_free_f64(&m);
}

int main(void) {
    // The shapes are tiny: extra threads only add barrier waits (minutes instead of a second on
    // a loaded machine). Thread-count independence is the reference and ranks tests' job.
    omp_set_num_threads(1);
    for (int i = 0; i < N_OPS_f64; i++)
        for (int t = 0; t < OPS_f64[i].n_tests; t++) check_op(&OPS_f64[i], OPS_f64[i].tests[t], t);
    for (int mx = 0; mx < N_MIXERS; mx++) {
        for (int gate = 0; gate <= 1; gate++)
            for (int rope = 0; rope <= 1; rope++) check_mixer(mx, gate, rope, 0);
        check_mixer(mx, 1, MIXERS[mx].rope_default, 3);
    }

    ModelConfig hybrid = small_config(0, 1);
    hybrid.n_layers = 2;
    hybrid.mixer[1] = mixer_find("linear");
    hybrid.rope[1] = 0;
    check_model("hybrid-gelu-tied-gate", hybrid);
    ModelConfig swiglu = small_config(mixer_find("linear"), 0);
    swiglu.mlp = MLP_SWIGLU;
    swiglu.tie_embeddings = 0;
    swiglu.feature_map = FEATURE_RELU;
    check_model("linear-relu-swiglu-untied", swiglu);
    // Redrawable buffers, a learned circulant row and a per-token projection in one model.
    ModelConfig zoo = small_config(mixer_find("favor"), 1);
    zoo.n_layers = 3;
    zoo.mixer[1] = mixer_find("circulant_favor");
    zoo.mixer[2] = mixer_find("loglinear");
    zoo.conv_kernel = 2;
    check_model("favor-circulant-loglinear-conv-gate", zoo);
    ModelConfig positions = small_config(mixer_find("linear"), 0);
    positions.max_positions = 7;  // more rows than the checked T: the unused ones get no gradient
    check_model("linear-positions", positions);
    ModelConfig nomlp = small_config(0, 0);
    nomlp.mlp = MLP_NONE;
    check_model("softmax-nomlp", nomlp);

    printf("%s: %d failure(s)\n", failures ? "FAILED" : "PASSED", failures);
    return failures ? 1 : 0;
}
