// The op table: every kernel of madtrain as a forward/backward pair over flat buffers, with
// the buffer sizes it needs, so the gradient and parity suites test each op without extra code.
#pragma once
#include <stddef.h>

typedef enum { FEATURE_ELU1 = 0, FEATURE_RELU = 1 } FeatureMap;

// The dimensions and options an op needs. Not every op reads every field.
// N = B*T rows; C model width; H heads (head dim C/H); OC output features of a matmul;
// V vocabulary; F hidden width of an MLP activation.
typedef struct {
    int B, T, C, H, OC, V, F;
    double eps;        // rmsnorm eps, or the linear-attention denominator eps
    double rope_base;  // rotary base frequency
    int feature_map;   // FeatureMap of linear attention
    int normalize;     // linear attention: divide by the normaliser
    int chunk;         // linear attention chunk length
    const int *ids;    // token ids (embedding) or targets (cross-entropy; -1 = ignored)
} OpShape;

enum { OP_MAX_IO = 4, OP_MAX_TESTS = 4 };

// The declarations exist once per precision: ops_decl.inc is included with real = float
// (suffix _f32, the trainer) and real = double (suffix _f64, the gradient checks).
#define OPS_REAL float
#define OPS_S(n) n##_f32
#include "ops_decl.inc"
#undef OPS_REAL
#undef OPS_S
#define OPS_REAL double
#define OPS_S(n) n##_f64
#include "ops_decl.inc"
#undef OPS_REAL
#undef OPS_S
