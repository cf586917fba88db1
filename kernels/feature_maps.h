// The linear-attention family's options and host-side geometry (mixers.md sections 2-5),
// shared by the CPU files (kernels/cpu/feature_maps.c and the linear, log-linear and HSS ops)
// and their CUDA twins, so both compute the same plan from the same shape.
#pragma once
#include <stddef.h>

#include "ops.h"

// Feature maps, in the order of the mixer.feature_map choices.
typedef enum {
    FEATURE_ELU1 = 0,
    FEATURE_RELU = 1,
    FEATURE_FAVOR = 2,      // positive orthogonal random features (FAVOR+)
    FEATURE_CIRCULANT = 3,  // FAVOR+ with the projection C(r) diag(s), applied by FFT
    FEATURE_COSFORMER = 4,  // relu features times cos and sin of the position (2D wide)
} FeatureMap;

// The options every op of the family reads; ops with more embed this struct first, so the
// feature-map code reads any of their blocks as LinearOpts.
typedef struct {
    int feature_map;  // FeatureMap
    int normalize;    // divide by the normaliser phi(q) . sum phi(k)
    int chunk;        // chunk length of the training form
    int n_features;   // favor, circulant: random features m per head
    int qk_norm;      // favor, circulant: L2-normalise q and k per head before the map
    int max_len;      // longest sequence: cosFormer's M, the log-linear level count
    double eps;       // the normaliser's epsilon
} LinearOpts;
OP_OPTIONS_STRUCT(LinearOpts)

// The family's option specs, declared once; `type` is the op's option struct and `member`
// the LinearOpts inside it (an op whose struct is LinearOpts itself passes a zero offset).
#define LINEAR_OPTION_SPECS(base)                                                          \
    {"feature_map",                                                                        \
     OPT_ENUM,                                                                             \
     "elu1",                                                                               \
     "elu1|relu|favor|circulant|cosformer",                                                \
     0,                                                                                    \
     0,                                                                                    \
     (base) + offsetof(LinearOpts, feature_map),                                           \
     0,                                                                                    \
     "feature map phi of the linear-attention family"},                                    \
        {"normalize",                                                                      \
         OPT_BOOL,                                                                         \
         "true",                                                                           \
         NULL,                                                                             \
         0,                                                                                \
         1,                                                                                \
         (base) + offsetof(LinearOpts, normalize),                                         \
         0,                                                                                \
         "divide by phi(q) . sum phi(k)"},                                                 \
        {"eps",                                                                            \
         OPT_FLOAT,                                                                        \
         "1e-6",                                                                           \
         NULL,                                                                             \
         0,                                                                                \
         1,                                                                                \
         (base) + offsetof(LinearOpts, eps),                                               \
         0,                                                                                \
         "denominator epsilon of the normalised form"},                                    \
        {"chunk",                                                                          \
         OPT_INT,                                                                          \
         "64",                                                                             \
         NULL,                                                                             \
         1,                                                                                \
         1 << 20,                                                                          \
         (base) + offsetof(LinearOpts, chunk),                                             \
         0,                                                                                \
         "chunk length of the chunkwise training form"},                                   \
        {"features",                                                                       \
         OPT_INT,                                                                          \
         "64",                                                                             \
         NULL,                                                                             \
         1,                                                                                \
         1 << 16,                                                                          \
         (base) + offsetof(LinearOpts, n_features),                                        \
         0,                                                                                \
         "random features m per head (favor and circulant maps)"},                         \
        {"qk_norm",                                                                        \
         OPT_BOOL,                                                                         \
         "true",                                                                           \
         NULL,                                                                             \
         0,                                                                                \
         1,                                                                                \
         (base) + offsetof(LinearOpts, qk_norm),                                           \
         0,                                                                                \
         "L2-normalise q and k per head before a random-feature map"},                     \
    {                                                                                      \
        "max_len", OPT_INT, "0", NULL, 0, 1 << 30, (base) + offsetof(LinearOpts, max_len), \
            OPT_ZERO_IS_SEQ_LEN,                                                           \
            "longest sequence: cosFormer's M, log-linear levels (0 = data.seq_len)"        \
    }

// The options of the linear rows (linear, favor, circulant_favor, cosformer): the family's, and
// mixer.causal. The other ops of the family (log-linear, HSS) are causal only and do not embed
// it, so a block of theirs never reads as bidirectional.
typedef struct {
    LinearOpts lin;
    int causal;  // 0: every token reads the whole sequence, S = sum_s phi(k_s) v'_s^T
} LinearRowOpts;
OP_OPTIONS_STRUCT(LinearRowOpts)

static inline int fmap_is_random(int map) {
    return map == FEATURE_FAVOR || map == FEATURE_CIRCULANT;
}
// Width m of phi for a shape: the random features, 2 D for cosFormer (cos and sin halves),
// else the head dim D.
static inline int fmap_width_of(const OpShape *s) {
    LinearOpts o = OPT_OF(LinearOpts, s);
    int D = s->C / s->H;
    if (fmap_is_random(o.feature_map)) return o.n_features;
    return o.feature_map == FEATURE_COSFORMER ? 2 * D : D;
}
// cosFormer's M: the configured longest sequence, else this call's T.
static inline int fmap_max_len(const OpShape *s) {
    LinearOpts o = OPT_OF(LinearOpts, s);
    return o.max_len > 0 ? o.max_len : s->T;
}
// The circulant projection stacks ceil(m / D) blocks of D rows.
static inline int circ_blocks(int m, int D) {
    return (m + D - 1) / D;
}
