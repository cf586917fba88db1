// The circulant-diagonal SSM's option block, widths and constants (mixers.md 17 and 23),
// shared by kernels/cpu/ssm_circulant_diagonal.c and its CUDA twin so the two read one struct
// and one layout.
//
// The layer's input projection gives, per token, input 0 =
//   [d1 raw (n) | d2 raw (n) | rho raw (K) | theta (K) | B x (n) | u (C)],   K = n / 2 + 1,
// the core writes [h (n) | u (C)]: the layer's W_o is then the readout Cout on the h columns
// and the skip D on the u columns (the oscillators' convention, kernels/ssm_osc.h).
#pragma once
#include "ops.h"

typedef struct {
    int chunk;  // steps per chunk of the training form (and between saved states)
    int n;      // state size (mixer.circulant_n)
} CdOpts;
OP_OPTIONS_STRUCT(CdOpts)

// |lam_k| = CD_RHO_MAX sigmoid(.): the spectrum's modulus stays below 1 even where the sigmoid
// rounds to 1 (from about 17 in float, 37 in double), so ||A_t||_2 <= CD_RHO_MAX in floating
// point too, not only in exact arithmetic.
#define CD_RHO_MAX 0.9999
// d1 and d2 biases at initialisation: tanh(3) = 0.995, the diagonals start near the identity
// (a bias of 0 would start them near tanh(0) = 0 and zero the state every step).
#define CD_D_BIAS 3.0
// The initial |lam_k| = CD_RHO_MAX sigmoid(rho bias) is spread log-uniformly in 1 - |lam| over
// [1 - CD_RHO_INIT_HI, 1 - CD_RHO_INIT_LO], as Mamba spreads its decays.
#define CD_RHO_INIT_LO 0.9
#define CD_RHO_INIT_HI 0.999

typedef struct {
    int B, T, C, n, K;  // K = n / 2 + 1 bins of the half spectrum (n even: the last is Nyquist)
    int W_in, W_out;    // input 0 and output widths per token
    int L, nc;          // chunk length in use, chunks (the last one partial)
    int o_d1, o_d2, o_rho, o_th, o_bx, o_u;  // input 0's column offsets
} CdDims;

static inline CdDims cd_dims(const OpShape *s) {
    CdOpts o = OPT_OF(CdOpts, s);
    CdDims d;
    d.B = s->B, d.T = s->T, d.C = s->C, d.n = o.n, d.K = o.n / 2 + 1;
    d.o_d1 = 0, d.o_d2 = d.n, d.o_rho = 2 * d.n, d.o_th = 2 * d.n + d.K;
    d.o_bx = 2 * d.n + 2 * d.K, d.o_u = 3 * d.n + 2 * d.K;
    d.W_in = d.o_u + d.C, d.W_out = d.n + d.C;
    d.L = s->T > 0 && s->T < o.chunk ? s->T : o.chunk;
    d.nc = s->T > 0 ? (s->T + d.L - 1) / d.L : 0;
    return d;
}

// Bins whose lam is its own conjugate (0, and n / 2 for even n): lam = rho cos(theta) there,
// so the spectrum is that of a real first column c.
static inline int cd_real_bin(int k, int n) {
    return k == 0 || 2 * k == n;
}

static inline int cd_chunk_len(const CdDims *d, int c) {
    int t0 = c * d->L;
    return d->T - t0 < d->L ? d->T - t0 : d->L;
}

// Saved by forward: the entering state of every (batch row, chunk) [B, nc, n], then the chunk
// composites P_c = A_t1 ... A_t0 [B, nc, n, n], column-major (column j = P e_j contiguous). Only
// chunks 1..nc-2 have one: the first chunk's is never needed (it multiplies h_{-1} = 0), nor the
// last's (no state leaves it forward, no adjoint enters it backward).
static inline size_t cd_saved_states(const CdDims *d) {
    return (size_t)d->B * d->nc * d->n;
}
static inline size_t cd_saved_size(const CdDims *d) {
    return cd_saved_states(d) * (1 + (size_t)d->n);
}
