// The op table: every kernel of madtrain as a forward/backward pair over flat buffers, with
// the buffer sizes it needs, so the gradient and parity suites test each op without extra code.
#pragma once
#include <stddef.h>
#include <stdint.h>

// Feature maps of the linear-attention family (mixers.md sections 2-5). The order is the
// order of the mixer.feature_map choices.
typedef enum {
    FEATURE_ELU1 = 0,
    FEATURE_RELU = 1,
    FEATURE_FAVOR = 2,      // positive orthogonal random features (FAVOR+)
    FEATURE_CIRCULANT = 3,  // FAVOR+ with the projection C(r) diag(s), applied by FFT
    FEATURE_COSFORMER = 4,  // relu features times cos and sin of the position (2D wide)
} FeatureMap;
#define FEATURE_MAP_NAMES "elu1|relu|favor|circulant|cosformer"

typedef enum { HYDRA_NORM_COUNT = 0, HYDRA_NORM_NONE = 1 } HydraNorm;
#define HYDRA_NORM_NAMES "count|none"

// The dimensions and options an op needs. Not every op reads every field.
// N = B*T rows; C model width; H heads (head dim C/H); OC output features of a matmul;
// V vocabulary; F hidden width of an MLP activation.
typedef struct {
    int B, T, C, H, OC, V, F;
    double eps;        // rmsnorm eps, or the linear-attention denominator eps
    double rope_base;  // rotary base frequency
    int feature_map;   // FeatureMap of the linear-attention family
    int normalize;     // linear attention: divide by the normaliser
    int chunk;         // linear attention chunk length
    int n_features;    // favor, circulant: random features m per head
    int qk_norm;       // favor, circulant: L2-normalise q and k per head before the map
    int max_len;       // longest sequence: cosFormer's M, the log-linear level count
    int hss_rank, hss_leaf;  // hss: rank of the off-diagonal blocks, leaf block width
    int hydra_norm;          // HydraNorm
    int kernel;              // conv_causal: taps per channel
    const int *ids;    // token ids (embedding) or targets (cross-entropy; -1 = ignored)
} OpShape;

enum { OP_MAX_IO = 8, OP_MAX_TESTS = 8, OP_MAX_PARAMS = 6, OP_MAX_AUX = 40 };

// A named figure a mixer core reports about itself (feature-map time, state energies, ...).
typedef struct {
    char name[40];
    double value;
} OpAux;

// A mixer core op reads q|k|v as input 0, the per-token projection x W_x^T [B, T, E] as
// input 1 (E from sizes(); 0 when the op needs none) and its own parameters as inputs 2...
enum { CORE_IN_QKV = 0, CORE_IN_XPROJ = 1, CORE_IN_PARAMS = 2 };

typedef enum {
    INIT_NORMAL,           // N(0, init_std)
    INIT_NORMAL_RESIDUAL,  // N(0, init_std / sqrt(2 L))
    INIT_ONES,
    INIT_ZEROS,
    INIT_CONST,   // every element = init_value
    INIT_CUSTOM,  // filled by its owner: the op's init_param, or the mixer layer
} InitKind;

// A parameter an op owns (random-feature projections, circulant rows, HSS bases, ...).
// Non-trainable ones are buffers: in the parameter table (so checkpoints hold them) but
// never updated by the optimizer and never given a gradient.
typedef struct {
    const char *name;
    int rows, cols;  // cols = 0: a vector
    int init;        // InitKind
    double init_value;
    int trainable, decay;
    int redraw;  // regenerated every mixer.redraw_interval steps (FAVOR+ projections)
} OpParam;

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
