// Softmax attention's options (mixers.md section 1), shared by kernels/cpu/attention_softmax.c
// and kernels/cuda/attention_softmax.cu.
#pragma once
#include "ops.h"

typedef struct {
    int causal;  // 1: token t attends s <= t; 0: every token of the sequence
} SoftmaxOpts;
OP_OPTIONS_STRUCT(SoftmaxOpts)
