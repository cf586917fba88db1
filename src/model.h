// The model: token embedding -> L blocks -> final norm -> LM head (model.head autoencoder puts
// MAD's pool-decoder between the blocks and the final norm, and gives the head a bias). Block: norm
// -> mixer
// -> residual; norm -> MLP -> residual. Norms are RMSNorm or LayerNorm (model.norm); the
// linears optionally carry biases (model.mlp_bias, model.proj_bias). All parameters live in one
// flat buffer described by a name/shape/offset table; gradients use the same layout, so the
// all-reduce is one call.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "../comm/comm.h"
#include "../kernels/backend.h"
#include "config.h"

enum { MAX_PARAMS_PER_LAYER = 16 };
typedef enum { MLP_GELU = 0, MLP_SWIGLU = 1, MLP_NONE = 2, MLP_GELU_ERF = 3 } MlpKind;

// Context parallelism (parallel.context, docs/performance.md): the `size` ranks of a group
// hold consecutive slices of the same sequences, this one tokens [pos0, pos0 + T) of each;
// world ranks first .. first + size - 1 in slice order. Mixer layers pass their states along
// the group; every other op is per token. size 1: off.
typedef struct {
    int rank, size, pos0, first;
    Comm *comm;
} ContextGroup;
// The ViT path (docs/vision.md), chosen by the data: with image shards the token embedding is a
// patch embedding ([C, P*P*channels] over flattened patches, plus a bias), a class token
// (pool cls) or mean pooling (pool mean), learned or fixed 2-D sin-cos positions, the same
// blocks, the final norm and a classification head [classes, C] with a bias; vocab_size is the
// number of classes. Dropout (rate `dropout`) acts on the embedding, each residual branch's
// output and the MLP's hidden activation; label smoothing on the training loss.
typedef struct {
    int patch;  // patch side P (0: the token model)
    int height, width, channels;
    int pool;  // VIT_POOL_*
    int pos;   // VIT_POS_*
    double dropout, label_smoothing;
} VisionConfig;
// Patches per image (the grid is (H/P) x (W/P), row-major), and tokens per image: the patches
// plus the class token under pool cls.
int vit_patches(const VisionConfig *v);
int vit_tokens(const VisionConfig *v);

typedef struct {
    int vocab_size, d_model, n_layers, n_heads, d_ff;
    int mlp;                // MlpKind
    int tie_embeddings;     // the LM head reuses the token embedding
    int max_positions;      // learned absolute position embeddings wpe [max_positions, C] (0: none)
    int gate;               // post-readout sigmoid output gate on every mixer
    int mixer[MAX_LAYERS];  // the layer's mixer: its row's index in the op table (OPS_f32)
    int rope[MAX_LAYERS];   // rotary embedding on q, k, per layer
    int recompute[MAX_LAYERS];  // model.recompute: the block's activations rebuilt in backward
    double rope_base, norm_eps, init_std;
    int conv_kernel;          // short causal convolution on q, k, v (0 = none)
    int seq_len;              // the run's sequence length: mixers check their options against it
    int norm;                 // NORM_RMSNORM | NORM_LAYERNORM (config.h)
    int mlp_bias, proj_bias;  // biases on the MLP's linears; on the mixer's projections
    int init_scheme;          // INIT_SCHEME_MADTRAIN | INIT_SCHEME_PYTORCH: the table's InitKinds
    int head;                 // HEAD_LM | HEAD_AUTOENCODER (config.h)
    // Every trainable tensor decays (optim.decay all), not only matrices: an optimiser option,
    // but the parameter table is what marks which tensors decay, so it travels with the model.
    int decay_all;
    // Per layer, the mixer's option block as its row reads it (OpShape.opt), resolved from the
    // mixer.* keys and the row's fixed values.
    OpShape core_opts[MAX_LAYERS];
    ContextGroup cp;  // set by the trainer after model_config_from; zero = off
    VisionConfig vision;
} ModelConfig;

typedef struct {
    char name[64];
    int ndim, shape[2];
    size_t offset, size;
    int init;           // InitKind
    double init_value;  // INIT_CONST: the value; INIT_UNIFORM: the bound
    int decay;          // AdamW weight decay applies (matrices yes; norm gains no)
    int trainable;      // 0: a buffer (random features, fixed bases): no gradient, no update
    int redraw;         // regenerated every mixer.redraw_interval steps
    int layer, index;   // mixer tensors: layer and position in mixer_param_specs (else -1)
} ParamInfo;

// Fills a table row (offset left 0): trainable; matrices [rows, cols] decay, vectors
// (cols = 0) do not.
void param_spec(ParamInfo *p, const char *name, int rows, int cols, int init);
// A Linear's weight [out = rows, in = cols]: `madtrain_init` under model.init madtrain, PyTorch's
// nn.Linear default U(+-1/sqrt(in)) under pytorch.
void param_linear(ParamInfo *p, const ModelConfig *cfg, const char *name, int rows, int cols,
                  int madtrain_init);
// A Linear's bias [rows] (fan_in: its weight's input width): zeros under madtrain, as nn.Linear
// U(+-1/sqrt(fan_in)) under pytorch.
void param_bias(ParamInfo *p, const ModelConfig *cfg, const char *name, int rows, int fan_in);

// Mixers are rows of the op table with mixer = 1 (kernels/ops_list.h): the core op that maps
// q|k|v [B,T,3C] (plus the per-token projection and the parameters the op declares) to [B,T,C].
// Projections, the optional short convolution and output gate and the gradient plumbing are
// shared by all mixers (mixer_layer.c).
int mixer_find(const char *name);  // the row's index in OPS_f32, -1 when no mixer has the name

// Fills the mixer layers' options: mc->conv_kernel, and mc->core_opts from the mixer.* keys
// for the mixers already in mc->mixer.
void mixer_options_from(const Config *c, ModelConfig *mc);

// Where each tensor of a layer's mixer sits in mixer_param_specs order (-1: absent).
typedef struct {
    // input projection [W_in, C] (q|k|v: W_in = 3C unless the core reads another width), out
    // [C, W_out], gate [W_out, C], conv [W_in, K], per-token projection W_x [E, C]
    int wqkv, wo, wg, wconv, wx;
    int bqkv, bo, bg;  // model.proj_bias: the projections' biases [W_in], [C], [W_out]
    int in_w, out_w;   // W_in, W_out: the core's input 0 and output widths (sizes() per token)
    int core, n_core;  // the core op's own parameters: [core, core + n_core)
    int n;             // all tensors
    int E;             // width of the per-token projection x W_x^T the core reads
} MixerSlots;
MixerSlots mixer_slots(const ModelConfig *cfg, int layer);
// Parameter specs of one layer's mixer (names relative to the layer), returns the count.
int mixer_param_specs(const ModelConfig *cfg, int layer, ParamInfo *out);
OpShape mixer_core_shape(const ModelConfig *cfg, int layer, int B, int T);

// Packed rows (data.pack): example i of a [B, T] batch is tokens [start[i], start[i] + len[i])
// of row row[i], and the segments tile every row. A mixer layer runs its short convolution,
// rotary positions and core op on each segment as a sequence of its own (B = 1, T = len), so
// no state, attention mask or convolution window crosses an example boundary: the reset is
// exact for every mixer by construction, and the packed==separate test checks it per row of
// the op table. NULL (or n = 0) everywhere below: one sequence per row.
typedef struct {
    int n;
    int *row, *start, *len;  // [n] each (capacity B * T)
} Segments;

typedef struct {
    double loss_sum;         // sum of per-position losses over scored positions
    int64_t n_scored;        // scored positions
    double example_acc_sum;  // sum over examples of the example's accuracy
    int64_t n_examples;      // examples with at least one scored position
    double top5_sum;         // images: examples whose label is among the 5 highest logits
} ForwardStats;

// One ViT forward's mode: train (dropout and label smoothing on) or evaluate (both off), and
// where the batch sits in its stream, so dropout's mask is a pure function of (dropout_key,
// image position, token, channel): a resume, a recomputed block and any number of ranks draw
// the same masks.
typedef struct {
    int train;
    uint64_t dropout_key;  // from (seed, step): train_dropout_key
    int64_t first_image;   // the batch's first image's position in its stream
} ImageStep;

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
