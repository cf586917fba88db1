// The model: token embedding -> L blocks -> final RMSNorm -> LM head. Block: RMSNorm -> mixer
// -> residual; RMSNorm -> MLP -> residual. All parameters live in one flat buffer described by
// a name/shape/offset table; gradients use the same layout, so the all-reduce is one call.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "../kernels/ops.h"

enum { MAX_LAYERS = 64, MAX_PARAMS_PER_LAYER = 12 };
typedef enum { MLP_GELU = 0, MLP_SWIGLU = 1, MLP_NONE = 2 } MlpKind;
typedef enum { INIT_NORMAL, INIT_NORMAL_RESIDUAL, INIT_ONES, INIT_ZEROS } InitKind;

typedef struct {
    int vocab_size, d_model, n_layers, n_heads, d_ff;
    int mlp;             // MlpKind
    int tie_embeddings;  // the LM head reuses the token embedding
    int gate;            // post-readout sigmoid output gate on every mixer
    int mixer[MAX_LAYERS];  // index into MIXERS, per layer
    int rope[MAX_LAYERS];   // rotary embedding on q, k, per layer
    double rope_base, norm_eps, init_std;
    int feature_map, normalize, chunk;  // linear-attention options
    double attn_eps;
} ModelConfig;

typedef struct {
    char name[64];
    int ndim, shape[2];
    size_t offset, size;
    int init;   // InitKind
    int decay;  // AdamW weight decay applies (matrices yes; norm gains no)
} ParamInfo;

// Fills a table row (offset left 0): matrices [rows, cols] decay, vectors (cols = 0) do not.
void param_spec(ParamInfo *p, const char *name, int rows, int cols, int init);

// The mixer table: a mixer is its name, the core op (in the op table) that maps qkv [B,T,3C]
// to [B,T,C], and whether it wants rotary positions by default. Projections, the optional
// output gate and the gradient plumbing are shared by all mixers (mixer.c).
typedef struct {
    const char *name;
    const char *core_op;
    int rope_default;
    const char *doc;
} MixerInfo;
extern const MixerInfo MIXERS[];
extern const int N_MIXERS;
int mixer_find(const char *name);  // -1 when unknown

// Parameter specs of one layer's mixer (names relative to the layer), returns the count.
int mixer_param_specs(const ModelConfig *cfg, int layer, ParamInfo *out);
OpShape mixer_core_shape(const ModelConfig *cfg, int B, int T);

typedef struct {
    double loss_sum;          // sum of per-position losses over scored positions
    int64_t n_scored;         // scored positions
    double example_acc_sum;   // sum over examples of the example's accuracy
    int64_t n_examples;       // examples with at least one scored position
} ForwardStats;

#define MODEL_REAL float
#define MODEL_S(n) n##_f32
#include "model_decl.inc"
#undef MODEL_REAL
#undef MODEL_S
#define MODEL_REAL double
#define MODEL_S(n) n##_f64
#include "model_decl.inc"
#undef MODEL_REAL
#undef MODEL_S
