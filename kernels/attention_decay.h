// The decay mixer's option block, shared by kernels/cpu/attention_decay.c and its CUDA twin
// kernels/cuda/attention_decay.cu, so the two read one struct.
#pragma once
#include "mamba_opts.h"
#include "ops.h"

typedef struct {
    int chunk;           // tokens between saved states
    MambaInitOpts init;  // the ranges of a_log's and dt_bias's initialisation
} DecayOpts;
OP_OPTIONS_STRUCT(DecayOpts)
