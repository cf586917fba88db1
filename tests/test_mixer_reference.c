// Every row of the op table that declares a reference (every mixer must) against its
// explicit oracle (quadratic or recurrent, written from shared/docs/mixers.md, double
// precision) on every test shape of the row, options resolved as a config gives them: the
// chunked, FFT and tree training forms must agree with the explicit forms to rounding. A mixer
// row without a reference, or whose reference covers none of its shapes, is a failure. Then
// the properties an oracle does not show:
//   - log-linear with every lambda = 1 is plain linear attention, for any chunk;
//   - HSS with full rank == the dense state; the projection is idempotent (orthonormal bases);
//   - the circulant projection (FFT) == the explicit C(r) diag(s) product, forward and dr;
//   - FAVOR+ rows are orthogonal within a block, the kernel estimate approaches
//     exp(q.k / sqrt(d)) for many features, redraws are deterministic;
//   - an identity-initialised short convolution leaves every mixer layer unchanged;
//   - the auxiliary figures: HSS memory ratio and off-diagonal energies, log-linear level
//     energies against explicit bucket states, NaN counting of the layer;
//   - OscGate stays bounded under an adversarial omega schedule that grows the experiment's
//     form (oscgate_mve) by orders of magnitude; with zeta = 0 and constant omega it is
//     LinOSS-IM;
//   - the circulant-diagonal SSM keeps ||A_t||_2 < 1 and its state bounded under adversarial
//     inputs of magnitude 10..50;
//   - dplr: random parameters against its oracle, the HiPPO-LegS spectrum, Neumann against
//     Woodbury;
//   - monomial's straight-through backward against its definition (hard forward, T > 16),
//     and its state bounded in the max-norm for any input and any map.
#include <complex.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/feature_maps.h"
#include "../kernels/ops.h"
#include "../kernels/ssm_monomial.h"
#include "../src/model.h"
#include "../src/rng.h"
#include "../src/train.h"
#include "op_inputs.h"

static int failures = 0;
static const double RTOL = 1e-10;  // double precision, sums of a few hundred terms

// The linear family's oracles (kernels/cpu/linear_reference.c, double build).
void ref_phi(const OpShape *s, const double *W, const double *x, double *phi);
double *ref_dense_projection(const OpShape *s, const double *const *fparams);
void ref_hss_project(const OpShape *s, const double *U, const double *V, const double *S,
                     double *PS);

static void report(const char *what, double err, double tol) {
    int ok = err <= tol;
    if (!ok) failures++;
    printf("%-4s %-64s max err %.3g (tol %.3g)%s\n", ok ? "ok" : "FAIL", what, err, tol,
           ok ? "" : " <--");
}

// A model config as the trainer builds one: the defaults, then "key=value ...", validated.
static int build_config(ModelConfig *mc, const char *overrides, char *err, size_t errlen) {
    Config c;
    config_defaults(&c);
    char all[1024];
    snprintf(all, sizeof(all), "data.seq_len=16 data.num_kv_pairs=2 %s", overrides);
    for (char *save = NULL, *kv = strtok_r(all, " ", &save); kv; kv = strtok_r(NULL, " ", &save))
        if (config_override(&c, kv, err, errlen)) return -1;
    if (config_validate(&c, 1, err, errlen)) return -1;
    if (model_config_from(&c, 5, (int)c.seq_len, mc, err, errlen)) return -1;
    return mixer_check_f64(mc, 0, &BACKEND_CPU_f64, err, errlen);
}

static double dot(const double *a, const double *b, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

// ---- running one op on random inputs ---------------------------------------------------

typedef struct {
    const OpDef_f64 *op;
    OpShape s;
    double *in[OP_MAX_IO], *out[2], *saved;
    size_t in_n[OP_MAX_IO], out_n[2], saved_n;
} Run;

// Inputs from op_draw_inputs (tests/op_inputs.h), then the op's forward.
static Run run_new(const char *op_name, OpShape s, uint64_t seed) {
    Run r = {.op = op_find_f64(op_name), .s = s};
    r.op->sizes(&s, r.in_n, r.out_n, &r.saved_n);
    for (int i = 0; i < r.op->n_in; i++)
        r.in[i] = malloc(sizeof(double) * (r.in_n[i] ? r.in_n[i] : 1));
    op_draw_inputs(r.op, &s, r.in, r.in_n, seed, 77);
    for (int o = 0; o < r.op->n_out; o++) r.out[o] = malloc(sizeof(double) * r.out_n[o]);
    r.saved = malloc(sizeof(double) * (r.saved_n ? r.saved_n : 1));
    r.op->forward(&r.s, (const double *const *)r.in, r.out, r.saved);
    return r;
}

static void run_free(Run *r) {
    for (int i = 0; i < r->op->n_in; i++) free(r->in[i]);
    for (int o = 0; o < r->op->n_out; o++) free(r->out[o]);
    free(r->saved);
}

static const double *q_of(const Run *r, int b, int t, int h) {
    int C = r->s.C, D = C / r->s.H;
    return r->in[0] + ((size_t)b * r->s.T + t) * 3 * C + h * D;
}

// A shape of row `op` with its options resolved from "key=value ..." (the trainer's path).
static OpShape shape(const char *op, int B, int T, int C, int H, const char *opts) {
    OpShape s = {.B = B, .T = T, .C = C, .H = H};
    char err[256];
    const OpDef_f64 *row = op_find_f64(op);
    if (op_options_apply(row->options, row->fixed, opts, T, &s, err, sizeof(err))) {
        printf("FAIL shape of %s: %s\n", op, err);
        exit(1);
    }
    return s;
}

// ---- every row's oracle on every test shape ---------------------------------------------------

static void check_references(void) {
    for (int i = 0; i < N_OPS_f64; i++) {
        const OpDef_f64 *op = OPS_f64[i];
        if (!op->reference) {
            if (op->mixer) {
                printf("FAIL mixer %s: the row declares no reference oracle\n", op->name);
                failures++;
            }
            continue;
        }
        int covered = 0;
        for (int t = 0; t < op->n_tests; t++) {
            OpShape s = op->tests[t].s;
            char err[256], what[160];
            if (op_options_apply(op->options, op->fixed, op->tests[t].opts, s.T, &s, err,
                                 sizeof(err))) {
                printf("FAIL %s [shape %d]: %s\n", op->name, t, err);
                failures++;
                continue;
            }
            Run r = run_new(op->name, s, 100 + (uint64_t)t);
            // Data-dependent inputs beyond q|k|v (log-linear's per-level weights) away from
            // their initial values, so the oracle sees them matter.
            if (r.in_n[CORE_IN_XPROJ])
                for (size_t j = 0; j < r.in_n[CORE_IN_XPROJ]; j++)
                    r.in[CORE_IN_XPROJ][j] = rng_normal(rng_key(5, 5, 0, 0), j);
            r.op->forward(&r.s, (const double *const *)r.in, r.out, r.saved);
            double *ref = malloc(sizeof(double) * r.out_n[0]);
            if (!op->reference(&r.s, (const double *const *)r.in, ref)) {
                covered++;
                snprintf(what, sizeof(what), "%s T=%d %s == its oracle", op->name, s.T,
                         op->tests[t].opts ? op->tests[t].opts : "");
                report(what, max_rel_err(r.out[0], ref, r.out_n[0]), RTOL);
            }
            free(ref);
            run_free(&r);
        }
        if (!covered) {
            printf("FAIL %s: its oracle covers none of its test shapes\n", op->name);
            failures++;
        }
    }
}

// ---- log-linear ---------------------------------------------------------------------------------

// Level of source u for target t from the dyadic buckets (mixers.md 6.1), not from the XOR
// identity the op uses: level l >= 1 holds [t - t mod 2^l, + 2^(l-1)) when bit l-1 of t is set.
static int bucket_level(int t, int u) {
    if (u == t) return 0;
    for (int l = 1; l < 31; l++) {
        int lo = t - t % (1 << l);
        if (((t >> (l - 1)) & 1) && u >= lo && u < lo + (1 << (l - 1))) return l;
    }
    return -1;
}

static void check_loglinear(void) {
    // lambda == 1 (W_x = 0 and the initial bias): plain linear attention, for any chunk.
    for (int chunk = 1; chunk <= 64; chunk *= 4) {
        char opts[64];
        snprintf(opts, sizeof(opts), "chunk=%d max_len=160", chunk);
        OpShape s = shape("loglinear", 2, 77, 8, 2, opts);
        Run r = run_new("loglinear", s, 300);
        memset(r.in[1], 0, sizeof(double) * r.in_n[1]);
        r.op->forward(&r.s, (const double *const *)r.in, r.out, r.saved);
        Run lin = run_new("linear", shape("linear", 2, 77, 8, 2, opts), 300);
        char what[128];
        snprintf(what, sizeof(what), "loglinear with lambda = 1, chunk %d == linear attention",
                 chunk);
        report(what, max_rel_err(r.out[0], lin.out[0], r.out_n[0]), RTOL);
        run_free(&r), run_free(&lin);
    }
}

// ---- HSS ------------------------------------------------------------------------------------

static void check_hss(void) {
    static const int Ts[] = {1, 7, 64, 129};
    for (int ti = 0; ti < 4; ti++) {
        // head dim 16, leaves of 4 (tree depth 2): full rank 8 (the largest off-diagonal block)
        OpShape s = shape("hss", 2, Ts[ti], 32, 2, "chunk=16 hss_leaf=4 hss_rank=8");
        Run full = run_new("hss", s, 400 + ti);
        Run dense = run_new("linear", shape("linear", 2, Ts[ti], 32, 2, "chunk=16"), 400 + ti);
        char what[128];
        snprintf(what, sizeof(what), "hss full rank T=%d == dense state", Ts[ti]);
        report(what, max_rel_err(full.out[0], dense.out[0], full.out_n[0]), RTOL);
        run_free(&full), run_free(&dense);
        if (ti == 3) {  // P(P(S)) == P(S) for a random S: orthonormal bases
            Run low = run_new(
                "hss", shape("hss", 2, Ts[ti], 32, 2, "chunk=16 hss_leaf=4 hss_rank=2"), 400 + ti);
            int D = 16;
            double S[256], PS[256], PPS[256];
            for (int i = 0; i < D * D; i++) S[i] = rng_normal(rng_key(9, 9, 0, 0), (uint64_t)i);
            ref_hss_project(&low.s, low.in[CORE_IN_PARAMS], low.in[CORE_IN_PARAMS + 1], S, PS);
            ref_hss_project(&low.s, low.in[CORE_IN_PARAMS], low.in[CORE_IN_PARAMS + 1], PS, PPS);
            report("hss projection is idempotent (orthonormal bases)", max_rel_err(PPS, PS, 256),
                   RTOL);
            run_free(&low);
        }
    }
}

// ---- circulant projection and FAVOR+ features -------------------------------------------------

// x~ = d^(-1/4) x (/ |x| when qk_norm): the random-feature input.
static void rf_input(const OpShape *s, const double *x, double *xt) {
    int D = s->C / s->H;
    double n = OPT_OF(LinearOpts, s).qk_norm ? fmax(sqrt(dot(x, x, D)), 1e-6) : 1;
    for (int i = 0; i < D; i++) xt[i] = pow(D, -0.25) * x[i] / n;
}

static void check_circulant(void) {
    static const int dims[][2] = {{5, 11}, {8, 8}, {16, 64}};  // head dim, features
    for (int c = 0; c < 3; c++) {
        int D = dims[c][0], m = dims[c][1];
        char opts[64];
        snprintf(opts, sizeof(opts), "feature_map=circulant features=%d", m);
        OpShape s = shape("feature_map", 2, 9, 2 * D, 2, opts);
        Run r = run_new("feature_map", s, 500 + c);
        const double *sg = r.in[CORE_IN_PARAMS + 1];
        double *W = ref_dense_projection(&s, (const double *const *)r.in + CORE_IN_PARAMS);
        double *ref = malloc(sizeof(double) * r.out_n[0]), *xt = malloc(sizeof(double) * D);
        for (int bh = 0; bh < s.B * s.H; bh++)
            for (int t = 0; t < s.T; t++)
                ref_phi(&s, W, q_of(&r, bh / s.H, t, bh % s.H), ref + ((size_t)bh * s.T + t) * m);
        char what[128];
        snprintf(what, sizeof(what), "circulant d=%d m=%d: FFT features == explicit C(r) diag(s)",
                 D, m);
        report(what, max_rel_err(r.out[0], ref, r.out_n[0]), RTOL);
        // dr: with g = dphi (.) phi, dW[j][k] = sum over tokens g_j xt_k, and W[j][k] =
        // r_b[(k - i) mod D] s_b[k] sends it to dr_b[(k - i) mod D] with the sign s_b[k].
        size_t nr = r.in_n[CORE_IN_PARAMS];
        double *dphi = malloc(sizeof(double) * r.out_n[0]),
               *zero = calloc(r.out_n[0], sizeof(double));
        double *din[OP_MAX_IO] = {calloc(r.in_n[0], sizeof(double)), NULL,
                                  calloc(nr, sizeof(double)), calloc(nr, sizeof(double))};
        double *dr_ref = calloc(nr, sizeof(double));
        for (size_t i = 0; i < r.out_n[0]; i++) dphi[i] = rng_normal(rng_key(6, 6, 0, 0), i);
        const double *douts[2] = {dphi, zero};
        r.op->backward(&r.s, (const double *const *)r.in, (const double *const *)r.out, r.saved,
                       douts, din);
        int nb = (m + D - 1) / D, drop = nb * D - m;
        for (int bh = 0; bh < s.B * s.H; bh++)
            for (int t = 0; t < s.T; t++) {
                rf_input(&s, q_of(&r, bh / s.H, t, bh % s.H), xt);
                const double *ph = r.out[0] + ((size_t)bh * s.T + t) * m;
                const double *dp = dphi + ((size_t)bh * s.T + t) * m;
                for (int j = 0; j < m; j++) {
                    int b = j < (nb - 1) * D ? j / D : nb - 1;
                    int i = b < nb - 1 ? j - b * D : j - (nb - 1) * D + drop;
                    for (int k = 0; k < D; k++)
                        dr_ref[b * D + ((k - i) % D + D) % D] +=
                            dp[j] * ph[j] * xt[k] * sg[b * D + k];
                }
            }
        snprintf(what, sizeof(what), "circulant d=%d m=%d: FFT dr == explicit dr", D, m);
        report(what, max_rel_err(din[CORE_IN_PARAMS], dr_ref, nr), RTOL);
        free(dphi), free(zero), free(dr_ref), free(din[0]), free(din[2]), free(din[3]);
        free(ref), free(xt), free(W);
        run_free(&r);
    }
}

static void check_favor(void) {
    // Orthogonal random features: rows orthogonal inside each block of d rows.
    OpShape s = shape("feature_map", 1, 1, 16, 2, "feature_map=favor features=4096 qk_norm=false");
    const OpDef_f64 *op = op_find_f64("feature_map");
    int D = 8, m = 4096;  // head dim 8
    double *W = malloc(sizeof(double) * m * D), *W2 = malloc(sizeof(double) * m * D);
    op->init_param(&s, 0, rng_key(1, 2, 3, 0), W);
    double worst = max_rel_err(W, W, (size_t)m * D);  // NaN if any entry is not finite
    for (int b0 = 0; b0 < m; b0 += D)
        for (int i = b0; i < b0 + D; i++)
            for (int j = b0; j < i; j++) {
                double c = dot(W + i * D, W + j * D, D);
                c /= sqrt(dot(W + i * D, W + i * D, D) * dot(W + j * D, W + j * D, D));
                worst = fabs(c) > worst ? fabs(c) : worst;
            }
    report("favor: rows orthogonal within each block (max |cos|)", worst, 1e-12);
    // E[phi(x).phi(y)] = exp(x~ . y~) = exp(q.k / sqrt(d)). The relative variance of one
    // feature is about exp(|x~ + y~|^2) - 1 (~0.6 here): 4096 features give ~1.3 % standard
    // error, so 5 % is a 4-sigma bound (statistical check, loose on purpose).
    double worst_rel = 0, x[8], y[8], px[4096], py[4096];
    for (int pair = 0; pair < 8; pair++) {
        for (int i = 0; i < D; i++)
            x[i] = 0.3 * rng_normal(rng_key(3, 3, (uint64_t)pair, 0), (uint64_t)i),
            y[i] = 0.3 * rng_normal(rng_key(3, 4, (uint64_t)pair, 0), (uint64_t)i);
        ref_phi(&s, W, x, px);
        ref_phi(&s, W, y, py);
        double est = dot(px, py, m), exact = exp(dot(x, y, D) / sqrt(D));
        if (!isfinite(est)) {
            worst_rel = NAN;
            break;
        }
        worst_rel = fmax(worst_rel, fabs(est / exact - 1));
    }
    report("favor: 4096-feature kernel estimate vs exp(q.k / sqrt(d)) (relative)", worst_rel, 0.05);
    op->init_param(&s, 0, rng_key(1, 2, 3, 0), W2);
    report("favor: a draw is a pure function of its key", max_rel_err(W, W2, (size_t)m * D), 0);
    free(W), free(W2);

    // Through the model: draw 0 is the initialisation, draw 1 differs, the buffer is not
    // trainable.
    ModelConfig cfg;
    char cerr[256];
    if (build_config(&cfg,
                     "model.vocab_size=5 model.d_model=16 model.n_layers=2 model.n_heads=2 "
                     "model.d_ff=8 model.mlp=none model.init_std=0.02 model.mixer=favor "
                     "mixer.chunk=8 mixer.features=12 data.seq_len=8",
                     cerr, sizeof(cerr))) {
        printf("FAIL favor config: %s\n", cerr);
        failures++;
        return;
    }
    Model_f64 model;
    char err[256];
    if (model_build_f64(&model, &cfg, &BACKEND_CPU_f64, err, sizeof(err))) {
        printf("FAIL model build: %s\n", err);
        failures++;
        return;
    }
    model_init_f64(&model, 42);
    double *init = malloc(sizeof(double) * model.n_params);
    memcpy(init, model.params, sizeof(double) * model.n_params);
    const ParamInfo *p0 = NULL, *p1 = NULL;
    for (int t = 0; t < model.n_tensors; t++)
        if (model.info[t].redraw && !p0)
            p0 = &model.info[t];
        else if (model.info[t].redraw)
            p1 = &model.info[t];
    int ok = p0 && p1 && !p0->trainable && !strcmp(p0->name, "layers.0.mixer.favor_proj");
    report("favor: each layer's projection is a non-trainable, redrawable buffer", !ok, 0);
    model_redraw_f64(&model, 42, 0);
    report("favor: redraw 0 == the initial draw", max_rel_err(model.params, init, model.n_params),
           0);
    model_redraw_f64(&model, 42, 1);
    double moved = max_rel_err(model.params + p0->offset, init + p0->offset, p0->size), other = 0;
    for (int t = 0; t < model.n_tensors; t++) {
        const ParamInfo *p = &model.info[t];
        if (!p->redraw)
            other = fmax(other, max_rel_err(model.params + p->offset, init + p->offset, p->size));
    }
    report("favor: redraw 1 changes the projection (1 / max change)", 1 / fmax(moved, 1e-300), 10);
    report("favor: and nothing else", other, 0);
    report("favor: the layers draw different projections (1 / max difference)",
           1 / fmax(max_rel_err(model.params + p0->offset, model.params + p1->offset, p0->size),
                    1e-300),
           10);
    free(init);
    model_free_f64(&model);
}

// ---- Hydra, the short convolution -------------------------------------------------------------

// A mixer layer with the identity-initialised convolution computes what it computes without.
// The Mamba-2 family's initialisation ranges (mixer.a_min/a_max, dt_min/dt_max): with the
// defaults every head's A = exp(a_log) lies in [1, 16] and dt = softplus(dt_bias) in
// [1e-3, 1e-1]; with a range of one point every head gets exactly that point.
static void check_mamba_init(void) {
    for (int r = 0; r < N_OPS_f64; r++) {
        const OpDef_f64 *op = OPS_f64[r];
        if (!op->mixer || !op_option_find(op->options, "a_min")) continue;
        for (int pinned = 0; pinned <= 1; pinned++) {
            OpShape s = {.B = 1, .T = 1, .C = 32, .H = 8};
            char err[256];
            const char *ov = pinned ? "a_min=2 a_max=2 dt_min=0.01 dt_max=0.01" : "";
            if (op_options_apply(op->options, op->fixed, ov, 1, &s, err, sizeof(err))) {
                printf("FAIL %s init options: %s\n", op->name, err);
                failures++;
                continue;
            }
            OpParam p[OP_MAX_PARAMS];
            int np = op->params(&s, p), ia = -1, idt = -1;
            for (int i = 0; i < np; i++) {
                if (p[i].init == INIT_CUSTOM && !strcmp(p[i].name, "dt_bias")) idt = i;
                if (p[i].init == INIT_CUSTOM && strstr(p[i].name, "_log")) ia = i;
            }
            if (ia < 0 || idt < 0) {
                printf("FAIL %s: no a_log / dt_bias parameters\n", op->name);
                failures++;
                continue;
            }
            double a_log[8], dt_bias[8], worst = 0;
            op->init_param(&s, ia, rng_key(4, 5, 6, 0), a_log);
            op->init_param(&s, idt, rng_key(4, 5, 7, 0), dt_bias);
            for (int h = 0; h < 8; h++) {
                double A = exp(a_log[h]), dt = log1p(exp(dt_bias[h]));
                if (pinned)
                    worst = fmax(worst, fmax(fabs(A - 2) / 2, fabs(dt - 0.01) / 0.01));
                else
                    worst = fmax(worst, (A < 1 - 1e-12 || A > 16 + 1e-12 ||
                                         dt < 1e-3 * (1 - 1e-9) || dt > 0.1 * (1 + 1e-9))
                                            ? 1
                                            : 0);
            }
            char what[96];
            snprintf(what, sizeof(what), "%s init: %s", op->name,
                     pinned ? "A = 2, dt = 0.01 exactly (relative error)"
                            : "A in [1, 16], dt in [1e-3, 0.1]");
            report(what, worst, 1e-12);
        }
    }
}

static void check_conv_identity(void) {
    for (int mx = 0; mx < N_OPS_f64; mx++) {
        if (!OPS_f64[mx]->mixer) continue;
        ModelConfig cfg;
        char ov[256], cerr[256];
        int n = snprintf(ov, sizeof(ov),
                         "model.d_model=8 model.n_heads=2 model.gate=true mixer.conv_kernel=4 "
                         "model.mixer=%s",
                         OPS_f64[mx]->name);
        // Small sizes for the options this row reads (the config refuses the others).
        static const char *small[][2] = {{"chunk", "4"},
                                         {"features", "6"},
                                         {"max_len", "16"},
                                         {"hss_rank", "1"},
                                         {"hss_leaf", "2"}};
        for (size_t k = 0; k < sizeof(small) / sizeof(small[0]); k++)
            if (op_option_find(OPS_f64[mx]->options, small[k][0]))
                n += snprintf(ov + n, sizeof(ov) - (size_t)n, " mixer.%s=%s", small[k][0],
                              small[k][1]);
        if (build_config(&cfg, ov, cerr, sizeof(cerr))) {
            printf("FAIL conv identity config of %s: %s\n", OPS_f64[mx]->name, cerr);
            failures++;
            continue;
        }
        int B = 2, T = 9, N = B * T, C = 8;
        ParamInfo with[MAX_PARAMS_PER_LAYER], without[MAX_PARAMS_PER_LAYER];
        int kw = mixer_param_specs(&cfg, 0, with);
        double *w[MAX_PARAMS_PER_LAYER], *w2[MAX_PARAMS_PER_LAYER];
        for (int i = 0; i < kw; i++) {
            w[i] = malloc(sizeof(double) * with[i].size);
            if (with[i].init == INIT_CUSTOM)
                mixer_init_param_f64(&cfg, 0, i, rng_key(8, (uint64_t)i, 0, 0), w[i]);
            else
                for (size_t j = 0; j < with[i].size; j++)
                    w[i][j] = 0.3 * rng_normal(rng_key(8, (uint64_t)i, 1, 0), j);
        }
        ModelConfig plain = cfg;
        plain.conv_kernel = 0;
        int k2 = mixer_param_specs(&plain, 0, without);
        for (int i = 0, j = 0; i < kw; i++)  // the same tensors, less the convolution
            if (strcmp(with[i].name, "wconv")) w2[j++] = w[i];
        double *x = malloc(sizeof(double) * N * C), *y = malloc(sizeof(double) * N * C);
        double *y2 = malloc(sizeof(double) * N * C);
        for (int i = 0; i < N * C; i++) x[i] = rng_normal(rng_key(8, 99, 0, 0), (uint64_t)i);
        double *acts =
            malloc(sizeof(double) * mixer_acts_size_f64(&cfg, 0, &BACKEND_CPU_f64, B, T, NULL));
        double *acts2 =
            malloc(sizeof(double) * mixer_acts_size_f64(&plain, 0, &BACKEND_CPU_f64, B, T, NULL));
        mixer_forward_f64(&cfg, 0, &BACKEND_CPU_f64, B, T, NULL, y, x, w, acts);
        mixer_forward_f64(&plain, 0, &BACKEND_CPU_f64, B, T, NULL, y2, x, w2, acts2);
        char what[128];
        snprintf(what, sizeof(what), "%s: identity-initialised conv == no conv (%d vs %d tensors)",
                 OPS_f64[mx]->name, kw, k2);
        report(what, max_rel_err(y, y2, (size_t)N * C), 1e-14);
        for (int i = 0; i < kw; i++) free(w[i]);
        free(x), free(y), free(y2), free(acts), free(acts2);
    }
}

// ---- auxiliary figures ------------------------------------------------------------------------

static double aux_value(const OpAux *a, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(a[i].name, name)) return a[i].value;
    return NAN;
}

// The effective rank of a D x D state from its singular values, computed independently of
// LAPACK: cyclic Jacobi rotations diagonalise S^T S, sigma_i = sqrt(eigenvalue_i), then
// exp(-sum p_i log p_i) with p_i = sigma_i / sum sigma.
static double jacobi_effective_rank(const double *S, int D) {
    double G[64];
    for (int x = 0; x < D; x++)
        for (int y = 0; y < D; y++) {
            G[x * D + y] = 0;
            for (int i = 0; i < D; i++) G[x * D + y] += S[i * D + x] * S[i * D + y];
        }
    for (int sweep = 0; sweep < 100; sweep++)
        for (int p = 0; p < D; p++)
            for (int q = p + 1; q < D; q++) {
                if (fabs(G[p * D + q]) < 1e-300) continue;
                double th = 0.5 * atan2(2 * G[p * D + q], G[q * D + q] - G[p * D + p]);
                double c = cos(th), sn = sin(th);
                for (int k = 0; k < D; k++) {  // G <- J^T G J
                    double a = G[k * D + p], b = G[k * D + q];
                    G[k * D + p] = c * a - sn * b, G[k * D + q] = sn * a + c * b;
                }
                for (int k = 0; k < D; k++) {
                    double a = G[p * D + k], b = G[q * D + k];
                    G[p * D + k] = c * a - sn * b, G[q * D + k] = sn * a + c * b;
                }
            }
    double total = 0, h = 0;
    for (int i = 0; i < D; i++) total += sqrt(fmax(G[i * D + i], 0));
    for (int i = 0; i < D && total > 0; i++) {
        double p = sqrt(fmax(G[i * D + i], 0)) / total;
        if (p > 0) h -= p * log(p);
    }
    return total > 0 ? exp(h) : 0;
}

static void check_aux(void) {
    // HSS memory ratio of E005 (D = 64, leaf 16, r = 8): (4 16^2 + 2 8^2 + 4 8^2) / 64^2.
    OpShape s = shape("hss", 1, 20, 64, 1, "chunk=8 hss_leaf=16 hss_rank=8");
    Run r = run_new("hss", s, 700);
    OpAux a[OP_MAX_AUX];
    int n = r.op->aux(&r.s, (const double *const *)r.in, a);
    report("hss state_memory_ratio (d 64, leaf 16, r 8) == 1408 / 4096",
           fabs(aux_value(a, n, "state_memory_ratio") - 1408.0 / 4096), 1e-15);
    report("hss feature_map_ms is reported", !(aux_value(a, n, "feature_map_ms") >= 0), 0);
    run_free(&r);
    // Full rank keeps every off-diagonal block: top-r energy 1 at both depths; a rank-1 share
    // lies in (0, 1].
    s = shape("hss", 1, 20, 64, 1, "chunk=8 hss_leaf=16 hss_rank=32");
    Run full = run_new("linear", s, 701);
    n = full.op->aux(&full.s, (const double *const *)full.in, a);
    report("dense baseline: top-r energy at full rank == 1 (depth 1, 2)",
           fmax(fabs(aux_value(a, n, "offdiag_energy_depth_1") - 1),
                fabs(aux_value(a, n, "offdiag_energy_depth_2") - 1)),
           1e-12);
    // Rank 1: the share of sigma_1^2, by power iteration on each depth-1 block of the dense
    // state S = sum_t phi(k_t) v_t^T (one sequence, one head: two blocks).
    s = shape("hss", 1, 20, 64, 1, "chunk=8 hss_leaf=16 hss_rank=1");
    full.s = s;
    n = full.op->aux(&full.s, (const double *const *)full.in, a);
    double *S = calloc(64 * 64, sizeof(double)), pk[64], share = 0;
    for (int t = 0; t < s.T; t++) {
        const double *k = q_of(&full, 0, t, 0) + 64;
        ref_phi(&s, NULL, k, pk);
        for (int i = 0; i < 64; i++)
            for (int j = 0; j < 64; j++) S[i * 64 + j] += pk[i] * k[64 + j];
    }
    for (int blk = 0; blk < 2; blk++) {
        int r0 = blk * 32, c0 = (1 - blk) * 32;
        double v[32], u[32], frob = 0, sigma2 = 0;
        for (int j = 0; j < 32; j++) v[j] = 1;
        for (int it = 0; it < 2000; it++) {  // v <- B^T B v / |.|
            for (int i = 0; i < 32; i++) u[i] = 0;
            for (int i = 0; i < 32; i++)
                for (int j = 0; j < 32; j++) u[i] += S[(r0 + i) * 64 + c0 + j] * v[j];
            double nv = 0;
            for (int j = 0; j < 32; j++) {
                v[j] = 0;
                for (int i = 0; i < 32; i++) v[j] += S[(r0 + i) * 64 + c0 + j] * u[i];
                nv += v[j] * v[j];
            }
            sigma2 = dot(u, u, 32);  // |B v|^2 with |v| = 1 from the previous step
            for (int j = 0; j < 32; j++) v[j] /= sqrt(nv);
        }
        for (int i = 0; i < 32; i++)
            for (int j = 0; j < 32; j++) frob += pow(S[(r0 + i) * 64 + c0 + j], 2);
        share += sigma2 / frob / 2;
    }
    report("dense baseline: rank-1 energy share == power iteration (depth 1)",
           fabs(aux_value(a, n, "offdiag_energy_depth_1") - share), 1e-10);
    free(S);
    run_free(&full);

    // Log-linear level energies == |sum of f_u v_u^T over bucket l of t = T-1|_F^2 (buckets from
    // the dyadic definition), averaged over sequences and heads.
    OpShape ls = shape("loglinear", 2, 23, 8, 2, "chunk=4 max_len=32");
    Run lr = run_new("loglinear", ls, 702);
    n = lr.op->aux(&lr.s, (const double *const *)lr.in, a);
    int L = (int)(lr.in_n[2] / ls.H), D = 4, T = ls.T;
    double worst = n == 1 + 2 * L ? 0 : NAN, worst_rank = n == 1 + 2 * L ? 0 : NAN;
    for (int l = 0; l < L; l++) {
        double e = 0, erank = 0;
        for (int bh = 0; bh < 4; bh++) {
            double S[16] = {0}, pk[4];
            for (int u = 0; u < T; u++) {
                if (bucket_level(T - 1, u) != l) continue;
                const double *k = q_of(&lr, bh / 2, u, bh % 2) + 8;
                ref_phi(&ls, NULL, k, pk);
                for (int i = 0; i < D; i++)
                    for (int j = 0; j < D; j++) S[i * D + j] += pk[i] * k[8 + j];
            }
            e += dot(S, S, 16) / 4;
            erank += jacobi_effective_rank(S, D) / 4;
        }
        char name[40];
        snprintf(name, sizeof(name), "level_energy_%d", l);
        worst = fmax(worst, fabs(aux_value(a, n, name) - e) / fmax(1, e));
        snprintf(name, sizeof(name), "state_erank_%d", l);
        worst_rank = fmax(worst_rank, fabs(aux_value(a, n, name) - erank));
    }
    report("loglinear level_energy_l == explicit bucket states", worst, RTOL);
    // (sigma from a Gram matrix's eigenvalues: a small sigma carries ~sqrt(eps) |S| of error in
    // either method, so the figures agree to ~1e-8, not to rounding)
    report("loglinear state_erank_l == exp(entropy of sigma / sum sigma), Jacobi SVD", worst_rank,
           1e-6);
    run_free(&lr);

    // The decay family's state_erank: with one-hot keys k_t = e_t (T = D), beta = 1 and decays
    // of 1, the final state's rows are the values v_t, so its effective rank is the values'
    // (the test's own Jacobi SVD); decay's state is Delta sum k v^T, the same rank.
    for (int r = 0; r < 4; r++) {
        static const char *rows[] = {"decay", "deltanet", "gated_deltanet", "gla"};
        OpShape ds = shape(rows[r], 1, 4, 4, 1, "chunk=2");
        Run dr = run_new(rows[r], ds, 703);
        double V[16];
        for (int t = 0; t < 4; t++)
            for (int j = 0; j < 4; j++) {
                double *x = dr.in[CORE_IN_QKV] + (size_t)t * 12;
                x[4 + j] = t == j;  // k_t = e_t
                V[t * 4 + j] = x[8 + j];
            }
        // DeltaNet: beta = sigmoid(40) = 1; decay, Gated DeltaNet: a_log = -40, decays
        // exp(-~1e-17) = 1; GLA: the gate bias (its first parameter) at 40 and the gate's input
        // at 0, alpha = sigmoid(40)^(1/gate_norm) = 1
        for (size_t i = 0; i < dr.in_n[CORE_IN_XPROJ]; i++)
            dr.in[CORE_IN_XPROJ][i] = r == 1 || r == 2 ? 40 : 0;
        if (r == 0 || r == 2) dr.in[CORE_IN_PARAMS][0] = -40;
        if (r == 3)
            for (size_t i = 0; i < dr.in_n[CORE_IN_PARAMS]; i++) dr.in[CORE_IN_PARAMS][i] = 40;
        n = dr.op->aux(&dr.s, (const double *const *)dr.in, a);
        char what[96];
        snprintf(what, sizeof(what), "%s state_erank == the values' effective rank (one-hot keys)",
                 rows[r]);
        report(what, fabs(aux_value(a, n, "state_erank") - jacobi_effective_rank(V, 4)), 1e-6);
        run_free(&dr);
    }

    // Mamba-2 likewise: B_t = silu(40) e_t one-hot, decays 1, so the N x P state's rows are
    // 40 Delta silu(x_t), and its effective rank is that of the silu(x_t).
    {
        OpShape ms = shape("mamba2", 1, 4, 4, 1, "chunk=2 d_state=4 expand=1");
        Run mr = run_new("mamba2", ms, 704);
        double V[16];
        for (int t = 0; t < 4; t++)
            for (int j = 0; j < 4; j++) {
                double *row = mr.in[CORE_IN_QKV] + (size_t)t * 12, x = row[j];
                row[4 + j] = t == j ? 40 : 0;  // B_t
                V[t * 4 + j] = x / (1 + exp(-x));
            }
        mr.in[CORE_IN_PARAMS][0] = -40;  // a_log: decays exp(-~1e-17) = 1
        for (size_t i = 0; i < mr.in_n[CORE_IN_XPROJ]; i++)
            mr.in[CORE_IN_XPROJ][i] = 0;  // one Delta
        n = mr.op->aux(&mr.s, (const double *const *)mr.in, a);
        report("mamba2 state_erank == silu(x)'s effective rank (one-hot B)",
               fabs(aux_value(a, n, "state_erank") - jacobi_effective_rank(V, 4)), 1e-6);
        run_free(&mr);
    }

    // Hydra's state kv = sum_t kh_t (.) v_t is diagonal: with keys k_t = e_t (T = C) its
    // entries are v_t[t], and its effective rank is exp of the entropy of |v_t[t]| / sum.
    {
        Run hr = run_new("hydra", shape("hydra", 1, 6, 6, 1, "hydra_norm=none"), 705);
        double total = 0, h = 0;
        for (int t = 0; t < 6; t++) {
            double *x = hr.in[0] + (size_t)t * 18;
            for (int j = 0; j < 6; j++) x[6 + j] = t == j;
            total += fabs(x[12 + t]);
        }
        for (int t = 0; t < 6; t++) {
            double p = fabs(hr.in[0][(size_t)t * 18 + 12 + t]) / total;
            h -= p > 0 ? p * log(p) : 0;
        }
        n = hr.op->aux(&hr.s, (const double *const *)hr.in, a);
        report("hydra state_erank == exp(entropy of |diag kv|), one-hot keys",
               fabs(aux_value(a, n, "state_erank") - exp(h)), 1e-12);
        run_free(&hr);
    }
    // HSS: at full rank the held state is the dense one, so its effective rank is linear
    // attention's on the same inputs; at rank 1 it is the projected state's (Jacobi SVD).
    {
        Run hf = run_new("hss", shape("hss", 2, 9, 16, 2, "chunk=4 hss_leaf=2 hss_rank=4"), 706);
        Run lf = run_new("linear", shape("linear", 2, 9, 16, 2, "chunk=4"), 706);
        memcpy(lf.in[CORE_IN_QKV], hf.in[CORE_IN_QKV], sizeof(double) * hf.in_n[CORE_IN_QKV]);
        n = hf.op->aux(&hf.s, (const double *const *)hf.in, a);
        double e_hss = aux_value(a, n, "state_erank");
        n = lf.op->aux(&lf.s, (const double *const *)lf.in, a);
        report("hss state_erank at full rank == linear's (the dense state)",
               fabs(e_hss - aux_value(a, n, "state_erank")), 1e-9);
        run_free(&lf);
        hf.s = shape("hss", 2, 9, 16, 2, "chunk=4 hss_leaf=2 hss_rank=1");
        Run h1 = run_new("hss", hf.s, 706);
        memcpy(h1.in[CORE_IN_QKV], hf.in[CORE_IN_QKV], sizeof(double) * hf.in_n[CORE_IN_QKV]);
        n = h1.op->aux(&h1.s, (const double *const *)h1.in, a);
        double expect = 0, pk[8], S[64], PS[64];
        for (int bh = 0; bh < 4; bh++) {
            memset(S, 0, sizeof(S));
            for (int t = 0; t < 9; t++) {
                const double *k = q_of(&h1, bh / 2, t, bh % 2) + 16;
                ref_phi(&h1.s, NULL, k, pk);
                for (int i = 0; i < 8; i++)
                    for (int j = 0; j < 8; j++) S[i * 8 + j] += pk[i] * k[16 + j];
            }
            ref_hss_project(&h1.s, h1.in[CORE_IN_PARAMS], h1.in[CORE_IN_PARAMS + 1], S, PS);
            expect += jacobi_effective_rank(PS, 8) / 4;
        }
        report("hss state_erank at rank 1 == the projected state's, Jacobi SVD",
               fabs(aux_value(a, n, "state_erank") - expect), 1e-6);
        run_free(&h1), run_free(&hf);
    }

    // The layer counts NaN/Inf in the core's input and output.
    ModelConfig cfg;
    char cerr[256];
    if (build_config(&cfg, "model.d_model=8 model.n_heads=2 model.mixer=linear mixer.chunk=4", cerr,
                     sizeof(cerr))) {
        printf("FAIL aux config: %s\n", cerr);
        failures++;
        return;
    }
    ParamInfo specs[MAX_PARAMS_PER_LAYER];
    int k = mixer_param_specs(&cfg, 0, specs);
    double *w[MAX_PARAMS_PER_LAYER], x[2 * 8 * 8], y[2 * 8 * 8];
    for (int i = 0; i < k; i++) {
        w[i] = malloc(sizeof(double) * specs[i].size);
        for (size_t j = 0; j < specs[i].size; j++)
            w[i][j] = 0.3 * rng_normal(rng_key(4, 4, (uint64_t)i, 0), j);
    }
    for (int i = 0; i < 128; i++) x[i] = rng_normal(rng_key(4, 5, 0, 0), (uint64_t)i);
    double *acts =
        malloc(sizeof(double) * mixer_acts_size_f64(&cfg, 0, &BACKEND_CPU_f64, 2, 8, NULL));
    mixer_forward_f64(&cfg, 0, &BACKEND_CPU_f64, 2, 8, NULL, y, x, w, acts);
    n = mixer_aux_f64(&cfg, 0, &BACKEND_CPU_f64, 2, 8, NULL, w, acts, a);
    report("mixer_aux: no nonfinite values on finite input", aux_value(a, n, "nonfinite"), 0);
    x[3 * 8 + 1] = NAN;  // token 3 of sequence 0: its q|k|v, and every later output of it
    mixer_forward_f64(&cfg, 0, &BACKEND_CPU_f64, 2, 8, NULL, y, x, w, acts);
    n = mixer_aux_f64(&cfg, 0, &BACKEND_CPU_f64, 2, 8, NULL, w, acts, a);
    report("mixer_aux: counts NaN (1 / count)", 1 / aux_value(a, n, "nonfinite"), 1.0 / 24);
    for (int i = 0; i < k; i++) free(w[i]);
    free(acts);
}

// ---- OscGate: bounded under an adversarial omega schedule (mixers.md 20) -------------------

// One oscillator at the experiment's dt = 0.01 and zeta = 0.02, started at (1, 1) and then
// unforced, with omega_t picked each step (from 49 values in [0.01, 100]) to make the
// experiment's state as large as possible. The stable row must stay within its start (every
// |lambda_t| < 1); the experiment's row, under the same schedule, must grow by orders of
// magnitude (the counter-example the stable form exists for: without it this test would not
// show that the schedule is adversarial).
static void check_oscillator_stability(void) {
    enum { T = 400 };
    const double dt = 0.01, zeta = 0.02, ze_pre = log(zeta / (1 - zeta));
    double om_pre[T], z = 1, y = 1;
    for (int t = 0; t < T; t++) {
        double best = -1, best_pre = 0, bz = 0, by = 0;
        for (int i = 0; i <= 48; i++) {
            double w = pow(10, -2 + i / 12.0), S = 1 / (1 + dt * dt * w * w);
            double nz = (1 - zeta) * (S * z - dt * w * w * S * y);
            double ny = (1 - zeta) * (dt * S * z + S * y);
            if (nz * nz + ny * ny > best)
                best = nz * nz + ny * ny, best_pre = log(expm1(w)), bz = nz, by = ny;
        }
        om_pre[t] = best_pre, z = bz, y = by;
    }
    double start = sqrt(2.0);
    for (int mve = 0; mve < 2; mve++) {
        const char *name = mve ? "oscgate_mve" : "oscgate";
        OpShape s = shape(name, 1, T, 1, 1, "oscillators=1 osc_dt=0.01 chunk=64");
        const OpDef_f64 *op = op_find_f64(name);
        size_t in_n[OP_MAX_IO], out_n[2], saved_n;
        op->sizes(&s, in_n, out_n, &saved_n);
        double *in[OP_MAX_IO] = {0}, *out = calloc(out_n[0], sizeof(double));
        double *saved = calloc(saved_n, sizeof(double));
        for (int i = 0; i < op->n_in; i++) in[i] = calloc(in_n[i] ? in_n[i] : 1, sizeof(double));
        in[CORE_IN_QKV][0] = in[CORE_IN_QKV][1] = 1;  // b_0 = (1, 1); the biases stay 0
        for (int t = 0; t < T; t++)
            in[CORE_IN_XPROJ][2 * t] = om_pre[t], in[CORE_IN_XPROJ][2 * t + 1] = ze_pre;
        op->forward(&s, (const double *const *)in, &out, saved);
        double peak = 0;
        for (int t = 0; t < T; t++) peak = fmax(peak, hypot(out[3 * t], out[3 * t + 1]));
        char what[160];
        if (!mve) {
            snprintf(what, sizeof(what),
                     "oscgate: adversarial omega, 400 steps: max |h_t| %.3g <= |h_0| = %.3g", peak,
                     start);
            report(what, fmax(peak - start, 0), 1e-12);
        } else {
            snprintf(what, sizeof(what),
                     "oscgate_mve: the same schedule grows its state: max %.3g >= 1e6", peak);
            report(what, peak >= 1e6 ? 0 : 1, 0);
        }
        for (int i = 0; i < op->n_in; i++) free(in[i]);
        free(out), free(saved);
    }
}

// OscGate with zeta = 0 and a constant omega is LinOSS-IM (mixers.md 19 and 20): with
// Delta = dt and A = omega^2, h = z + i omega y evolves by the same step, so feeding OscGate
// the LinOSS forcing in those coordinates, b = (Delta S u, omega Delta^2 S u), gives
// Im h_t / omega = LinOSS's y_t. zeta = sigmoid(-40): 1 - zeta rounds to 1 in double.
static void check_oscgate_is_linoss(void) {
    enum { T = 50 };
    const double dt = 0.3, w = 1.7, S = 1 / (1 + dt * dt * w * w);
    OpShape so = shape("oscgate", 1, T, 1, 1, "oscillators=1 osc_dt=0.3 chunk=16");
    OpShape sl = shape("linoss", 1, T, 1, 1, "oscillators=1 chunk=16 linoss_form=im");
    Run o = run_new("oscgate", so, 3), l = run_new("linoss", sl, 4);
    l.in[CORE_IN_PARAMS][0] = w * w;                   // a_hat: A = omega^2
    l.in[CORE_IN_PARAMS + 1][0] = log(dt / (1 - dt));  // steps: Delta = dt
    o.in[CORE_IN_PARAMS][0] = 0, o.in[CORE_IN_PARAMS + 1][0] = 0;
    for (int t = 0; t < T; t++) {
        double u = l.in[CORE_IN_QKV][3 * t];  // linoss lanes: Re (0), Im (1), then u
        l.in[CORE_IN_QKV][3 * t + 1] = 0;
        o.in[CORE_IN_QKV][3 * t] = dt * S * u, o.in[CORE_IN_QKV][3 * t + 1] = w * dt * dt * S * u;
        o.in[CORE_IN_XPROJ][2 * t] = log(expm1(w)), o.in[CORE_IN_XPROJ][2 * t + 1] = -40;
    }
    l.op->forward(&l.s, (const double *const *)l.in, l.out, l.saved);
    o.op->forward(&o.s, (const double *const *)o.in, o.out, o.saved);
    double err = 0;
    for (int t = 0; t < T; t++)
        err = fmax(
            err, fabs(o.out[0][3 * t + 1] / w - l.out[0][3 * t]) / fmax(1, fabs(l.out[0][3 * t])));
    report("oscgate, zeta = 0 and constant omega == linoss IM (Im h / omega = y)", err, 1e-12);
    run_free(&o), run_free(&l);
}

// ---- DPLR (mixers.md 21) -------------------------------------------------------------------

// Channel c's kernel K[0..T) through the row's forward: y for a unit impulse at t = 0 (B = 1).
static void dplr_kernel(Run *r, int c, double *K) {
    int T = r->s.T, C = r->s.C;
    memset(r->in[CORE_IN_QKV], 0, sizeof(double) * r->in_n[CORE_IN_QKV]);
    r->in[CORE_IN_QKV][c] = 1;
    r->op->forward(&r->s, (const double *const *)r->in, r->out, r->saved);
    for (int t = 0; t < T; t++) K[t] = r->out[0][(size_t)t * 2 * C + c];
}

// ||a - b|| / ||b|| over n values.
static double rel_norm_err(const double *a, const double *b, size_t n) {
    double e = 0, ref = 0;
    for (size_t i = 0; i < n; i++) e += (a[i] - b[i]) * (a[i] - b[i]), ref += b[i] * b[i];
    return sqrt(e / ref);
}

// - the oracle on every test shape with random parameters (the test shapes' own run uses the
//   HiPPO initialisation, where qbar's extra columns are 0 and the step is small);
// - HiPPO-LegS at initialisation: A = Lambda - P Q^* has LegS's spectrum -1..-N (the power sums
//   tr A^k, k = 1..N, fix it), and Q^* Lambda^-1 P = -1 (Q^* D(0) P = 1: bench_dplr's identity);
// - the Neumann series against Woodbury as the order grows. At HiPPO-LegS itself the spectral
//   radius of D b P Q^* is >= 1 (exactly 1 at s = 0, more elsewhere), so the series does not
//   converge there: the check is that the aux figures say so and that neumann_error is the
//   measured error (order 1). With P and qbar scaled by 0.05 (rho < 1) the error falls with every
//   order and order 8 is within 1e-6 of Woodbury.
static void check_dplr(void) {
    const OpDef_f64 *op = op_find_f64("dplr");
    for (int t = 0; t < op->n_tests; t++) {
        const OpTest *ts = &op->tests[t];
        OpShape s = shape("dplr", ts->s.B, ts->s.T, ts->s.C, 1, ts->opts);
        Run r = run_new("dplr", s, 900 + (uint64_t)t);
        for (int i = CORE_IN_PARAMS; i < op->n_in; i++) {
            uint64_t key = rng_key(9, (uint64_t)t, (uint64_t)i, 0);
            for (size_t j = 0; j < r.in_n[i]; j++) {
                double g = rng_normal(key, j);
                if (i == CORE_IN_PARAMS)  // Lambda: decaying modes of various speeds
                    r.in[i][j] = j % 2 ? 2 * g : -0.2 - 0.5 * fabs(g);
                else if (i == op->n_in - 1)  // log_dt
                    r.in[i][j] = log(0.3) + 0.5 * g;
                else
                    r.in[i][j] = 0.6 * g;
            }
        }
        r.op->forward(&r.s, (const double *const *)r.in, r.out, r.saved);
        double *ref = malloc(sizeof(double) * r.out_n[0]), scale = 0;
        op->reference(&r.s, (const double *const *)r.in, ref);
        for (size_t i = 0; i < r.out_n[0]; i++) scale = fmax(scale, fabs(ref[i]));
        double worst = 0;
        for (size_t i = 0; i < r.out_n[0]; i++)
            worst = fmax(worst, fabs(r.out[0][i] - ref[i]) / scale);
        char what[160];
        snprintf(what, sizeof(what), "dplr T=%d %s, random parameters == oracle", s.T, ts->opts);
        report(what, worst, 1e-10);
        free(ref);
        run_free(&r);
    }

    for (int N = 5; N <= 6; N++) {
        char opts[64];
        snprintf(opts, sizeof(opts), "dplr_state=%d", N);
        Run r = run_new("dplr", shape("dplr", 1, 1, 1, 1, opts), 950);
        const double *lam = r.in[CORE_IN_PARAMS], *P = r.in[CORE_IN_PARAMS + 1],
                     *qb = r.in[CORE_IN_PARAMS + 2];
        double complex *A = malloc(sizeof(double complex) * N * N * 3), *Ak = A + N * N,
                       *tmp = Ak + N * N, qlp = 0;
        for (int n = 0; n < N; n++) {
            for (int m = 0; m < N; m++)
                A[n * N + m] = (n == m ? lam[2 * n] + I * lam[2 * n + 1] : 0) -
                               (P[2 * n] + I * P[2 * n + 1]) * (qb[2 * m] + I * qb[2 * m + 1]);
            qlp += (qb[2 * n] + I * qb[2 * n + 1]) * (P[2 * n] + I * P[2 * n + 1]) /
                   (lam[2 * n] + I * lam[2 * n + 1]);
        }
        memcpy(Ak, A, sizeof(double complex) * N * N);
        double worst = 0;
        for (int k = 1; k <= N; k++) {
            double complex tr = 0;
            double want = 0;
            for (int n = 0; n < N; n++) tr += Ak[n * N + n], want += pow(-(n + 1.0), k);
            worst = fmax(worst, cabs(tr - want) / fabs(want));
            for (int n = 0; n < N; n++)
                for (int m = 0; m < N; m++) {
                    double complex acc = 0;
                    for (int l = 0; l < N; l++) acc += Ak[n * N + l] * A[l * N + m];
                    tmp[n * N + m] = acc;
                }
            memcpy(Ak, tmp, sizeof(double complex) * N * N);
        }
        snprintf(opts, sizeof(opts), "dplr init N=%d: tr A^k == sum (-n)^k, k = 1..N", N);
        report(opts, worst, 1e-10);
        snprintf(opts, sizeof(opts), "dplr init N=%d: Q^* Lambda^-1 P == -1", N);
        report(opts, cabs(qlp + 1), 1e-12);
        free(A);
        run_free(&r);
    }

    enum { T = 64, ORDERS = 8 };
    for (int shrunk = 0; shrunk < 2; shrunk++) {
        double Kw[2 * T], Kn[2 * T], err[ORDERS + 1];
        int monotone = 1;
        OpAux a[OP_MAX_AUX];
        int na = 0;
        for (int k = 0; k <= ORDERS; k++) {
            char opts[64];
            snprintf(opts, sizeof(opts), "dplr_state=4 neumann_order=%d", k);
            Run r = run_new("dplr", shape("dplr", 1, T, 2, 1, opts), 960);
            for (int i = 1; i <= 2 && shrunk; i++)  // P and qbar
                for (size_t j = 0; j < r.in_n[CORE_IN_PARAMS + i]; j++)
                    r.in[CORE_IN_PARAMS + i][j] *= 0.05;
            for (int c = 0; c < 2; c++) dplr_kernel(&r, c, (k ? Kn : Kw) + c * T);
            if (k) err[k] = rel_norm_err(Kn, Kw, 2 * T);
            if (k > 1 && !(err[k] < err[k - 1] || err[k] < 1e-13)) monotone = 0;
            if (k == 1) na = r.op->aux(&r.s, (const double *const *)r.in, a);
            run_free(&r);
        }
        printf("     dplr %s: neumann vs woodbury, orders 1..%d:",
               shrunk ? "P, qbar x 0.05" : "HiPPO", ORDERS);
        for (int k = 1; k <= ORDERS; k++) printf(" %.2e", err[k]);
        printf("  (max rho %.3g)\n", aux_value(a, na, "neumann_radius_max"));
        double rho = aux_value(a, na, "neumann_radius_max");
        double aux_err = aux_value(a, na, "neumann_error");
        report(shrunk ? "dplr neumann_error (aux) == measured, P, qbar x 0.05"
                      : "dplr neumann_error (aux) == measured, HiPPO",
               fabs(aux_err - err[1]) / err[1], 1e-9);
        if (shrunk) {
            report("dplr P, qbar x 0.05: max rho < 1, none diverging",
                   !(rho < 1 && aux_value(a, na, "neumann_diverging") == 0), 0);
            report("dplr P, qbar x 0.05: neumann error falls with every order", !monotone, 0);
            report("dplr P, qbar x 0.05: neumann order 8 vs woodbury", err[ORDERS], 1e-6);
        } else {
            // rho = 1 at s = 0 up to rounding (Q^* D(0) P = 1); the series cannot converge.
            report("dplr HiPPO: aux reports max rho >= 1 (diverging pairs > 0)",
                   !(rho >= 1 - 1e-9 && aux_value(a, na, "neumann_diverging") > 0), 0);
            report("dplr HiPPO: neumann order 8 does not reach woodbury (error > 1e-3)",
                   !(err[ORDERS] > 1e-3), 0);
        }
    }
}

// ---- circulant-diagonal SSM: ||A_t||_2 < 1 under adversarial inputs (mixers.md 17) -----------

// ||A||_2 of a dense n x n (row-major): the square root of the largest eigenvalue of A^T A by
// cyclic Jacobi rotations (exact to rounding even when the top singular values nearly tie, as
// they do here: power iteration would converge too slowly to bound a step).
static double circdiag_norm2(const double *A, int n) {
    double *M = calloc((size_t)n * n, sizeof(double));
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            for (int k = 0; k < n; k++) M[i * n + j] += A[k * n + i] * A[k * n + j];
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0, diag = 0;
        for (int p = 0; p < n; p++) {
            diag += M[p * n + p] * M[p * n + p];
            for (int q = p + 1; q < n; q++) off += M[p * n + q] * M[p * n + q];
        }
        if (off <= 1e-32 * diag) break;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) {
                double apq = M[p * n + q];
                if (apq == 0) continue;
                double th = (M[q * n + q] - M[p * n + p]) / (2 * apq);
                double t = (th >= 0 ? 1 : -1) / (fabs(th) + sqrt(th * th + 1));
                double c = 1 / sqrt(t * t + 1), s = t * c;
                for (int k = 0; k < n; k++) {  // M <- M J, then J^T M
                    double kp = M[k * n + p], kq = M[k * n + q];
                    M[k * n + p] = c * kp - s * kq, M[k * n + q] = s * kp + c * kq;
                }
                for (int k = 0; k < n; k++) {
                    double pk = M[p * n + k], qk = M[q * n + k];
                    M[p * n + k] = c * pk - s * qk, M[q * n + k] = s * pk + c * qk;
                }
            }
    }
    double best = 0;
    for (int i = 0; i < n; i++) best = fmax(best, M[i * n + i]);
    free(M);
    return sqrt(best);
}

// The layer driven by raw projections of magnitude 10..50 (the d1, d2, rho and theta inputs;
// the biases 0), chosen each step among random candidates and one all-saturating one (every d
// = +1, every rho at its cap) to make ||A_t h_{t-1}|| largest, with the forcing B x_t the unit
// vector along h_{t-1} (the input that grows the state most). Each candidate's dense A_t is read
// off the op itself (n batch rows with h_0 = e_j, then the candidate step: row j ends at A e_j).
// Then the op runs the chosen sequence (chunks of 16: the cyclic reduction path) and must keep
// every ||A_t||_2 < 1, every step within ||h_t|| <= ||A_t|| ||h_{t-1}|| + ||B x_t||, and the
// state within sum_s (max ||A||)^s = 1 / (1 - max ||A||).
static void check_circulant_diagonal_stability(void) {
    enum { T = 300, CANDS = 9 };
    for (int n = 7; n <= 8; n++) {
        char opts[64];
        snprintf(opts, sizeof(opts), "chunk=16 circulant_n=%d", n);
        const OpDef_f64 *op = op_find_f64("circulant_diagonal");
        int K = n / 2 + 1, W = 3 * n + 2 * K + 1, raw_w = 2 * n + 2 * K;  // C = 1
        OpShape probe = shape("circulant_diagonal", n * CANDS, 2, 1, 1, opts);
        OpShape run = shape("circulant_diagonal", 1, T, 1, 1, opts);
        size_t in_n[OP_MAX_IO], out_n[2], saved_n;
        op->sizes(&probe, in_n, out_n, &saved_n);
        if (in_n[CORE_IN_QKV] != (size_t)n * CANDS * 2 * W) {
            printf("FAIL circulant_diagonal stability: unexpected input width\n");
            failures++;
            return;
        }
        double *pin[OP_MAX_IO] = {0}, *pout = malloc(sizeof(double) * out_n[0]);
        double *psaved = malloc(sizeof(double) * (saved_n + 1));
        for (int i = 0; i < op->n_in; i++) pin[i] = calloc(in_n[i] + 1, sizeof(double));
        double *seq_raw = calloc((size_t)T * raw_w, sizeof(double));
        double *seq_bx = calloc((size_t)T * n, sizeof(double)), *rho_t = malloc(sizeof(double) * T);
        double *h = calloc(n, sizeof(double)), *A = malloc(sizeof(double) * n * n);
        double *best_A = malloc(sizeof(double) * n * n),
               *cand = malloc(sizeof(double) * raw_w * CANDS);
        uint64_t key = rng_key(17, (uint64_t)n, 0, 0), draw = 0;
        for (int t = 0; t < T; t++) {
            double hn = sqrt(dot(h, h, n));
            for (int i = 0; i < n; i++)  // B x_0 = e_0 (h_{-1} = 0)
                seq_bx[(size_t)t * n + i] = hn > 0 ? h[i] / hn : i == 0;
            for (int c = 0; c < CANDS; c++)
                for (int i = 0; i < raw_w; i++) {
                    double mag = 10 + 40 * rng_uniform(key, draw++);
                    double sign = rng_uniform(key, draw++) < 0.5 ? -1 : 1;
                    // the last candidate saturates d1, d2 and rho at +50, phases random
                    cand[c * raw_w + i] = c == CANDS - 1 && i < 2 * n + K ? 50 : sign * mag;
                }
            for (int c = 0; c < CANDS; c++)
                for (int j = 0; j < n; j++) {
                    double *row = pin[CORE_IN_QKV] + (size_t)(c * n + j) * 2 * W;
                    memset(row, 0, sizeof(double) * 2 * W);
                    row[raw_w + j] = 1;  // token 0: B x = e_j from h_{-1} = 0
                    memcpy(row + W, cand + c * raw_w, sizeof(double) * raw_w);
                }
            op->forward(&probe, (const double *const *)pin, &pout, psaved);
            double best = -1;
            for (int c = 0; c < CANDS; c++) {
                for (int j = 0; j < n; j++)  // column j of A = h_1 of row j
                    for (int i = 0; i < n; i++)
                        A[i * n + j] = pout[((size_t)(c * n + j) * 2 + 1) * (n + 1) + i];
                double g = 0;
                for (int i = 0; i < n; i++) g += pow(dot(A + i * n, h, n), 2);
                if (g > best) {
                    best = g;
                    memcpy(best_A, A, sizeof(double) * n * n);
                    memcpy(seq_raw + (size_t)t * raw_w, cand + c * raw_w, sizeof(double) * raw_w);
                }
            }
            rho_t[t] = circdiag_norm2(best_A, n);
            double nh[64];
            for (int i = 0; i < n; i++)
                nh[i] = dot(best_A + i * n, h, n) + seq_bx[(size_t)t * n + i];
            memcpy(h, nh, sizeof(double) * n);
        }
        // The chosen sequence through the op.
        op->sizes(&run, in_n, out_n, &saved_n);
        double *in[OP_MAX_IO] = {0}, *out = malloc(sizeof(double) * out_n[0]);
        double *saved = malloc(sizeof(double) * (saved_n + 1));
        for (int i = 0; i < op->n_in; i++) in[i] = calloc(in_n[i] + 1, sizeof(double));
        for (int t = 0; t < T; t++) {
            memcpy(in[CORE_IN_QKV] + (size_t)t * W, seq_raw + (size_t)t * raw_w,
                   sizeof(double) * raw_w);
            memcpy(in[CORE_IN_QKV] + (size_t)t * W + raw_w, seq_bx + (size_t)t * n,
                   sizeof(double) * n);
        }
        op->forward(&run, (const double *const *)in, &out, saved);
        double rho_max = 0, step_excess = 0, peak = 0, prev = 0;
        for (int t = 0; t < T; t++) {
            double ht = sqrt(dot(out + (size_t)t * (n + 1), out + (size_t)t * (n + 1), n));
            if (!isfinite(ht)) ht = INFINITY;
            rho_max = fmax(rho_max, rho_t[t]);
            step_excess = fmax(step_excess, ht - (rho_t[t] * prev + 1) * (1 + 1e-9));
            peak = fmax(peak, ht), prev = ht;
        }
        char what[160];
        snprintf(what, sizeof(what),
                 "circulant_diagonal n=%d adversarial 10..50, %d steps: max ||A_t||_2 %.6f < 1", n,
                 T, rho_max);
        report(what, rho_max < 1 ? 0 : rho_max, 0);
        snprintf(what, sizeof(what), "circulant_diagonal n=%d: ||h_t|| <= ||A_t|| ||h_t-1|| + 1",
                 n);
        report(what, fmax(step_excess, 0), 0);
        snprintf(what, sizeof(what), "circulant_diagonal n=%d: max ||h_t|| %.4g <= 1/(1 - %.6f)", n,
                 peak, rho_max);
        report(what, rho_max < 1 && peak <= 1 / (1 - rho_max) ? 0 : peak, 0);
        OpAux aux[OP_MAX_AUX];
        int na = op->aux(&run, (const double *const *)in, aux);
        double bound = aux_value(aux, na, "norm_bound_max");
        snprintf(what, sizeof(what),
                 "circulant_diagonal n=%d: ||A_t||_2 <= norm_bound_max %.6f < 1", n, bound);
        report(what, bound < 1 && rho_max <= bound * (1 + 1e-9) ? 0 : fmax(bound, rho_max), 0);
        for (int i = 0; i < op->n_in; i++) free(in[i]), free(pin[i]);
        free(out), free(saved), free(pout), free(psaved), free(seq_raw), free(seq_bx), free(rho_t);
        free(h), free(A), free(best_A), free(cand);
    }
}

// ---- monomial: the straight-through estimator against its definition (mixers.md 22) --------

// The gradient checks see only the soft form (finite differences of the hard forward are 0 in
// A and the selection logits, where the STE is not). Its definition: the gradient of the
// surrogate L(P_t = onehot_t + softmax(M_t(theta)) - softmax(M_t(theta_0))) at theta_0, which
// has the hard forward's value there. This is an independent dense implementation of it: per
// token the N x N complex matrix diag(D_t) S Q_t (S the shuffle from the (b, r) grid, Q_t the
// surrogate's P_t, block-diagonal) in double complex arithmetic.
typedef struct {
    OpShape s;
    int N, K, nb, r, W, O;
    double *x, *A;                 // the op's input 0 and logit matrices (the steps perturb them)
    const double *x0, *A0;         // theta_0
    const double *bmag, *bph, *w;  // the biases; the loss weights [B, T, O]
    const int *arg0;               // [B T N]: each row's argmax source at theta_0
} MonoDense;

// Token tok's row softmax of M_t over each row's block, as a dense N x N matrix; argmax (when
// not NULL) the first largest entry of each row.
static void mono_dense_softmax(const MonoDense *c, const double *x, const double *A, size_t tok,
                               double *Pm, int *argmax) {
    int N = c->N, K = c->K, r = c->r;
    const double *z = x + tok * c->W;
    double sel[64], zs = 0;
    for (int k = 0; k < K; k++) zs += sel[k] = exp(z[k]);
    for (int n = 0; n < N; n++) {
        int lo = n / r * r;
        double sum = 0, best = -1;
        for (int j = 0; j < N; j++) {
            double v = 0;
            if (j >= lo && j < lo + r)
                for (int k = 0; k < K; k++) v += sel[k] / zs * A[((size_t)k * N + n) * r + j - lo];
            Pm[(size_t)n * N + j] = j >= lo && j < lo + r ? exp(v) : 0;
            sum += Pm[(size_t)n * N + j];
        }
        for (int j = 0; j < N; j++) {
            Pm[(size_t)n * N + j] /= sum;
            if (argmax && Pm[(size_t)n * N + j] > best) best = Pm[(size_t)n * N + j], argmax[n] = j;
        }
    }
}

// The surrogate's loss sum_t <w_t, [Re h_t, Im h_t, u_t]> at the current x and A; out (when not
// NULL) gets the outputs.
static double mono_dense_loss(const MonoDense *c, double *out) {
    int N = c->N, nb = c->nb, r = c->r;
    double *Pc = malloc(sizeof(double) * N * N), *P0 = malloc(sizeof(double) * N * N);
    double complex *h = malloc(sizeof *h * N), *hn = malloc(sizeof *hn * N);
    double loss = 0;
    for (int b = 0; b < c->s.B; b++) {
        for (int m = 0; m < N; m++) h[m] = m == 0;
        for (int t = 0; t < c->s.T; t++) {
            size_t tok = (size_t)b * c->s.T + t;
            const double *z = c->x + tok * c->W, *w = c->w + tok * c->O;
            mono_dense_softmax(c, c->x, c->A, tok, Pc, NULL);
            mono_dense_softmax(c, c->x0, c->A0, tok, P0, NULL);
            for (int i = 0; i < N; i++) {
                // Row i of S Q_t is row l of Q_t, l the grid position (beta, k) that output
                // position (k, beta) of the transposed grid reads.
                int l = (i % nb) * r + i / nb;
                double mag = 1 / (1 + exp(-(z[c->K + i] + c->bmag[i])));
                double complex D =
                    mag * cexp(I * 2 * acos(-1.0) / (1 + exp(-(z[c->K + N + i] + c->bph[i]))));
                double complex v = z[c->K + 2 * N + i] + I * z[c->K + 3 * N + i];
                for (int j = 0; j < N; j++) {
                    double q =
                        (j == c->arg0[tok * N + l]) + Pc[(size_t)l * N + j] - P0[(size_t)l * N + j];
                    v += D * q * h[j];
                }
                hn[i] = v;
            }
            memcpy(h, hn, sizeof *h * N);
            for (int i = 0; i < N; i++) loss += w[i] * creal(h[i]) + w[N + i] * cimag(h[i]);
            for (int j = 0; j < c->s.C; j++) loss += w[2 * N + j] * z[c->K + 4 * N + j];
            if (out) {
                for (int i = 0; i < N; i++)
                    out[tok * c->O + i] = creal(h[i]), out[tok * c->O + N + i] = cimag(h[i]);
                for (int j = 0; j < c->s.C; j++) out[tok * c->O + 2 * N + j] = z[c->K + 4 * N + j];
            }
        }
    }
    free(Pc), free(P0), free(h), free(hn);
    return loss;
}

// Richardson-extrapolated central difference of f at *v (as test_gradcheck's).
static double mono_fd(double *v, double (*f)(void *), void *ctx) {
    double keep = *v, d[2];
    for (int k = 0; k < 2; k++) {
        double hs = k ? 1e-5 : 2e-5;
        *v = keep + hs;
        double lp = f(ctx);
        *v = keep - hs;
        double lm = f(ctx);
        d[k] = (lp - lm) / (2 * hs);
    }
    *v = keep;
    return (4 * d[1] - d[0]) / 3;
}

typedef struct {
    Run *run;
    MonoDense *dense;
    const double *w;
} MonoFd;

static double mono_op_loss(void *p) {  // the op's own (hard) forward
    MonoFd *c = p;
    c->run->op->forward(&c->run->s, (const double *const *)c->run->in, c->run->out, c->run->saved);
    return dot(c->run->out[0], c->w, (int)c->run->out_n[0]);
}
static double mono_surrogate_loss(void *p) {
    return mono_dense_loss(((MonoFd *)p)->dense, NULL);
}

// max over entries of |analytic - numeric| / (1e-8 + 1e-6 max(|analytic|, |numeric|)).
static double mono_worst(double a, double n, double worst) {
    return fmax(worst, fabs(a - n) / (1e-8 + 1e-6 * fmax(fabs(a), fabs(n))));
}

static void check_monomial_ste_case(int B, int T, int C, const char *opts) {
    OpShape s = shape("monomial", B, T, C, 1, opts);
    MonoDims d = mono_dims(&s);
    Run r = run_new("monomial", s, 900);
    // Random maps (A ~ N(0, 1), not the near-identity initialisation), biases ~ N(0, 0.5^2).
    for (size_t j = 0; j < r.in_n[CORE_IN_PARAMS]; j++)
        r.in[CORE_IN_PARAMS][j] = rng_normal(rng_key(901, 0, 0, 0), j);
    for (int i = 1; i <= 2; i++)
        for (int m = 0; m < d.N; m++)
            r.in[CORE_IN_PARAMS + i][m] = 0.5 * rng_normal(rng_key(901, (uint64_t)i, 0, 0), m);
    double *w = malloc(sizeof(double) * r.out_n[0]);
    for (size_t j = 0; j < r.out_n[0]; j++) w[j] = rng_normal(rng_key(902, 0, 0, 0), j);
    double *x0 = malloc(sizeof(double) * r.in_n[0]), *A0 = malloc(sizeof(double) * r.in_n[2]);
    memcpy(x0, r.in[0], sizeof(double) * r.in_n[0]);
    memcpy(A0, r.in[2], sizeof(double) * r.in_n[2]);
    size_t NT = (size_t)B * T;
    int *arg0 = malloc(sizeof(int) * NT * d.N), *arg = malloc(sizeof(int) * d.N);
    MonoDense dense = {.s = s,
                       .N = d.N,
                       .K = d.K,
                       .nb = d.nb,
                       .r = d.r,
                       .W = d.W,
                       .O = d.O,
                       .x = r.in[0],
                       .A = r.in[2],
                       .x0 = x0,
                       .A0 = A0,
                       .bmag = r.in[CORE_IN_PARAMS + 1],
                       .bph = r.in[CORE_IN_PARAMS + 2],
                       .w = w,
                       .arg0 = arg0};
    double *Pm = malloc(sizeof(double) * d.N * d.N);
    int nonid = 0;  // rows whose source is not the row itself: the maps are not trivial
    for (size_t tok = 0; tok < NT; tok++) {
        mono_dense_softmax(&dense, x0, A0, tok, Pm, arg0 + tok * d.N);
        for (int n = 0; n < d.N; n++) nonid += arg0[tok * d.N + n] != n;
    }
    MonoFd fc = {&r, &dense, w};
    mono_op_loss(&fc);
    double *din[OP_MAX_IO];
    for (int i = 0; i < r.op->n_in; i++) din[i] = calloc(r.in_n[i] ? r.in_n[i] : 1, sizeof(double));
    r.op->backward(&r.s, (const double *const *)r.in, (const double *const *)r.out, r.saved,
                   (const double *const *)&w, din);
    char what[200];
    // The dense implementation at theta_0 is the hard forward.
    double *dense_out = malloc(sizeof(double) * r.out_n[0]);
    mono_dense_loss(&dense, dense_out);
    snprintf(what, sizeof(what), "monomial %s T=%d: hard forward == dense (%d/%zu rows moved)",
             opts, T, nonid, NT * d.N);
    report(what, max_rel_err(r.out[0], dense_out, r.out_n[0]), 1e-12);
    report("monomial: the maps are not all the identity", nonid > 0 ? 0 : 1, 0);
    // (1) What does not flow through M_t: finite differences of the hard forward (the steps do
    // not touch M_t's inputs; the maps are recomputed and must not change).
    double worst = 0;
    int flips = 0;
    for (size_t j = 0; j < r.in_n[0]; j++) {
        if ((int)(j % d.W) < d.K) continue;  // selection logits: part (2)
        worst = mono_worst(din[0][j], mono_fd(&r.in[0][j], mono_op_loss, &fc), worst);
        r.in[0][j] += 1e-5;
        for (size_t tok = 0; tok < NT; tok++) {
            mono_dense_softmax(&dense, r.in[0], r.in[2], tok, Pm, arg);
            flips += memcmp(arg, arg0 + tok * d.N, sizeof(int) * d.N) != 0;
        }
        r.in[0][j] = x0[j];
    }
    for (int i = 1; i <= 2; i++)
        for (int m = 0; m < d.N; m++)
            worst = mono_worst(din[CORE_IN_PARAMS + i][m],
                               mono_fd(&r.in[CORE_IN_PARAMS + i][m], mono_op_loss, &fc), worst);
    snprintf(what, sizeof(what), "monomial %s: mag, phase, Bx, u, biases == FD of hard", opts);
    report(what, worst, 1);
    report("monomial: no argmax flips under those steps", flips, 0);
    // (2) A and the selection logits: the surrogate's derivative at theta_0.
    double worst_sel = 0, worst_A = 0, dA_max = 0;
    for (size_t j = 0; j < r.in_n[0]; j++)
        if ((int)(j % d.W) < d.K)
            worst_sel =
                mono_worst(din[0][j], mono_fd(&r.in[0][j], mono_surrogate_loss, &fc), worst_sel);
    for (size_t j = 0; j < r.in_n[2]; j++) {
        worst_A = mono_worst(din[2][j], mono_fd(&r.in[2][j], mono_surrogate_loss, &fc), worst_A);
        dA_max = fmax(dA_max, fabs(din[2][j]));
    }
    snprintf(what, sizeof(what), "monomial %s: d selection logits == surrogate's", opts);
    report(what, worst_sel, 1);
    snprintf(what, sizeof(what), "monomial %s: d A_k == surrogate's (max |dA| %.3g)", opts, dA_max);
    report(what, worst_A, 1);
    report("monomial: the STE gradient of A is not zero", dA_max > 1e-3 ? 0 : 1, 0);
    for (int i = 0; i < r.op->n_in; i++) free(din[i]);
    free(w), free(x0), free(A0), free(arg0), free(arg), free(Pm), free(dense_out);
    run_free(&r);
}

static void check_monomial_ste(void) {
    check_monomial_ste_case(2, 20, 3, "monomial_states=5 monomial_matrices=3");
    check_monomial_ste_case(2, 24, 2, "monomial_states=6 monomial_matrices=2 monomial_blocks=2");
}

// ---- monomial: bounded for any input (mixers.md 22) --------------------------------------
// One nonzero per row with |D_t| < 1 makes each step a contraction in the max-norm, whatever
// the map: max_m |h_t[m]| <= max|D_t| max_j |h_{t-1}[j]| + max_m |(Bx)_t[m]|, even where rows
// share a source (then the 2-norm can grow: counted, to show the max-norm is the bound that
// holds). Inputs of magnitude ~30 and random logit matrices, 400 steps, hard maps, full and
// blocked; with Bx = 0 the state from e_0 never grows.
static void check_monomial_stability(void) {
    static const char *variants[] = {"monomial_states=8", "monomial_states=8 monomial_blocks=2"};
    for (int v = 0; v < 2; v++)
        for (int zero_b = 0; zero_b < 2; zero_b++) {
            int T = 400;
            OpShape s = shape("monomial", 1, T, 3, 1, variants[v]);
            MonoDims d = mono_dims(&s);
            Run r = run_new("monomial", s, 950 + v);
            for (size_t j = 0; j < r.in_n[0]; j++) {
                int col = (int)(j % (size_t)d.W);
                int bx = col >= d.o_bre && col < d.o_u;
                r.in[0][j] = bx && zero_b ? 0 : 30 * rng_normal(rng_key(951, v, 0, 0), j);
            }
            for (size_t j = 0; j < r.in_n[CORE_IN_PARAMS]; j++)
                r.in[CORE_IN_PARAMS][j] = 3 * rng_normal(rng_key(952, v, 0, 0), j);
            r.op->forward(&r.s, (const double *const *)r.in, r.out, r.saved);
            double prev_max = 1, prev_2 = 1, worst = 0, peak = 0;  // h_{-1} = e_0
            int grew2 = 0, nonfinite = 0;
            for (int t = 0; t < T; t++) {
                const double *x = r.in[0] + (size_t)t * d.W, *o = r.out[0] + (size_t)t * d.O;
                double dmax = 0, bmax = 0, hmax = 0, h2 = 0, b2 = 0;
                for (int m = 0; m < d.N; m++) {
                    double mag = 1 / (1 + exp(-(x[d.o_mag + m] + r.in[CORE_IN_PARAMS + 1][m])));
                    double bre = x[d.o_bre + m], bim = x[d.o_bim + m];
                    double hm = hypot(o[m], o[d.N + m]);
                    dmax = fmax(dmax, mag), bmax = fmax(bmax, hypot(bre, bim));
                    hmax = fmax(hmax, hm), h2 += hm * hm, b2 += bre * bre + bim * bim;
                    nonfinite += !isfinite(hm);
                }
                double bound = dmax * prev_max + bmax;
                worst = fmax(worst, (hmax - bound) / fmax(bound, 1e-300));
                grew2 += sqrt(h2) > prev_2 + sqrt(b2) + 1e-12;
                peak = fmax(peak, hmax), prev_max = hmax, prev_2 = sqrt(h2);
            }
            char what[160];
            snprintf(what, sizeof(what),
                     "monomial %s%s, inputs ~30, 400 steps: max|h_t| <= max|D| max|h_t-1| + "
                     "max|Bx| (peak %.3g; 2-norm grew past its bound at %d steps)",
                     variants[v], zero_b ? ", Bx = 0" : "", peak, grew2);
            report(what, nonfinite ? INFINITY : fmax(worst, 0), 1e-12);
            if (zero_b) {
                snprintf(what, sizeof(what), "monomial %s, Bx = 0: max|h_t| <= |h_-1| = 1",
                         variants[v]);
                report(what, fmax(peak - 1, 0), 1e-12);
            }
            run_free(&r);
        }
}

int main(void) {
    check_references();
    check_loglinear();
    check_hss();
    check_circulant();
    check_favor();
    check_conv_identity();
    check_mamba_init();
    check_aux();
    check_oscillator_stability();
    check_oscgate_is_linoss();
    check_dplr();
    check_circulant_diagonal_stability();
    check_monomial_ste();
    check_monomial_stability();
    printf("%s: %d failure(s)\n", failures ? "FAILED" : "PASSED", failures);
    return failures != 0;
}
