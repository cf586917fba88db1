// The chunked parallel scan of 2 x 2 linear recurrences, shared by the oscillator mixers
// (linoss, oscgate, oscgate_mve; mixers.md 16 and 20). Each "lane" (a batch row and one
// oscillator, or one input channel of an oscillator) carries a real 2-vector state
//     s_t = M_t s_{t-1} + f_t,   s_{-1} = 0,
// with M_t a 2 x 2 block: LinOSS's (z, y) block, the experiment's damped block, or a complex
// multiply (r e^{i theta} acting on (Re h, Im h)) for the complex-diagonal OscGate.
// Training form (reduce, then scan; the CUDA twin has the same three phases):
//   1. every (lane, chunk) at once: the chunk's product P_c = M_t1 ... M_t0 and its end state
//      from a zero start;
//   2. every lane: the chunks' entering states, s_in(c+1) = P_c s_in(c) + end_c (nc steps);
//   3. every (lane, chunk) at once: the chunk rerun from its entering state, states emitted.
// The entering states are saved; backward runs the adjoint g_t = dout_t + M_{t+1}^T g_{t+1}
// with the same three phases in reverse time (carry q_c = M_{t1+1}^T g_{t1+1} into chunk c)
// and hands the mixer, per chunk, the states s_{t-1} and adjoints g_t it needs for
// dM_t = g_t s_{t-1}^T and df_t = g_t. A mixer supplies two functions: `fill` (its M_t, f_t for
// a chunk of a lane, from its inputs) and `emit` / `chain` (where states go, what gradients
// come of them). Work is about twice the sequential loop's; the chunks give the parallelism
// when batch x lanes is small (long sequences on a GPU).
// Context parallelism: the lanes' states entering the call ([B, lanes, 2], NULL = zero) start
// phase 2, and the states after the last step can be written out; backward takes the
// gradient of those (it starts the adjoint's carry) and gives the entering states' (the carry
// left after the first chunk).
#pragma once
#include <stdlib.h>
#include <string.h>

#include "../real.h"

typedef struct {
    real m[4];  // M_t row-major: [[m0, m1], [m2, m3]]
    real f[2];  // f_t
} OscStep;

// The mixer's side: `fill` writes steps[0..len) for times t0..t0+len of lane `lane` of batch
// row b; `emit` receives the states s[0..len) [len][2] of that chunk; `chain` receives the
// chunk's steps, the states before each step sprev [len][2] and the adjoints g [len][2], adds
// the input gradients and accumulates parameter gradients into part (npart reals, zeroed by
// the engine for each (lane, chunk) and summed by the mixer in a fixed order).
typedef struct {
    const void *ctx;
    int B, T, lanes, L, nc;  // chunks of L steps, the last one partial
    void (*fill)(const void *ctx, int b, int lane, int t0, int len, OscStep *steps);
    void (*emit)(const void *ctx, int b, int lane, int t0, int len, const real *s);
    // dout for times t0..t0+len of the lane: the gradient reaching each state [len][2]
    void (*dout)(const void *ctx, int b, int lane, int t0, int len, real *ds);
    void (*chain)(const void *ctx, int b, int lane, int t0, int len, const OscStep *steps,
                  const real *sprev, const real *g, real *part);
    int npart;
} OscScan;

static inline int osc_chunk_len(const OscScan *o, int c) {
    int t0 = c * o->L;
    return o->T - t0 < o->L ? o->T - t0 : o->L;
}

// Saved by forward: the entering state of every (batch, lane, chunk) [B, lanes, nc, 2].
static inline size_t osc_saved_size(const OscScan *o) {
    return (size_t)o->B * o->lanes * o->nc * 2;
}

static inline void osc_mat_mul(const real *a, const real *b, real *out) {  // out = a b
    real r0 = a[0] * b[0] + a[1] * b[2], r1 = a[0] * b[1] + a[1] * b[3];
    real r2 = a[2] * b[0] + a[3] * b[2], r3 = a[2] * b[1] + a[3] * b[3];
    out[0] = r0, out[1] = r1, out[2] = r2, out[3] = r3;
}

// Runs one chunk from state (s0, s1); writes the states when `states` is not NULL; returns the
// end state in s.
static inline void osc_run(const OscStep *st, int len, real *s, real *states) {
    real a = s[0], b = s[1];
    for (int r = 0; r < len; r++) {
        const real *m = st[r].m;
        real na = m[0] * a + m[1] * b + st[r].f[0], nb = m[2] * a + m[3] * b + st[r].f[1];
        a = na, b = nb;
        if (states) states[2 * r] = a, states[2 * r + 1] = b;
    }
    s[0] = a, s[1] = b;
}

static inline void osc_forward(const OscScan *o, real *saved, const real *state_in,
                               real *state_out) {
    size_t units = (size_t)o->B * o->lanes * o->nc;
    real *ends = malloc(sizeof(real) * units * 6);  // per unit: end state [2], product [4]
#pragma omp parallel
    {
        OscStep *st = malloc(sizeof(OscStep) * o->L);
        real *states = malloc(sizeof(real) * 2 * o->L);
#pragma omp for schedule(static)
        for (size_t u = 0; u < units; u++) {
            int c = (int)(u % o->nc), lane = (int)(u / o->nc % o->lanes);
            int b = (int)(u / o->nc / o->lanes), len = osc_chunk_len(o, c);
            o->fill(o->ctx, b, lane, c * o->L, len, st);
            real *e = ends + u * 6, *P = e + 2;
            e[0] = e[1] = 0;
            osc_run(st, len, e, NULL);
            memcpy(P, st[0].m, sizeof(real) * 4);
            for (int r = 1; r < len; r++) osc_mat_mul(st[r].m, P, P);
        }
#pragma omp for schedule(static)
        for (size_t bl = 0; bl < (size_t)o->B * o->lanes; bl++) {
            real s[2] = {state_in ? state_in[2 * bl] : 0, state_in ? state_in[2 * bl + 1] : 0};
            for (int c = 0; c < o->nc; c++) {
                const real *e = ends + (bl * o->nc + c) * 6, *P = e + 2;
                real *in = saved + (bl * o->nc + c) * 2;
                in[0] = s[0], in[1] = s[1];
                real n0 = P[0] * s[0] + P[1] * s[1] + e[0], n1 = P[2] * s[0] + P[3] * s[1] + e[1];
                s[0] = n0, s[1] = n1;
            }
            if (state_out) state_out[2 * bl] = s[0], state_out[2 * bl + 1] = s[1];
        }
#pragma omp for schedule(static)
        for (size_t u = 0; u < units; u++) {
            int c = (int)(u % o->nc), lane = (int)(u / o->nc % o->lanes);
            int b = (int)(u / o->nc / o->lanes), len = osc_chunk_len(o, c);
            o->fill(o->ctx, b, lane, c * o->L, len, st);
            real s[2] = {saved[u * 2], saved[u * 2 + 1]};
            osc_run(st, len, s, states);
            o->emit(o->ctx, b, lane, c * o->L, len, states);
        }
        free(st), free(states);
    }
    free(ends);
}

// part_out [B, lanes, nc, npart]: the chain's partial sums per (lane, chunk), for the mixer to
// reduce in a fixed order.
// dstate_out: the gradient of the states after the last step (NULL = zero); dstate_in: the
// entering states' gradient is added there (may be NULL).
static inline void osc_backward(const OscScan *o, const real *saved, real *part_out,
                                const real *dstate_out, real *dstate_in) {
    size_t units = (size_t)o->B * o->lanes * o->nc;
    real *heads = malloc(sizeof(real) * units * 6);  // per unit: M_t0^T loc_t0 [2], P_c [4]
    real *carry = malloc(sizeof(real) * units * 2);  // q_c per unit
#pragma omp parallel
    {
        OscStep *st = malloc(sizeof(OscStep) * o->L);
        real *ds = malloc(sizeof(real) * 2 * o->L), *sprev = malloc(sizeof(real) * 2 * o->L);
        real *g = malloc(sizeof(real) * 2 * o->L);
#pragma omp for schedule(static)
        for (size_t u = 0; u < units; u++) {
            int c = (int)(u % o->nc), lane = (int)(u / o->nc % o->lanes);
            int b = (int)(u / o->nc / o->lanes), len = osc_chunk_len(o, c);
            o->fill(o->ctx, b, lane, c * o->L, len, st);
            o->dout(o->ctx, b, lane, c * o->L, len, ds);
            real *h = heads + u * 6, *P = h + 2, q0 = 0, q1 = 0;  // q: M_{t+1}^T g_{t+1}
            for (int r = len - 1; r >= 0; r--) {
                real g0 = ds[2 * r] + q0, g1 = ds[2 * r + 1] + q1;
                const real *m = st[r].m;
                q0 = m[0] * g0 + m[2] * g1, q1 = m[1] * g0 + m[3] * g1;
            }
            h[0] = q0, h[1] = q1;
            memcpy(P, st[0].m, sizeof(real) * 4);
            for (int r = 1; r < len; r++) osc_mat_mul(st[r].m, P, P);
        }
#pragma omp for schedule(static)
        for (size_t bl = 0; bl < (size_t)o->B * o->lanes; bl++) {
            real q[2] = {dstate_out ? dstate_out[2 * bl] : 0,
                         dstate_out ? dstate_out[2 * bl + 1] : 0};
            for (int c = o->nc - 1; c >= 0; c--) {
                const real *h = heads + (bl * o->nc + c) * 6, *P = h + 2;
                real *cq = carry + (bl * o->nc + c) * 2;
                cq[0] = q[0], cq[1] = q[1];
                real n0 = P[0] * q[0] + P[2] * q[1] + h[0], n1 = P[1] * q[0] + P[3] * q[1] + h[1];
                q[0] = n0, q[1] = n1;
            }
            if (dstate_in) dstate_in[2 * bl] += q[0], dstate_in[2 * bl + 1] += q[1];
        }
#pragma omp for schedule(static)
        for (size_t u = 0; u < units; u++) {
            int c = (int)(u % o->nc), lane = (int)(u / o->nc % o->lanes);
            int b = (int)(u / o->nc / o->lanes), len = osc_chunk_len(o, c);
            o->fill(o->ctx, b, lane, c * o->L, len, st);
            o->dout(o->ctx, b, lane, c * o->L, len, ds);
            // the states before each step, from the saved entering state
            real s0 = saved[u * 2], s1 = saved[u * 2 + 1];
            for (int r = 0; r < len; r++) {
                sprev[2 * r] = s0, sprev[2 * r + 1] = s1;
                const real *m = st[r].m;
                real n0 = m[0] * s0 + m[1] * s1 + st[r].f[0],
                     n1 = m[2] * s0 + m[3] * s1 + st[r].f[1];
                s0 = n0, s1 = n1;
            }
            real q0 = carry[u * 2], q1 = carry[u * 2 + 1];
            for (int r = len - 1; r >= 0; r--) {
                real g0 = ds[2 * r] + q0, g1 = ds[2 * r + 1] + q1;
                g[2 * r] = g0, g[2 * r + 1] = g1;
                const real *m = st[r].m;
                q0 = m[0] * g0 + m[2] * g1, q1 = m[1] * g0 + m[3] * g1;
            }
            real *part = part_out + u * o->npart;
            memset(part, 0, sizeof(real) * o->npart);
            o->chain(o->ctx, b, lane, c * o->L, len, st, sprev, g, part);
        }
        free(st), free(ds), free(sprev), free(g);
    }
    free(heads), free(carry);
}

// state [B, lanes, 2] <- A state, A the product of the call's transitions M_T-1 ... M_0 per
// lane (transpose: A^T state), for context parallelism's carry_through.
static inline void osc_carry_through(const OscScan *o, real *state, int transpose) {
#pragma omp parallel
    {
        OscStep *st = malloc(sizeof(OscStep) * o->L);
#pragma omp for schedule(static)
        for (size_t bl = 0; bl < (size_t)o->B * o->lanes; bl++) {
            int b = (int)(bl / o->lanes), lane = (int)(bl % o->lanes);
            real s0 = state[2 * bl], s1 = state[2 * bl + 1];
            for (int k = 0; k < o->nc; k++) {
                int c = transpose ? o->nc - 1 - k : k, len = osc_chunk_len(o, c);
                o->fill(o->ctx, b, lane, c * o->L, len, st);
                for (int i = 0; i < len; i++) {
                    const real *m = st[transpose ? len - 1 - i : i].m;
                    real n0 = transpose ? m[0] * s0 + m[2] * s1 : m[0] * s0 + m[1] * s1;
                    real n1 = transpose ? m[1] * s0 + m[3] * s1 : m[2] * s0 + m[3] * s1;
                    s0 = n0, s1 = n1;
                }
            }
            state[2 * bl] = s0, state[2 * bl + 1] = s1;
        }
        free(st);
    }
}
