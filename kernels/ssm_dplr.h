// The DPLR SSM mixer's options and widths (mixers.md 21; kernels/cpu/ssm_dplr.c), shared by the
// CPU row and its CUDA twin so the two read one struct and agree on every layout.
// Input 0 is u [B, T, C] (one SISO system per channel); the output is [y (C) | u (C)]: the
// layer's output projection W_o then holds the skip D (a full C x C matrix on the u columns),
// as the oscillator mixers pass their input on (kernels/ssm_osc.h).
// Parameters, per channel c (row c of each), complex values as interleaved (re, im) pairs:
//   lambda [C, 2N]   Lambda_n
//   p      [C, 2Nr]  P[n][j]      (n major, then the rank column j)
//   qbar   [C, 2Nr]  conj(Q)[n][j]  (stored conjugated: every Cauchy sum is then holomorphic)
//   b      [C, 2N]   B_n
//   ctilde [C, 2N]   Ctilde_n = (C (I - Abar^T))_n, learned directly as S4 does
//   log_dt [C]       Delta = exp(log_dt)
#pragma once
#include "ops.h"

typedef struct {
    int state;          // N: complex modes per channel
    int rank;           // r: columns of P and Q
    int neumann_order;  // 0: the exact Woodbury resolvent; k >= 1: the order-k Neumann series
} DplrOpts;
OP_OPTIONS_STRUCT(DplrOpts)

// The most low-rank columns: the CUDA twin keeps each frequency's (1 + r)^2 Cauchy sums in
// registers, one thread per (channel, frequency). HiPPO-LegS itself has rank 1; S4 uses 1 or 2.
#define DPLR_MAX_RANK 4
#define DPLR_SUMS (DPLR_MAX_RANK + 1) * (DPLR_MAX_RANK + 1)

// Parameter indices (inputs CORE_IN_PARAMS + i).
enum { DPLR_LAMBDA, DPLR_P, DPLR_QBAR, DPLR_B, DPLR_CTILDE, DPLR_LOG_DT, DPLR_NPARAMS };

typedef struct {
    int B, T, C, N, r, order;
    int S;  // 1 + r: the Cauchy sums of one frequency form an S x S matrix (mixers.md 21)
} DplrDims;

static inline DplrDims dplr_dims(const OpShape *s) {
    DplrOpts o = OPT_OF(DplrOpts, s);
    DplrDims d;
    d.B = s->B, d.T = s->T, d.C = s->C, d.N = o.state, d.r = o.rank, d.order = o.neumann_order;
    d.S = 1 + o.rank;
    return d;
}

// Elements of row c of parameter i: the stride of one channel.
static inline int dplr_param_cols(const DplrDims *d, int i) {
    return i == DPLR_P || i == DPLR_QBAR ? 2 * d->N * d->r : i == DPLR_LOG_DT ? 1 : 2 * d->N;
}
