// Hydra attention's options (mixers.md section 13), shared by kernels/cpu/attention_hydra.c and
// kernels/cuda/attention_hydra.cu.
#pragma once
#include "ops.h"

typedef enum { HYDRA_NORM_COUNT = 0, HYDRA_NORM_NONE = 1 } HydraNorm;
typedef struct {
    int hydra_norm;  // HydraNorm: divide the causal sum at t by t + 1, or not
} HydraOpts;
OP_OPTIONS_STRUCT(HydraOpts)
