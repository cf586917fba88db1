// Monomial transitions (mixers.md 22; E016, relative of PD-SSM): a complex state of N entries
// whose transition is one nonzero per row, a (not necessarily bijective) map pi_t times a
// complex diagonal:
//   s_t = softmax(z_t)                     z_t: K selection logits
//   M_t = sum_k s_t,k A_k                  A_k: learned logits, one row of r per state row
//   P_t = onehot(row argmax of M_t)        straight-through gradient of row-softmax(M_t)
//   D_t = sigmoid(mag_t) exp(i 2 pi sigmoid(phase_t))                     |D_t| < 1
//   h_t[m] = D_t[m] (P_t h_{t-1})[shuffle(m)] + (Bx)_t[m],     h_{-1} = e_0
// z, mag, phase (each plus a learned bias for mag and phase), Re Bx and Im Bx are columns of
// the layer's input projection (the experiment's small MLPs are linear maps here), and the
// layer's W_o reads [Re h, Im h] (the readout) and the input u passed through (the skip D);
// kernels/ssm_monomial.h has the widths. Row n of P_t picks a source in its own block of r =
// N / b indices (b = mixer.monomial_blocks, 1: the full monomial), and the fixed shuffle (the
// transpose of the (b, r) grid, the identity for b = 1) follows: the group-and-shuffle variant.
// mixer.monomial_select = soft runs P_t = row-softmax(M_t) in the forward (the relaxation whose
// Jacobian the straight-through estimator borrows): an exact gradient, what the gradient
// checks run, and an option in its own right.
// Training form: the gates (M_t, its softmax and argmax, D_t) depend on token t alone and are
// computed for every token in parallel first; then one sequential O(N) (soft: O(N r)) pass
// per batch row. The state is what the op outputs, so backward reads h_{t-1} from `out` and
// nothing is saved. Backward: the reverse pass gives the adjoint G_t = dL/dh_t (complex,
// dL/dRe + i dL/dIm) and conj(D_t) G_t, the adjoint of P_t h_{t-1}; then, per token in
// parallel, dP_t[n][j] = Re(conj(conj(D) G)[m] h_{t-1}[j]) for every source j of the row (the
// STE's O(N r)), the row-softmax Jacobian to dM_t, dA_k = sum_t s_t,k dM_t and the selection
// logits through <A_k, dM_t> and the softmax over K. Both select modes share this chain.
#include "../ssm_monomial.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ops.h"
#include "../real.h"
#include "../rng.h"

#define MONO_TWO_PI 6.283185307179586
// mag_bias at initialisation: |D| = sigmoid(3) = 0.953 with the projection's columns near 0, so
// the state starts with a memory of about 20 steps.
#define MONO_MAG_BIAS 3.0
// A_k = I + MONO_A_NOISE N(0, 1): the identity dominates every row (by 1 against noise a
// few 0.1 at most), so the initial map is the identity (the shuffle for b > 1) for any
// selection, and the K matrices differ so their selection logits get different gradients.
#define MONO_A_NOISE 0.2

static real mono_sigmoid(real x) {
    return 1 / (1 + exp(-x));
}

// One token's gates from its input row x [W]: the selection softmax s [K] (when not NULL); per
// row n of P, its softmax over the r sources of its block (pt [N r], when not NULL) and its
// first argmax as a state index (src [N], when not NULL); per state m, dg[4 m ..] = (cos phi,
// sin phi, |D| = sigmoid(mag), sigmoid(phase)) with phi = 2 pi sigmoid(phase).
static void mono_gates(const MonoDims *d, const real *x, const real *A, const real *bmag,
                       const real *bph, real *s_out, real *pt, int *src, real *dg) {
    int K = d->K, N = d->N, r = d->r;
    real s[MONO_MAX_MATRICES], row[MONO_MAX_STATES], mx = x[d->o_sel], sum = 0;
    for (int k = 1; k < K; k++) mx = x[d->o_sel + k] > mx ? x[d->o_sel + k] : mx;
    for (int k = 0; k < K; k++) sum += s[k] = exp(x[d->o_sel + k] - mx);
    for (int k = 0; k < K; k++) s[k] /= sum;
    if (s_out) memcpy(s_out, s, sizeof(real) * K);
    for (int n = 0; n < N; n++) {
        for (int j = 0; j < r; j++) row[j] = 0;
        for (int k = 0; k < K; k++) {  // k in order: the CUDA twin sums the same way
            const real *a = A + ((size_t)k * N + n) * r;
            for (int j = 0; j < r; j++) row[j] += s[k] * a[j];
        }
        // The argmax of softmax(M) is the argmax of M: taken on M, so rounding in exp cannot
        // make ties; the first maximum wins.
        int best = 0;
        for (int j = 1; j < r; j++) best = row[j] > row[best] ? j : best;
        if (src) src[n] = n / r * r + best;
        if (pt) {
            real *p = pt + (size_t)n * r, z = 0;
            for (int j = 0; j < r; j++) z += p[j] = exp(row[j] - row[best]);
            for (int j = 0; j < r; j++) p[j] /= z;
        }
    }
    for (int m = 0; m < N; m++) {
        real a = mono_sigmoid(x[d->o_mag + m] + bmag[m]), q = mono_sigmoid(x[d->o_ph + m] + bph[m]);
        real phi = (real)MONO_TWO_PI * q;
        dg[4 * m] = cos(phi), dg[4 * m + 1] = sin(phi), dg[4 * m + 2] = a, dg[4 * m + 3] = q;
    }
}

// (P_t h_{t-1})[shuffle(m)]: the source of row n = shuffle(m) (hard), or the row's softmax over
// its block (soft). h = (hre, him) [N].
static void mono_gather(const MonoDims *d, const real *hre, const real *him, const real *pt,
                        const int *src, int m, real *gr, real *gi) {
    int n = mono_shuffle(m, d->nb, d->r);
    if (d->select == MONO_STE) {
        *gr = hre[src[n]], *gi = him[src[n]];
        return;
    }
    const real *p = pt + (size_t)n * d->r;
    int base = n / d->r * d->r;
    real sr = 0, si = 0;
    for (int j = 0; j < d->r; j++) sr += p[j] * hre[base + j], si += p[j] * him[base + j];
    *gr = sr, *gi = si;
}

typedef struct {
    MonoDims d;
    const real *x, *A, *bmag, *bph;  // input 0 [B, T, W], A [K, N, r], biases [N]
    real *e0;                        // h_{-1} = e_0 as (Re [N], Im [N])
} MonoCtx;

static MonoCtx mono_ctx(const OpShape *s, const real *const *in) {
    MonoCtx c = {.d = mono_dims(s),
                 .x = in[CORE_IN_QKV],
                 .A = in[CORE_IN_PARAMS],
                 .bmag = in[CORE_IN_PARAMS + 1],
                 .bph = in[CORE_IN_PARAMS + 2]};
    c.e0 = calloc((size_t)2 * c.d.N, sizeof(real));
    c.e0[0] = 1;
    return c;
}

// h_{t-1} of token t of batch row b: the previous output row, or e_0 at t = 0.
static const real *mono_hprev(const MonoCtx *c, const real *out, int b, int t) {
    return t ? out + ((size_t)b * c->d.T + t - 1) * c->d.O : c->e0;
}

static void monomial_forward(const OpShape *s, const real *const *in, real *const *out, real *sv) {
    (void)sv;
    MonoCtx c = mono_ctx(s, in);
    MonoDims d = c.d;
    size_t NT = (size_t)d.B * d.T;
    int soft = d.select == MONO_SOFT;
    real *dg = malloc(sizeof(real) * NT * 4 * d.N + 1);
    real *pt = soft ? malloc(sizeof(real) * NT * d.N * d.r + 1) : NULL;
    int *src = soft ? NULL : malloc(sizeof(int) * NT * d.N + 1);
#pragma omp parallel for schedule(static)
    for (size_t tok = 0; tok < NT; tok++)
        mono_gates(&d, c.x + tok * d.W, c.A, c.bmag, c.bph, NULL,
                   soft ? pt + tok * d.N * d.r : NULL, soft ? NULL : src + tok * d.N,
                   dg + tok * 4 * d.N);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < d.B; b++)
        for (int t = 0; t < d.T; t++) {
            size_t tok = (size_t)b * d.T + t;
            const real *hp = mono_hprev(&c, out[0], b, t), *x = c.x + tok * d.W;
            const real *g4 = dg + tok * 4 * d.N;
            real *o = out[0] + tok * d.O;
            for (int m = 0; m < d.N; m++) {
                real gr, gi, a = g4[4 * m + 2];
                mono_gather(&d, hp, hp + d.N, soft ? pt + tok * d.N * d.r : NULL,
                            soft ? NULL : src + tok * d.N, m, &gr, &gi);
                real Dr = a * g4[4 * m], Di = a * g4[4 * m + 1];
                o[m] = Dr * gr - Di * gi + x[d.o_bre + m];
                o[d.N + m] = Dr * gi + Di * gr + x[d.o_bim + m];
            }
            memcpy(o + 2 * d.N, x + d.o_u, sizeof(real) * d.C);  // u through to W_o's skip D
        }
    free(dg), free(pt), free(src), free(c.e0);
}

static void monomial_backward(const OpShape *s, const real *const *in, const real *const *out,
                              const real *sv, const real *const *dout, real *const *din) {
    (void)sv;
    MonoCtx c = mono_ctx(s, in);
    MonoDims d = c.d;
    int N = d.N, r = d.r, K = d.K, soft = d.select == MONO_SOFT;
    size_t NT = (size_t)d.B * d.T, Nr = (size_t)N * r;
    const real *h = out[0], *dh = dout[0];
    real *dx = din[CORE_IN_QKV];
    real *sk = malloc(sizeof(real) * NT * K + 1), *dg = malloc(sizeof(real) * NT * 4 * N + 1);
    real *pt = malloc(sizeof(real) * NT * Nr + 1);      // each row's softmax, then dM in place
    real *adj = malloc(sizeof(real) * NT * 2 * N + 1);  // conj(D_t) G_t: (Re [N], Im [N])
    real *part = calloc((size_t)d.B * 2 * N + 1, sizeof(real));  // d mag_bias, d phase_bias
    int *src = malloc(sizeof(int) * NT * N + 1);
#pragma omp parallel for schedule(static)
    for (size_t tok = 0; tok < NT; tok++)
        mono_gates(&d, c.x + tok * d.W, c.A, c.bmag, c.bph, sk + tok * K, pt + tok * Nr,
                   src + tok * N, dg + tok * 4 * N);
        // The reverse pass per batch row: G_t = dout_t + P_{t+1}^T (conj(D_{t+1}) G_{t+1}).
#pragma omp parallel for schedule(static)
    for (int b = 0; b < d.B; b++) {
        real *carry = calloc((size_t)2 * N, sizeof(real)), *pb = part + (size_t)b * 2 * N;
        for (int t = d.T - 1; t >= 0; t--) {
            size_t tok = (size_t)b * d.T + t;
            const real *hp = mono_hprev(&c, h, b, t), *g4 = dg + tok * 4 * N;
            const real *ptt = pt + tok * Nr, *g = dh + tok * d.O;
            const int *st = src + tok * N;
            real *dxt = dx + tok * d.W, *ad = adj + tok * 2 * N;
            for (int j = 0; j < d.C; j++) dxt[d.o_u + j] += g[2 * N + j];  // the skip's u
            for (int m = 0; m < N; m++) {
                real Gr = g[m] + carry[m], Gi = g[N + m] + carry[N + m], gr, gi;
                dxt[d.o_bre + m] += Gr, dxt[d.o_bim + m] += Gi;
                mono_gather(&d, hp, hp + N, ptt, st, m, &gr, &gi);
                real cs = g4[4 * m], sn = g4[4 * m + 1], a = g4[4 * m + 2], q = g4[4 * m + 3];
                real Dr = a * cs, Di = a * sn;
                real dDr = gr * Gr + gi * Gi, dDi = gr * Gi - gi * Gr;  // conj(g) G
                real da = cs * dDr + sn * dDi, dphi = Dr * dDi - Di * dDr;
                real dmag = da * a * (1 - a), dph = dphi * (real)MONO_TWO_PI * q * (1 - q);
                dxt[d.o_mag + m] += dmag, dxt[d.o_ph + m] += dph;
                pb[m] += dmag, pb[N + m] += dph;
                ad[m] = Dr * Gr + Di * Gi, ad[N + m] = Dr * Gi - Di * Gr;  // conj(D) G
            }
            // carry[j] = sum over the rows n of j's block of P[n][j] adj[unshuffle(n)]: a gather
            // per source, so the sum order is fixed (and the CUDA twin's, thread j).
            for (int j = 0; j < N; j++) {
                int base = j / r * r;
                real cr = 0, ci = 0;
                for (int n = base; n < base + r; n++) {
                    real w = soft ? ptt[(size_t)n * r + j - base] : (real)(st[n] == j);
                    int m = mono_unshuffle(n, d.nb, r);
                    cr += w * ad[m], ci += w * ad[N + m];
                }
                carry[j] = cr, carry[N + j] = ci;
            }
        }
        free(carry);
    }
    // Per token: dP (every source of every row: the straight-through estimator's, or the soft
    // forward's exact one), the row-softmax Jacobian to dM (in place of the softmax), and the
    // selection logits through ds_k = <A_k, dM_t> and the softmax over K.
#pragma omp parallel for schedule(static)
    for (size_t tok = 0; tok < NT; tok++) {
        int b = (int)(tok / d.T), t = (int)(tok % d.T);
        const real *hp = mono_hprev(&c, h, b, t), *ad = adj + tok * 2 * N, *s_t = sk + tok * K;
        real *dM = pt + tok * Nr, dP[MONO_MAX_STATES], ds[MONO_MAX_MATRICES], sds = 0;
        for (int n = 0; n < N; n++) {
            int m = mono_unshuffle(n, d.nb, r), base = n / r * r;
            real *p = dM + (size_t)n * r, dot = 0;
            for (int j = 0; j < r; j++) {
                dP[j] = ad[m] * hp[base + j] + ad[N + m] * hp[N + base + j];
                dot += p[j] * dP[j];
            }
            for (int j = 0; j < r; j++) p[j] *= dP[j] - dot;
        }
        for (int k = 0; k < K; k++) {
            const real *a = c.A + (size_t)k * Nr;
            real acc = 0;
            for (size_t e = 0; e < Nr; e++) acc += a[e] * dM[e];
            ds[k] = acc, sds += s_t[k] * acc;
        }
        for (int k = 0; k < K; k++) dx[tok * d.W + d.o_sel + k] += s_t[k] * (ds[k] - sds);
    }
    // dA_k = sum_t s_t,k dM_t: per entry, tokens in order.
    real *dA = din[CORE_IN_PARAMS];
#pragma omp parallel for schedule(static)
    for (size_t ke = 0; ke < (size_t)K * Nr; ke++) {
        size_t k = ke / Nr, e = ke % Nr;
        real acc = 0;
        for (size_t tok = 0; tok < NT; tok++) acc += sk[tok * K + k] * pt[tok * Nr + e];
        dA[ke] += acc;
    }
    for (int m = 0; m < N; m++) {  // batch rows in order
        real am = 0, ap = 0;
        for (int b = 0; b < d.B; b++)
            am += part[(size_t)b * 2 * N + m], ap += part[(size_t)b * 2 * N + N + m];
        din[CORE_IN_PARAMS + 1][m] += am, din[CORE_IN_PARAMS + 2][m] += ap;
    }
    free(sk), free(dg), free(pt), free(adj), free(part), free(src), free(c.e0);
}

static int monomial_params(const OpShape *s, OpParam *out) {
    MonoDims d = mono_dims(s);
    // The logits are not weight-decayed: decay would pull M_t to 0, every row's softmax to
    // uniform and the argmax to whichever entry the noise favours.
    out[0] = (OpParam){.name = "logit_matrices",
                       .rows = d.K * d.N,
                       .cols = d.r,
                       .init = INIT_CUSTOM,
                       .trainable = 1};
    out[1] = (OpParam){.name = "mag_bias",
                       .rows = d.N,
                       .init = INIT_CONST,
                       .init_value = MONO_MAG_BIAS,
                       .trainable = 1};
    out[2] = (OpParam){.name = "phase_bias", .rows = d.N, .init = INIT_CUSTOM, .trainable = 1};
    return 3;
}

// logit_matrices: A_k[n][j] = [j is n's own offset in its block] + 0.2 N(0, 1). phase_bias:
// sigmoid(b_m) ~ U[0.01, 0.1], phases in [0.02 pi, 0.2 pi) (LRU's small-phase start), away from
// sigmoid's flat tails.
static void monomial_init(const OpShape *s, int index, uint64_t key, real *w) {
    MonoDims d = mono_dims(s);
    if (index == 0) {
        for (int k = 0; k < d.K; k++)
            for (int n = 0; n < d.N; n++)
                for (int j = 0; j < d.r; j++) {
                    size_t i = ((size_t)k * d.N + n) * d.r + j;
                    w[i] = (real)((j == n % d.r) + MONO_A_NOISE * rng_normal(key, i));
                }
    } else {
        for (int m = 0; m < d.N; m++) {
            double q = 0.01 + 0.09 * rng_uniform(key, (uint64_t)m);
            w[m] = (real)log(q / (1 - q));
        }
    }
}

static void monomial_sizes(const OpShape *s, size_t *in, size_t *out, size_t *saved) {
    MonoDims d = mono_dims(s);
    size_t NT = (size_t)s->B * s->T;
    in[CORE_IN_QKV] = NT * d.W, in[CORE_IN_XPROJ] = 0;
    in[CORE_IN_PARAMS] = (size_t)d.K * d.N * d.r;
    in[CORE_IN_PARAMS + 1] = in[CORE_IN_PARAMS + 2] = (size_t)d.N;
    out[0] = NT * d.O;
    *saved = 0;  // the states are the output; the gates are recomputed
}

static int monomial_check(const OpShape *s, char *err, size_t errlen) {
    MonomialOpts o = OPT_OF(MonomialOpts, s);
    if (o.states % o.blocks) {
        snprintf(err, errlen, "mixer.monomial_blocks (%d) must divide mixer.monomial_states (%d)",
                 o.blocks, o.states);
        return -1;
    }
    return 0;
}

// Per token: the K-way mixing of the logits (2 K N r), each row's max (N r), softmax over K,
// D_t (two sigmoids, cos, sin: ~30 per state) and the step (a complex multiply-add, 8 per
// state); the soft form adds each row's softmax (~3 N r) and its dense gather (4 N r).
static double monomial_flops(const OpShape *s) {
    MonoDims d = mono_dims(s);
    double Nr = (double)d.N * d.r;
    return 2.0 * d.K * Nr + Nr + 4.0 * d.K + 38.0 * d.N + (d.select == MONO_SOFT ? 7 * Nr : 0);
}

// Over held-out tokens: the fraction whose map pi_t is a permutation (a bijection: the layer
// then tracks a group element; rows sharing a source merge states), the mean largest
// probability of a row's softmax (how far the relaxation is from its argmax: 1 = the STE's
// forward and backward agree), and the mean |D_t|.
static int monomial_aux(const OpShape *s, const real *const *in, OpAux *out) {
    MonoDims d = mono_dims(s);
    MonoCtx c = mono_ctx(s, in);
    size_t NT = (size_t)d.B * d.T;
    real *pt = malloc(sizeof(real) * d.N * d.r), *dg = malloc(sizeof(real) * 4 * d.N);
    int *src = malloc(sizeof(int) * d.N), *hit = malloc(sizeof(int) * d.N);
    double perms = 0, conf = 0, mag = 0;
    for (size_t tok = 0; tok < NT; tok++) {
        mono_gates(&d, c.x + tok * d.W, c.A, c.bmag, c.bph, NULL, pt, src, dg);
        memset(hit, 0, sizeof(int) * d.N);
        int bijective = 1;
        for (int n = 0; n < d.N; n++) bijective &= !hit[src[n]]++;
        perms += bijective;
        for (int n = 0; n < d.N; n++) {
            double best = 0;
            for (int j = 0; j < d.r; j++) best = fmax(best, pt[(size_t)n * d.r + j]);
            conf += best;
        }
        for (int m = 0; m < d.N; m++) mag += dg[4 * m + 2];
    }
    free(pt), free(dg), free(src), free(hit), free(c.e0);
    out[0] = (OpAux){.name = "monomial_perm_frac", .value = NT ? perms / NT : 0};
    out[1] = (OpAux){.name = "monomial_row_conf", .value = NT ? conf / (NT * d.N) : 0};
    out[2] = (OpAux){.name = "monomial_decay_mean", .value = NT ? mag / (NT * d.N) : 0};
    return 3;
}

#ifdef MT_DOUBLE
#include <complex.h>

// The definition with explicit dense N x N complex matrices per token: A_t = diag(D_t) S P_t,
// S the shuffle as a permutation matrix built from the (b, r) grid, P_t block-diagonal with
// each row's one-hot argmax of its softmax (ste) or the softmax itself (soft), multiplied out
// and applied to h_{t-1} (h_{-1} = e_0) in double complex arithmetic.
static int monomial_reference(const OpShape *s, const double *const *in, double *out) {
    MonomialOpts o = OPT_OF(MonomialOpts, s);
    int N = o.states, K = o.matrices, nb = o.blocks, r = N / nb, C = s->C;
    int W = K + 4 * N + C, O = 2 * N + C;
    const double *A = in[CORE_IN_PARAMS], *bmag = in[CORE_IN_PARAMS + 1];
    const double *bph = in[CORE_IN_PARAMS + 2];
    size_t NN = (size_t)N * N;
    double complex *P = malloc(sizeof(double complex) * NN), *S = malloc(sizeof *S * NN);
    double complex *SP = malloc(sizeof *SP * NN), *At = malloc(sizeof *At * NN);
    double complex *h = malloc(sizeof *h * N), *hn = malloc(sizeof *hn * N);
    double *sel = malloc(sizeof(double) * K), *logit = malloc(sizeof(double) * NN);
    // S: output position (i, beta) of the transposed r x b grid reads position (beta, i) of the
    // b x r grid.
    for (size_t e = 0; e < NN; e++) S[e] = 0;
    for (int beta = 0; beta < nb; beta++)
        for (int i = 0; i < r; i++) S[(size_t)(i * nb + beta) * N + beta * r + i] = 1;
    for (int b = 0; b < s->B; b++) {
        for (int m = 0; m < N; m++) h[m] = m == 0;
        for (int t = 0; t < s->T; t++) {
            const double *x = in[CORE_IN_QKV] + ((size_t)b * s->T + t) * W;
            double z = 0;
            for (int k = 0; k < K; k++) z += sel[k] = exp(x[k]);
            for (int k = 0; k < K; k++) sel[k] /= z;
            // Row n's logits over all N columns; only its block's are defined.
            for (int n = 0; n < N; n++)
                for (int j = 0; j < N; j++) {
                    double v = 0;
                    if (j / r == n / r)
                        for (int k = 0; k < K; k++)
                            v += sel[k] * A[((size_t)k * N + n) * r + (j - n / r * r)];
                    logit[(size_t)n * N + j] = v;
                }
            for (int n = 0; n < N; n++) {
                double sum = 0, best = -1, *lr = logit + (size_t)n * N;
                int arg = -1;
                for (int j = n / r * r; j < n / r * r + r; j++) sum += exp(lr[j]);
                for (int j = 0; j < N; j++) {
                    double p = j / r == n / r ? exp(lr[j]) / sum : 0;
                    if (j / r == n / r && p > best) best = p, arg = j;
                    P[(size_t)n * N + j] = p;
                }
                if (o.select == MONO_STE)
                    for (int j = 0; j < N; j++) P[(size_t)n * N + j] = j == arg;
            }
            for (int i = 0; i < N; i++)
                for (int j = 0; j < N; j++) {
                    double complex v = 0;
                    for (int l = 0; l < N; l++) v += S[(size_t)i * N + l] * P[(size_t)l * N + j];
                    SP[(size_t)i * N + j] = v;
                }
            for (int i = 0; i < N; i++) {
                double mag = 1 / (1 + exp(-(x[K + i] + bmag[i])));
                double ph = MONO_TWO_PI / (1 + exp(-(x[K + N + i] + bph[i])));
                double complex D = mag * cexp(I * ph);
                for (int j = 0; j < N; j++) At[(size_t)i * N + j] = D * SP[(size_t)i * N + j];
            }
            for (int i = 0; i < N; i++) {
                double complex v = x[K + 2 * N + i] + I * x[K + 3 * N + i];
                for (int j = 0; j < N; j++) v += At[(size_t)i * N + j] * h[j];
                hn[i] = v;
            }
            memcpy(h, hn, sizeof *h * N);
            double *o_t = out + ((size_t)b * s->T + t) * O;
            for (int i = 0; i < N; i++) o_t[i] = creal(h[i]), o_t[N + i] = cimag(h[i]);
            for (int j = 0; j < C; j++) o_t[2 * N + j] = x[K + 4 * N + j];
        }
    }
    free(P), free(S), free(SP), free(At), free(h), free(hn), free(sel), free(logit);
    return 0;
}
#else
#define monomial_reference NULL
#endif

static const OpOption monomial_options[] = {
    {"monomial_states", OPT_INT, "16", NULL, 1, MONO_MAX_STATES, offsetof(MonomialOpts, states), 0,
     "monomial: state size N (complex entries)"},
    {"monomial_matrices", OPT_INT, "8", NULL, 1, MONO_MAX_MATRICES,
     offsetof(MonomialOpts, matrices), 0,
     "monomial: K learned logit matrices mixed per token by a softmax selection"},
    {"monomial_blocks", OPT_INT, "1", NULL, 1, MONO_MAX_STATES, offsetof(MonomialOpts, blocks), 0,
     "monomial: b blocks of N / b (1 = full monomial; > 1 = group-and-shuffle: each row picks a "
     "source in its block, then a fixed perfect shuffle); must divide N"},
    {"monomial_select", OPT_ENUM, "ste", "ste|soft", 0, 0, offsetof(MonomialOpts, select), 0,
     "monomial: the transition's P, row argmax with straight-through gradient (ste) or the row "
     "softmax itself (soft)"},
    {NULL}};

// Shapes: tests[0] (the layer's gradient check) and every shape with T <= 16 (the finite
// differences) use soft, whose gradient is exact; the hard (ste) shapes have T > 16 and run in
// the oracle and parity suites, their backward checked against the STE's definition by
// tests/test_mixer_reference.c. Odd N, T = 1, blocks > 1 (r = 2, 3 and 1), B = 2.
// clang-format off
const F(OpDef) F(op_monomial) = {
    .name = "monomial", .n_in = CORE_IN_PARAMS + 3, .n_out = 1,
    .sizes = monomial_sizes, .forward = monomial_forward, .backward = monomial_backward,
    .params = monomial_params, .init_param = monomial_init, .check = monomial_check,
    .aux = monomial_aux, .options = monomial_options, .mixer = 1,
    .help = "monomial transitions (input-dependent permutation-like map times complex diagonal, "
            "argmax with straight-through gradient; mixers.md 22)",
    .flops = monomial_flops, .reference = monomial_reference,
    .aux_cols = {{"monomial_perm_frac", AUX_MEAN, "perm frac", 3},
                 {"monomial_row_conf", AUX_MEAN, "row conf", 3},
                 {"monomial_decay_mean", AUX_MEAN, "|D|", 3}},
    .n_tests = 9,
    .tests = {{{.B = 2, .T = 7, .C = 4, .H = 1}, "monomial_states=5 monomial_matrices=3 monomial_select=soft"},
              {{.B = 1, .T = 1, .C = 3, .H = 1}, "monomial_states=3 monomial_matrices=2 monomial_select=soft"},
              {{.B = 2, .T = 9, .C = 3, .H = 1}, "monomial_states=6 monomial_matrices=3 monomial_blocks=2 monomial_select=soft"},
              {{.B = 2, .T = 5, .C = 2, .H = 1}, "monomial_states=9 monomial_matrices=2 monomial_blocks=3 monomial_select=soft"},
              {{.B = 1, .T = 6, .C = 2, .H = 1}, "monomial_states=4 monomial_matrices=1 monomial_blocks=4 monomial_select=soft"},
              {{.B = 2, .T = 33, .C = 4, .H = 1}, "monomial_states=5 monomial_matrices=3"},
              {{.B = 2, .T = 40, .C = 3, .H = 1}, "monomial_states=6 monomial_matrices=4 monomial_blocks=3"},
              {{.B = 1, .T = 17, .C = 2, .H = 1}, "monomial_states=9 monomial_matrices=2 monomial_blocks=3"},
              {{.B = 2, .T = 65, .C = 4, .H = 1}, "monomial_states=7 monomial_matrices=3 monomial_select=soft"}}};
// clang-format on
