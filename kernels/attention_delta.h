// The delta-rule mixers' option block (deltanet, gated_deltanet) and chunk length, shared by
// kernels/cpu/attention_delta.c and its CUDA twin kernels/cuda/attention_delta.cu.
#pragma once
#include "mamba_opts.h"
#include "ops.h"

typedef struct {
    int chunk;           // tokens per chunk of the training form (and between saved states)
    int neg_eigval;      // beta = 2 sigmoid: the transition I - beta k k^T may have eigenvalue < 0
    MambaInitOpts init;  // gated_deltanet: the ranges of A_log's and dt_bias's initialisation
} DeltaOpts;
OP_OPTIONS_STRUCT(DeltaOpts)

enum { DELTA_MAX_D = 128 };  // the CUDA kernel's limit (one thread per value column)

// The chunk length in use: mixer.chunk, or T when the sequence is shorter (the buffers are
// sized by it, and chunk may be up to 2^20).
static inline int delta_chunk(const OpShape *s) {
    int L = OPT_OF(DeltaOpts, s).chunk;
    return s->T > 0 && s->T < L ? s->T : L;
}
