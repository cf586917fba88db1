// GLA's option block, shared by kernels/cpu/attention_gla.c and its CUDA twin
// kernels/cuda/attention_gla.cu, so the two read one struct.
#pragma once
#include "ops.h"

typedef struct {
    int chunk;         // tokens per chunk of the training form (and between saved states)
    double gate_norm;  // the paper's gate_logit_normalizer
    int head_norm;     // RMSNorm of each head's readout with a learned [D] gain (the paper's)
    int gate_rank;     // R: logits x W_a1 W_a2 through rank R; 0: a full-rank W_x [C, C]
} GlaOpts;
OP_OPTIONS_STRUCT(GlaOpts)

enum { GLA_MAX_D = 128 };  // the CUDA kernel's limit (a D x (D + 1) reduction in shared memory)
