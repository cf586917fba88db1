// Mamba-2's option block and chunk geometry (kernels/cpu/ssm_mamba2.c for the math), shared by
// the CPU row and its CUDA twin, so the two read one struct.
#pragma once
#include "mamba_opts.h"
#include "ops.h"

typedef struct {
    int chunk;           // tokens per chunk of the training form (and between saved states)
    int d_state;         // N
    int expand;          // d_in = expand d_model
    int n_groups;        // G: heads share B and C in G groups
    int neg_eigval;      // a_t = 2 exp(-Delta A) - 1 in (-1, 1) instead of exp(-Delta A)
    MambaInitOpts init;  // the ranges of a_log's and dt_bias's initialisation
} Mamba2Opts;
OP_OPTIONS_STRUCT(Mamba2Opts)

#define MAMBA2_NORM_EPS 1e-5

typedef struct {
    int B, T, H, P, N, G, d_in, W, E, L, nc;  // W: input 0 width, E: input 1 width
    int neg;                                  // mixer.neg_eigval
} M2Dims;

static inline M2Dims m2_dims(const OpShape *s) {
    Mamba2Opts o = OPT_OF(Mamba2Opts, s);
    M2Dims d;
    d.B = s->B, d.T = s->T, d.H = s->H, d.N = o.d_state, d.G = o.n_groups;
    d.d_in = o.expand * s->C, d.P = d.d_in / s->H;
    d.W = d.d_in + 2 * d.G * d.N, d.E = d.d_in + d.H;
    d.L = s->T > 0 && s->T < o.chunk ? s->T : o.chunk;
    d.nc = (s->T + d.L - 1) / d.L;
    d.neg = o.neg_eigval;
    return d;
}
