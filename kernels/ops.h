// The op table: every kernel of madtrain as a forward/backward pair over flat buffers, with
// the buffer sizes it needs. A mixer is one row of it: the row carries everything the rest of
// madtrain needs to know (options, parameters, FLOPs, auxiliary figures, test shapes, the
// reference oracle), so config parsing, --help, the bench, the report and the test suites
// are generated from the rows and nothing outside the mixer's two files names it.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <string.h>

// The bytes of an op's own option block (OpShape.opt): each op with options defines a plain
// struct for them (kernels/<op>.h, shared by its CPU and CUDA files) and reads it with memcpy.
enum { OP_OPT_BYTES = 128 };

// The dimensions an op needs, plus its own options. Not every op reads every field.
// N = B*T rows; C model width; H heads (head dim C/H); OC output features of a matmul;
// V vocabulary; F hidden width of an MLP activation.
typedef struct {
    int B, T, C, H, OC, V, F;
    double eps;        // rmsnorm and layernorm eps
    double rope_base;  // rotary base frequency
    int kernel;        // conv_causal: taps per channel
    const int *ids;    // token ids (embedding) or targets (cross-entropy; -1 = ignored)
    int pos0;          // position of the call's first token in its sequence (context parallelism)
    union {
        double align_;
        unsigned char bytes[OP_OPT_BYTES];
    } opt;  // the op's option block, filled from its OpOption specs (op_options_apply)
} OpShape;

#ifdef __cplusplus
#define OP_STATIC_ASSERT static_assert
#else
#define OP_STATIC_ASSERT _Static_assert
#endif
// Reads an op's option struct out of a shape: OPT_OF(LinearOpts, s).
#define OPT_OF(type, s) op_opt_read_##type(s)
#define OP_OPTIONS_STRUCT(type)                                                        \
    static inline type op_opt_read_##type(const OpShape *s_) {                         \
        type o_;                                                                       \
        OP_STATIC_ASSERT(sizeof(type) <= OP_OPT_BYTES, #type " exceeds OP_OPT_BYTES"); \
        memcpy(&o_, s_->opt.bytes, sizeof(o_));                                        \
        return o_;                                                                     \
    }

// One option of an op, declared once: the config key `mixer.<key>`, --help, the resolved
// config.yaml, checkpoint metadata and validation messages all come from it.
typedef enum { OPT_INT, OPT_FLOAT, OPT_BOOL, OPT_ENUM } OptType;
enum { OPT_ZERO_IS_SEQ_LEN = 1 };  // flags: 0 stands for the run's data.seq_len
typedef struct {
    const char *key;      // under mixer. (NULL ends a list)
    OptType type;         // OPT_INT/OPT_BOOL/OPT_ENUM stored as int, OPT_FLOAT as double
    const char *def;      // default, as written in YAML
    const char *choices;  // OPT_ENUM: "a|b|c" (the stored value is the index)
    double lo, hi;        // OPT_INT / OPT_FLOAT: allowed range
    size_t offset;        // in the op's option struct
    int flags;
    const char *help;
} OpOption;

// mixer.causal, declared alike by every row that has a non-causal (bidirectional) form: true,
// token t reads tokens s <= t; false, every token reads every token of its sequence (the call's
// T). A row without this option has no non-causal form.
#define MIXER_CAUSAL_OPTION(offset_)                                                       \
    {                                                                                      \
        "causal", OPT_BOOL, "true", NULL, 0, 1, (offset_), 0,                              \
            "causal (token t reads s <= t) or bidirectional (every token of the sequence)" \
    }

// Parses `value` for option o into the option block (0, or -1 with a message naming the key).
int op_option_parse(const OpOption *o, const char *value, void *block, char *err, size_t errlen);
// Writes option o's value in the block as YAML would spell it.
void op_option_format(const OpOption *o, const void *block, char *out, size_t n);
// Fills a shape's option block: the defaults, then the row's fixed values, then `overrides`
// ("key=value key=value", keys without the mixer. prefix). seq_len resolves
// OPT_ZERO_IS_SEQ_LEN options. 0, or -1 with one line in err.
int op_options_apply(const OpOption *opts, const char *fixed, const char *overrides, int seq_len,
                     OpShape *s, char *err, size_t errlen);
const OpOption *op_option_find(const OpOption *opts, const char *key);
// The value of an int-stored option (OPT_INT, OPT_BOOL, OPT_ENUM) `key` in an option block, or
// `absent` when the list has no such key (e.g. mixer.causal: rows without it are causal).
int op_option_int(const OpOption *opts, const char *key, const OpShape *s, int absent);
// Index of value in "a|b|c" choices, -1 when absent (the config's enums use it too).
int op_choice_index(const char *choices, const char *value);

enum { OP_MAX_IO = 8, OP_MAX_TESTS = 10, OP_MAX_PARAMS = 6, OP_MAX_AUX = 40, OP_MAX_AUX_COLS = 4 };

// A named figure a mixer core reports about itself (feature-map time, state energies, ...).
typedef struct {
    char name[40];
    double value;
} OpAux;

// How `madtrain report` turns a figure into a column: every figure whose name is `key`, or
// starts with `key` followed by '_' (families such as offdiag_energy_depth_1..J), over all
// layers of a run, reduced by `reduce`.
typedef enum { AUX_SUM, AUX_MEAN, AUX_LAST, AUX_MAX } AuxReduce;
typedef struct {
    const char *key;  // NULL ends the list
    AuxReduce reduce;
    const char *column;  // the report's column title
    int digits;
} OpAuxCol;

// A test shape: the dimensions, and for ops with options the option values as a config would
// give them (resolved through the same validation the trainer uses).
typedef struct {
    OpShape s;
    const char *opts;  // "key=value ..." (NULL: the defaults)
} OpTest;

// A mixer core op reads q|k|v as input 0, the per-token projection x W_x^T [B, T, E] as
// input 1 (E from sizes(); 0 when the op needs none) and its own parameters as inputs 2...
enum { CORE_IN_QKV = 0, CORE_IN_XPROJ = 1, CORE_IN_PARAMS = 2 };

typedef enum {
    INIT_NORMAL,           // N(0, init_std)
    INIT_NORMAL_RESIDUAL,  // N(0, init_std / sqrt(2 L))
    INIT_ONES,
    INIT_ZEROS,
    INIT_CONST,        // every element = init_value
    INIT_CUSTOM,       // filled by its owner: the op's init_param, or the mixer layer
    INIT_UNIFORM,      // U(-init_value, init_value): nn.Linear's default (model.init pytorch)
    INIT_NORMAL_UNIT,  // N(0, 1): nn.Embedding's default (model.init pytorch)
} InitKind;

// A parameter an op owns (random projections, learned rows, fixed bases, ...).
// Non-trainable ones are buffers: in the parameter table (so checkpoints hold them) but
// never updated by the optimizer and never given a gradient.
typedef struct {
    const char *name;
    int rows, cols;  // cols = 0: a vector
    int init;        // InitKind
    double init_value;
    int trainable, decay;
    int redraw;  // regenerated every mixer.redraw_interval steps (random projections)
} OpParam;

// Sizes of a mixer core's inputs: q|k|v [B,T,3C], the per-token projection [B,T,E] and the
// op's parameters p[0..n); output [B,T,C].
static inline void op_core_sizes(const OpShape *s, size_t *in, size_t *out, size_t E,
                                 const OpParam *p, int n) {
    size_t N = (size_t)s->B * s->T;
    in[CORE_IN_QKV] = N * 3 * s->C, in[CORE_IN_XPROJ] = N * E;
    for (int i = 0; i < n; i++)
        in[CORE_IN_PARAMS + i] = (size_t)p[i].rows * (p[i].cols > 0 ? p[i].cols : 1);
    out[0] = N * s->C;
}

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
