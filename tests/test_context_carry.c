// Context parallelism at the level of one op: every row of the op table that carries its state
// (carry_size) is run on its test shapes (double precision) whole, and as a chain of slices
// (2 and 3 cuts, uneven) in which each slice starts from the state the previous one left,
// exactly as the ranks of a context group do (src/mixer_layer.c):
//   - the slices' outputs equal the whole call's;
//   - backward in reverse, each slice handed the gradient of the state it leaves, gives the
//     whole call's input and parameter gradients;
//   - carry_through is the linear part of the slice's state map: S_out(S) - S_out(0) = A S,
//     and its transpose is the adjoint, <A X, Y> = <X, A^T Y>;
//   - the entering state's gradient equals a finite difference of the loss in that state.
// A row whose slices ignored the carried state would fail the first check at every shape.
// Rows with the prefix form instead (attention: prefix_width) run the same chains, each slice
// given the packed rows of every slice before it, and its prefix gradient handed back to them.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/ops.h"
#include "../src/rng.h"
#include "op_inputs.h"

static int failures = 0;

static void report(const char *what, double err, double tol) {
    int ok = err <= tol;
    if (!ok) failures++;
    printf("%-4s %-72s max err %.3g (tol %.3g)%s\n", ok ? "ok" : "FAIL", what, err, tol,
           ok ? "" : " <--");
}

static double *alloc0(size_t n) {
    return calloc(n ? n : 1, sizeof(double));
}

// Rows [t0, t0 + len) of every sequence of a per-token buffer [B, T, w] into dst [B, len, w],
// or back (to_whole: dst is the whole buffer, src the slice; added).
static void slice_rows(double *dst, const double *src, int B, int T, int t0, int len, size_t w,
                       int to_whole) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < len; t++) {
            size_t whole = ((size_t)b * T + t0 + t) * w, part = ((size_t)b * len + t) * w;
            for (size_t j = 0; j < w; j++) {
                if (to_whole)
                    dst[whole + j] += src[part + j];
                else
                    dst[part + j] = src[whole + j];
            }
        }
}

// A whole call (op at shape s) and the widths per token of its per-token inputs (q|k|v, the
// per-token projection) and of its output (C, or the core's own width).
typedef struct {
    const OpDef_f64 *op;
    const OpShape *s;
    size_t tok_w[2], out_w;
} Call;

static Call call_of(const OpDef_f64 *op, const OpShape *s, const size_t *in_n) {
    size_t N = (size_t)s->B * s->T, in[OP_MAX_IO] = {0}, out[OP_MAX_IO] = {0}, sv;
    op->sizes(s, in, out, &sv);
    return (Call){op, s, {in_n[0] / N, in_n[1] / N}, out[0] / N};
}

// One slice [t0, t1) of the call: its shape (from position pos0 + t0), its per-token inputs cut
// from the whole call's (the parameters shared), its output and saved activations; for its
// backward, its output gradient and input gradients (per-token ones in slice layout, the
// parameters' straight into the whole call's, where they accumulate over the slices).
typedef struct {
    OpShape s;
    int t0;
    size_t n[OP_MAX_IO];
    double *in[OP_MAX_IO], *out, *saved, *dout, *din[OP_MAX_IO];
} Slice;

static int per_token(const Call *c, int i) {
    return i <= CORE_IN_XPROJ && i < c->op->n_in;
}

static Slice slice_open(const Call *c, double *const *in, int t0, int t1) {
    Slice sl = {.s = *c->s, .t0 = t0};
    sl.s.T = t1 - t0, sl.s.pos0 = c->s->pos0 + t0;
    size_t on[OP_MAX_IO] = {0}, sv = 0;
    c->op->sizes(&sl.s, sl.n, on, &sv);
    for (int i = 0; i < c->op->n_in; i++) {
        sl.in[i] = per_token(c, i) ? alloc0(sl.n[i]) : in[i];
        if (per_token(c, i) && sl.n[i])
            slice_rows(sl.in[i], in[i], c->s->B, c->s->T, t0, sl.s.T, c->tok_w[i], 0);
    }
    sl.out = alloc0(on[0]), sl.saved = alloc0(sv), sl.dout = alloc0(on[0]);
    return sl;
}

// The slice's output into the whole call's out (after its forward).
static void slice_out_add(const Call *c, const Slice *sl, double *out) {
    slice_rows(out, sl->out, c->s->B, c->s->T, sl->t0, sl->s.T, c->out_w, 1);
}

// Before its backward: its part of the whole call's dout, and its input gradients.
static void slice_grads_open(const Call *c, Slice *sl, const double *dout, double *const *din) {
    slice_rows(sl->dout, dout, c->s->B, c->s->T, sl->t0, sl->s.T, c->out_w, 0);
    for (int i = 0; i < c->op->n_in; i++) sl->din[i] = per_token(c, i) ? alloc0(sl->n[i]) : din[i];
}

// After it: the per-token input gradients added into the whole call's din.
static void slice_grads_close(const Call *c, Slice *sl, double *const *din) {
    for (int i = 0; per_token(c, i); i++) {
        if (sl->n[i])
            slice_rows(din[i], sl->din[i], c->s->B, c->s->T, sl->t0, sl->s.T, c->tok_w[i], 1);
        free(sl->din[i]);
    }
}

static void slice_free(const Call *c, Slice *sl) {
    for (int i = 0; per_token(c, i); i++) free(sl->in[i]);
    free(sl->out), free(sl->saved), free(sl->dout);
}

#define CIN(x) ((const double *const *)(x))

// The chain over the cuts; returns through out/din (added) the slices' outputs and gradients
// in whole-call layout, and the state gradient entering slice 0 through dstate0.
static void run_chain(const OpDef_f64 *op, const OpShape *s, double *const *in, const size_t *in_n,
                      const double *dout, int n_cuts, const int *cut, double *out,
                      double *const *din, double *dstate0) {
    Call c = call_of(op, s, in_n);
    Slice sl[8];
    double *state[9] = {NULL};
    for (int k = 0; k <= n_cuts; k++) {
        sl[k] = slice_open(&c, in, k ? cut[k - 1] : 0, k < n_cuts ? cut[k] : s->T);
        state[k + 1] = alloc0(op->carry_size(&sl[k].s));
        op->forward_carry(&sl[k].s, CIN(sl[k].in), &sl[k].out, sl[k].saved, state[k], state[k + 1]);
        slice_out_add(&c, &sl[k], out);
    }
    // Backward in reverse: slice k gets the gradient of the state it leaves from slice k + 1.
    double *dleave = NULL;
    for (int k = n_cuts; k >= 0; k--) {
        slice_grads_open(&c, &sl[k], dout, din);
        double *denter = alloc0(op->carry_size(&sl[k].s));
        op->backward_carry(&sl[k].s, CIN(sl[k].in), CIN(&sl[k].out), sl[k].saved, CIN(&sl[k].dout),
                           sl[k].din, state[k], dleave, denter);
        slice_grads_close(&c, &sl[k], din);
        free(dleave);
        dleave = denter;
    }
    memcpy(dstate0, dleave, sizeof(double) * op->carry_size(&sl[0].s));
    free(dleave);
    for (int k = 0; k <= n_cuts; k++) slice_free(&c, &sl[k]), free(state[k + 1]);
}

// The prefix chain: slice k runs after the packed rows [B, t0, w] of slices 0..k-1 (packed by
// each of them, as the ranks send them); backward in reverse, slice k's prefix gradient is
// summed into the gradient of those rows, and its own rows' part (from every later slice) is
// unpacked into its input gradient.
static void run_prefix_chain(const OpDef_f64 *op, const OpShape *s, double *const *in,
                             const size_t *in_n, const double *dout, int n_cuts, const int *cut,
                             double *out, double *const *din) {
    Call c = call_of(op, s, in_n);
    int B = s->B, T = s->T;
    size_t w = op->prefix_width(s);
    double *rows = alloc0((size_t)B * T * w), *drows = alloc0((size_t)B * T * w);
    Slice sl[8];
    double *prefix[8];
    for (int k = 0; k <= n_cuts; k++) {
        sl[k] = slice_open(&c, in, k ? cut[k - 1] : 0, k < n_cuts ? cut[k] : T);
        int t0 = sl[k].t0, len = sl[k].s.T;
        prefix[k] = alloc0((size_t)B * t0 * w);
        if (t0) slice_rows(prefix[k], rows, B, T, 0, t0, w, 0);  // the earlier slices' rows
        op->forward_prefix(&sl[k].s, CIN(sl[k].in), &sl[k].out, sl[k].saved, t0 ? prefix[k] : NULL);
        slice_out_add(&c, &sl[k], out);
        double *own = alloc0((size_t)B * len * w);
        op->prefix_pack(&sl[k].s, CIN(sl[k].in), own);
        slice_rows(rows, own, B, T, t0, len, w, 1);
        free(own);
    }
    for (int k = n_cuts; k >= 0; k--) {
        int t0 = sl[k].t0, len = sl[k].s.T;
        slice_grads_open(&c, &sl[k], dout, din);
        double *dprefix = alloc0((size_t)B * t0 * w), *down = alloc0((size_t)B * len * w);
        op->backward_prefix(&sl[k].s, CIN(sl[k].in), CIN(&sl[k].out), sl[k].saved, CIN(&sl[k].dout),
                            sl[k].din, t0 ? prefix[k] : NULL, dprefix);
        slice_rows(down, drows, B, T, t0, len, w, 0);  // what the later slices sent back
        op->prefix_unpack_add(&sl[k].s, down, sl[k].din);
        if (t0) slice_rows(drows, dprefix, B, T, 0, t0, w, 1);
        slice_grads_close(&c, &sl[k], din);
        free(dprefix), free(down);
    }
    for (int k = 0; k <= n_cuts; k++) slice_free(&c, &sl[k]), free(prefix[k]);
    free(rows), free(drows);
}

static double dot(const double *a, const double *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static void check_shape(const OpDef_f64 *op, OpShape s, const char *label, uint64_t seed) {
    size_t in_n[OP_MAX_IO] = {0}, out_n[OP_MAX_IO] = {0}, sv = 0;
    op->sizes(&s, in_n, out_n, &sv);
    double *in[OP_MAX_IO] = {0};
    for (int i = 0; i < op->n_in; i++) in[i] = alloc0(in_n[i]);
    op_draw_inputs(op, &s, in, in_n, seed, 91);
    double *out = alloc0(out_n[0]), *saved = alloc0(sv), *dout = alloc0(out_n[0]);
    for (size_t j = 0; j < out_n[0]; j++) dout[j] = rng_normal(rng_key(seed, 92, 0, 0), j);
    double *din[OP_MAX_IO] = {0}, *din_c[OP_MAX_IO] = {0};
    for (int i = 0; i < op->n_in; i++) din[i] = alloc0(in_n[i]), din_c[i] = alloc0(in_n[i]);
    op->forward(&s, (const double *const *)in, &out, saved);
    const double *outs[1] = {out}, *douts[1] = {dout};
    op->backward(&s, (const double *const *)in, outs, saved, douts, din);
    int T = s.T;
    int cuts[2][2] = {{T / 2 > 0 ? T / 2 : 1, 0}, {T / 3 > 0 ? T / 3 : 1, 2 * T / 3 + 1}};
    int n_cuts[2] = {1, T >= 4 ? 2 : 1};
    size_t sn = op->carry_size ? op->carry_size(&s) : 0;
    for (int c = 0; c < 2; c++) {
        if (T < 2) break;
        double *out_c = alloc0(out_n[0]), *dstate0 = alloc0(sn);
        for (int i = 0; i < op->n_in; i++) memset(din_c[i], 0, sizeof(double) * in_n[i]);
        if (op->carry_size)
            run_chain(op, &s, in, in_n, dout, n_cuts[c], cuts[c], out_c, din_c, dstate0);
        else
            run_prefix_chain(op, &s, in, in_n, dout, n_cuts[c], cuts[c], out_c, din_c);
        char what[400];
        snprintf(what, sizeof(what), "%s %s: %d slice(s), outputs", op->name, label, n_cuts[c] + 1);
        report(what, max_rel_err(out_c, out, out_n[0]), 1e-10);
        double worst = 0;
        for (int i = 0; i < op->n_in; i++)
            if (in_n[i]) {
                double e = max_rel_err(din_c[i], din[i], in_n[i]);
                if (!(e <= worst)) worst = e;  // a NaN (non-finite values) stays
            }
        snprintf(what, sizeof(what), "%s %s: %d slice(s), every input's gradient", op->name, label,
                 n_cuts[c] + 1);
        report(what, worst, 1e-9);
        free(out_c), free(dstate0);
    }
    if (!op->carry_size) {  // the prefix form: the chains above are its whole contract
        for (int i = 0; i < op->n_in; i++) free(in[i]), free(din[i]), free(din_c[i]);
        free(out), free(saved), free(dout);
        return;
    }
    // The entering state: S_out(S) - S_out(0) = A S; <A X, Y> = <X, A^T Y>; and dL/dS_in by
    // central differences of L = <dout, out(S_in)> along a random direction.
    // S: a state these inputs could leave (half the call's own final state: normalisers stay
    // positive), slightly perturbed.
    double *S = alloc0(sn), *Y = alloc0(sn), *out0 = alloc0(sn), *outS = alloc0(sn);
    double *tmp = alloc0(out_n[0]);
    op->forward_carry(&s, (const double *const *)in, &tmp, saved, NULL, out0);
    for (size_t j = 0; j < sn; j++)
        S[j] = 0.5 * out0[j] + 0.05 * rng_normal(rng_key(seed, 93, 0, 0), j),
        Y[j] = rng_normal(rng_key(seed, 93, 1, 0), j);
    op->forward_carry(&s, (const double *const *)in, &tmp, saved, S, outS);
    double *AS = alloc0(sn), *AtY = alloc0(sn);
    memcpy(AS, S, sizeof(double) * sn), memcpy(AtY, Y, sizeof(double) * sn);
    if (op->carry_through) {
        op->carry_through(&s, (const double *const *)in, AS, 0);
        op->carry_through(&s, (const double *const *)in, AtY, 1);
    }
    for (size_t j = 0; j < sn; j++) outS[j] -= out0[j];
    char what[400];
    snprintf(what, sizeof(what), "%s %s: carry_through = S_out(S) - S_out(0)", op->name, label);
    report(what, max_rel_err(AS, outS, sn), 1e-10);
    double lhs = dot(AS, Y, sn), rhs = dot(S, AtY, sn);
    snprintf(what, sizeof(what), "%s %s: carry_through transpose is the adjoint", op->name, label);
    report(what, fabs(lhs - rhs) / fmax(1.0, fabs(lhs)), 1e-10);
    double *dS = alloc0(sn);
    for (int i = 0; i < op->n_in; i++) memset(din_c[i], 0, sizeof(double) * in_n[i]);
    op->forward_carry(&s, (const double *const *)in, &out, saved, S, NULL);
    op->backward_carry(&s, (const double *const *)in, outs, saved, douts, din_c, S, NULL, dS);
    double h = 1e-5, *Sp = alloc0(sn);
    for (size_t j = 0; j < sn; j++) Sp[j] = S[j] + h * Y[j];
    op->forward_carry(&s, (const double *const *)in, &tmp, saved, Sp, NULL);
    double lp = dot(dout, tmp, out_n[0]);
    for (size_t j = 0; j < sn; j++) Sp[j] = S[j] - h * Y[j];
    op->forward_carry(&s, (const double *const *)in, &tmp, saved, Sp, NULL);
    double lm = dot(dout, tmp, out_n[0]), fd = (lp - lm) / (2 * h), an = dot(dS, Y, sn);
    snprintf(what, sizeof(what), "%s %s: entering state's gradient vs finite differences", op->name,
             label);
    report(what, fabs(fd - an) / fmax(1.0, fabs(an)), 1e-6);
    free(S), free(Y), free(out0), free(outS), free(AS), free(AtY), free(dS), free(Sp), free(tmp);
    for (int i = 0; i < op->n_in; i++) free(in[i]), free(din[i]), free(din_c[i]);
    free(out), free(saved), free(dout);
}

int main(void) {
    int rows = 0, prefixed = 0;
    for (int r = 0; r < N_OPS_f64; r++) {
        const OpDef_f64 *op = OPS_f64[r];
        if (!op->carry_size && !op->prefix_width) continue;
        if (op->carry_size ? !op->forward_carry || !op->backward_carry
                           : !op->prefix_pack || !op->prefix_unpack_add || !op->forward_prefix ||
                                 !op->backward_prefix) {
            printf("FAIL %s: an incomplete context-parallel form in its row\n", op->name);
            failures++;
            continue;
        }
        rows++;
        prefixed += !op->carry_size;
        for (int t = 0; t < op->n_tests; t++) {
            OpShape s = op->tests[t].s;
            char err[256];
            if (op_options_apply(op->options, op->fixed, op->tests[t].opts, s.T, &s, err,
                                 sizeof(err))) {
                printf("FAIL %s shape %d: %s\n", op->name, t, err);
                failures++;
                continue;
            }
            // A bidirectional shape (mixer.causal false) reads the whole sequence: the model
            // refuses it under parallel.context, so there is no chain to check.
            if (!op_option_int(op->options, "causal", &s, 1)) continue;
            char label[160];
            snprintf(label, sizeof(label), "B%d T%d C%d H%d %s", s.B, s.T, s.C, s.H,
                     op->tests[t].opts ? op->tests[t].opts : "");
            check_shape(op, s, label, 1000 + (uint64_t)(31 * r + t));
        }
    }
    printf("%d row(s) carry their state, %d run after a prefix\n", rows - prefixed, prefixed);
    if (!rows || !prefixed) failures++;
    if (failures) printf("%d FAILURE(S)\n", failures);
    return failures ? 1 : 0;
}
