// The ViT path's small ops (kernels/cpu/vision.c, kernels/cuda/vision.cu): dropout with a
// counter-based mask, mean pooling over a sequence and cross-entropy with label smoothing.
#pragma once
#include <stdint.h>

#include "ops.h"

// Dropout's mask is a pure function of (key, element index): element (row0 + n) * width + c of
// a site keeps its value when the top 53 bits of rng_u64(key, index) are at least
// threshold = floor(p * 2^53). An integer compare, so the CPU and CUDA masks agree bit for bit
// and a resumed or recomputed step draws the same mask.
static inline uint64_t dropout_threshold(double p) {
    return (uint64_t)(p * 9007199254740992.0);
}

// The dropout row's options (its test shapes set them; the model passes them as arguments).
typedef struct {
    double p;
    int key;
} DropoutOpts;
OP_OPTIONS_STRUCT(DropoutOpts)

// The smoothed cross-entropy row's option.
typedef struct {
    double smoothing;
} SmoothOpts;
OP_OPTIONS_STRUCT(SmoothOpts)
