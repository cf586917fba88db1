// The monomial mixer's option block and geometry (mixers.md 22), shared by the CPU row
// (kernels/cpu/ssm_monomial.c) and its CUDA twin so the two read one struct.
// Input 0 per token, from the layer's input projection:
//   [selection logits (K) | mag (N) | phase (N) | Re Bx (N) | Im Bx (N) | u (C)]
// output per token: [Re h (N) | Im h (N) | u (C)], so the layer's W_o is the readout Linear
// over [Re h, Im h] and, on the u columns, the skip D (as the oscillators, kernels/ssm_osc.h).
// The state's N indices are b blocks of r = N / b (b = mixer.monomial_blocks); row n's logits
// select a source among the r indices of its own block, and a fixed shuffle follows.
#pragma once
#include "ops.h"

typedef struct {
    int states;    // N
    int matrices;  // K: the learned logit matrices A_k mixed per token
    int blocks;    // b: 1 = full monomial, > 1 = group-and-shuffle
    int select;    // MONO_STE (hard argmax, straight-through) or MONO_SOFT (row softmax)
} MonomialOpts;
OP_OPTIONS_STRUCT(MonomialOpts)

enum { MONO_STE = 0, MONO_SOFT = 1 };
// Option ranges: the CPU kernels keep a row of r logits and the K selection weights on the
// stack, the CUDA twin the K weights in shared memory and the state in one block's threads.
enum { MONO_MAX_STATES = 1024, MONO_MAX_MATRICES = 256 };

#ifdef __CUDACC__
#define MONO_HD __host__ __device__
#else
#define MONO_HD
#endif

typedef struct {
    int B, T, C, N, K, nb, r, select;
    int W, O;                                   // input 0 and output widths per token
    int o_sel, o_mag, o_ph, o_bre, o_bim, o_u;  // column offsets in input 0
} MonoDims;

static inline MonoDims mono_dims(const OpShape *s) {
    MonomialOpts o = OPT_OF(MonomialOpts, s);
    MonoDims d;
    d.B = s->B, d.T = s->T, d.C = s->C, d.N = o.states, d.K = o.matrices, d.nb = o.blocks;
    d.r = o.blocks > 0 && o.states % o.blocks == 0 ? o.states / o.blocks : 1;
    d.select = o.select;
    d.o_sel = 0, d.o_mag = d.K, d.o_ph = d.K + d.N, d.o_bre = d.K + 2 * d.N;
    d.o_bim = d.K + 3 * d.N, d.o_u = d.K + 4 * d.N;
    d.W = d.K + 4 * d.N + d.C, d.O = 2 * d.N + d.C;
    return d;
}

// The fixed shuffle after the block step: the transpose of the (b, r) index grid (the perfect
// shuffle). Output m = i b + beta reads block beta's offset i, index beta r + i; the identity
// when b = 1 (and when r = 1).
static inline MONO_HD int mono_shuffle(int m, int nb, int r) {
    return (m % nb) * r + m / nb;
}
static inline MONO_HD int mono_unshuffle(int n, int nb, int r) {
    return (n % r) * nb + n / r;
}
