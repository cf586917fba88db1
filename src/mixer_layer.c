// The layer around every mixer's core op:
//   qkv = x W_qkv^T [+ b_qkv] -> [short causal conv] -> [rotary] -> core(qkv, x W_x^T, op params)
//   -> [gate] -> W_o [+ b_o]   (biases: model.proj_bias).
// "qkv" is W_in = 3C wide per token (q|k|v) unless the core's sizes() declare another input
// width, and the core's output W_out = C unless declared otherwise (slot.in_w, slot.out_w).
// Compiled twice (float and double) like the kernels.
#include <stdlib.h>
#include <string.h>

#include "../kernels/real.h"
#include "model.h"

#define Op F(OpDef)

// Activation layout of one mixer layer, as offsets from its acts pointer.
typedef struct {
    size_t qkv, qkv_conv, qkv_rot, xproj, core_saved, core_out, gate_pre, gated, total;
    size_t halo, carry_in;    // context parallelism: the previous slice's conv rows, entering state
    size_t carry_n;           // the core's state elements (0: no context parallelism)
    size_t prefix, prefix_w;  // context parallelism of attention: the earlier slices' [B, pos0, w]
    size_t s_dcore, s_dcore_in, s_dxproj, s_drot, s_dconv, s_dgated, s_dgate_pre, s_total;
    const Op *core;
    OpShape shape;
    MixerSlots slot;
    int rope, gate, K;
} MixerLayout;

static int packed(const Segments *seg) {
    return seg && seg->n > 0;
}

// Call i of the layer's per-sequence ops (convolution, rotary, core): the whole [B, T] in one
// call, or packed segment i (B = 1, T = its length), starting at token row t0 of [B*T].
typedef struct {
    size_t t0;
    int B, T;
} Span;

static int n_spans(const Segments *seg) {
    return packed(seg) ? seg->n : 1;
}

static Span span(const Segments *seg, int B, int T, int i) {
    if (!packed(seg)) return (Span){0, B, T};
    return (Span){(size_t)seg->row[i] * T + seg->start[i], 1, seg->len[i]};
}

// The core's saved activations of a span; the spans' blocks sit one after another (an op's
// saved size need not be linear in T: per-chunk states).
static size_t span_saved(const ModelConfig *cfg, int layer, const Op *core, Span sp) {
    size_t in[OP_MAX_IO], out[OP_MAX_IO], saved = 0;
    OpShape s = mixer_core_shape(cfg, layer, sp.B, sp.T);
    core->sizes(&s, in, out, &saved);
    return saved;
}

// k: the backend whose core op runs (its saved activations may differ from the CPU one's).
static MixerLayout layout(const ModelConfig *cfg, int layer, const F(Backend) * k, int B, int T,
                          const Segments *seg) {
    MixerLayout l;
    memset(&l, 0, sizeof(l));
    size_t N = (size_t)B * T, C = cfg->d_model, in[OP_MAX_IO], out[OP_MAX_IO], saved = 0;
    l.core = k->op_row(cfg->mixer[layer]);
    l.shape = mixer_core_shape(cfg, layer, B, T);
    l.core->sizes(&l.shape, in, out, &saved);
    if (packed(seg)) {
        saved = 0;
        for (int i = 0; i < seg->n; i++)
            saved += span_saved(cfg, layer, l.core, span(seg, B, T, i));
    }
    l.slot = mixer_slots(cfg, layer);
    l.rope = cfg->rope[layer];
    l.gate = cfg->gate;
    l.K = cfg->conv_kernel;
    size_t E = (size_t)l.slot.E, W = (size_t)l.slot.in_w, O = (size_t)l.slot.out_w, off = 0;
    (void)C;
    l.qkv = off, off += N * W;
    l.qkv_conv = off, off += l.K ? N * W : 0;
    l.qkv_rot = off, off += l.rope ? N * W : 0;
    l.xproj = off, off += N * E;
    l.core_saved = off, off += saved;
    l.core_out = off, off += N * O;
    l.gate_pre = off, off += l.gate ? N * O : 0;
    l.gated = off, off += l.gate ? N * O : 0;
    if (cfg->cp.size > 1) {
        // a row without a carry is refused by mixer_check before any step runs
        l.carry_n = l.core->carry_size ? l.core->carry_size(&l.shape) : 0;
        l.prefix_w = !l.carry_n && l.core->prefix_width ? l.core->prefix_width(&l.shape) : 0;
        l.halo = off, off += l.K ? (size_t)B * (l.K - 1) * W : 0;
        l.carry_in = off, off += l.carry_n;
        l.prefix = off, off += (size_t)B * cfg->cp.pos0 * l.prefix_w;
    }
    l.total = off;
    off = 0;
    l.s_dcore = off, off += N * O;
    l.s_dcore_in = off, off += N * W;
    l.s_dxproj = off, off += N * E;
    l.s_drot = off, off += l.rope ? N * W : 0;
    l.s_dconv = off, off += l.K ? N * W : 0;
    l.s_dgated = off, off += l.gate ? N * O : 0;
    l.s_dgate_pre = off, off += l.gate ? N * O : 0;
    l.s_total = off;
    return l;
}

size_t F(mixer_acts_size)(const ModelConfig *cfg, int layer, const F(Backend) * k, int B, int T,
                          const Segments *seg) {
    return layout(cfg, layer, k, B, T, seg).total;
}

size_t F(mixer_scratch_size)(const ModelConfig *cfg, int layer, const F(Backend) * k, int B,
                             int T) {
    return layout(cfg, layer, k, B, T, NULL).s_total;
}

int F(mixer_check)(const ModelConfig *cfg, int layer, const F(Backend) * k, char *err,
                   size_t errlen) {
    const Op *core = k->op_row(cfg->mixer[layer]);
    if (!core) {
        snprintf(err, errlen, "model.mixer %s has no %s kernel yet; use device: cpu",
                 F(OPS)[cfg->mixer[layer]]->name, k->name);
        return -1;
    }
    OpShape s = mixer_core_shape(cfg, layer, 1, cfg->seq_len > 0 ? cfg->seq_len : 1);
    s.pos0 = 0;  // the whole sequence, also when a rank holds a slice of it
    MixerSlots slot = mixer_slots(cfg, layer);
    if (cfg->cp.size > 1) {
        const char *name = F(OPS)[cfg->mixer[layer]]->name;
        // A bidirectional form (an option `causal` set false) reads the whole sequence.
        int bidirectional = !op_option_int(F(OPS)[cfg->mixer[layer]]->options, "causal", &s, 1);
        int carries = core->carry_size && core->forward_carry && core->backward_carry;
        int prefixed = core->prefix_width && core->prefix_pack && core->prefix_unpack_add &&
                       core->forward_prefix && core->backward_prefix;
        if (!(carries || prefixed) || bidirectional) {
            snprintf(err, errlen,
                     "parallel.context: model.mixer %s has no context-parallel form on %s (%s); "
                     "use parallel.context: 1",
                     name, k->name,
                     bidirectional ? "mixer.causal false reads the whole sequence"
                                   : "it neither carries a state across a cut of the sequence "
                                     "nor reads the earlier slices' keys and values");
            return -1;
        }
        int Tl = cfg->seq_len / cfg->cp.size;
        if (cfg->conv_kernel > 1 && Tl < cfg->conv_kernel - 1) {
            snprintf(err, errlen,
                     "parallel.context: each rank's slice (%d tokens) is shorter than the short "
                     "convolution's window (model.conv_kernel %d)",
                     Tl, cfg->conv_kernel);
            return -1;
        }
    }
    if (cfg->rope[layer] && slot.in_w != 3 * cfg->d_model) {
        snprintf(err, errlen,
                 "model.rope=on needs q|k|v inputs; mixer %s reads none; set model.rope=off",
                 F(OPS)[cfg->mixer[layer]]->name);
        return -1;
    }
    return core->check ? core->check(&s, err, errlen) : 0;
}

void F(mixer_init_param)(const ModelConfig *cfg, int layer, int index, uint64_t key, real *w) {
    MixerSlots slot = mixer_slots(cfg, layer);
    if (index == slot.wconv) {
        int K = cfg->conv_kernel;
        for (int c = 0; c < slot.in_w; c++)
            for (int j = 0; j < K; j++) w[c * K + j] = j == K - 1;
        return;
    }
    const Op *core = F(OPS)[cfg->mixer[layer]];
    OpShape s = mixer_core_shape(cfg, layer, 1, 1);
    core->init_param(&s, index - slot.core, key, w);
}

// The core op's inputs: q|k|v, the per-token projection and the op's parameters.
static void core_inputs(const MixerLayout *l, const real *qkv, const real *xproj, real *const *w,
                        const real **in) {
    in[CORE_IN_QKV] = qkv;
    in[CORE_IN_XPROJ] = l->slot.E ? xproj : NULL;
    for (int i = 0; i < l->slot.n_core; i++) in[CORE_IN_PARAMS + i] = w[l->slot.core + i];
}

// ---- context parallelism (parallel.context) ---------------------------------------------------
// The slices of a sequence sit on consecutive ranks of a group (ModelConfig.cp). Two things
// cross a cut: the short convolution's window (the previous slice's last K - 1 rows of q|k|v,
// the halo) and the core's state. The state entering slice r is
//   S_in(r) = A(r-1) S_in(r-1) + L(r-1),   S_in(0) = 0,
// where L is a slice's own contribution (its final state from zero) and A the product of its
// transitions (carry_through): every rank computes L at once, then only the cheap
// A S + L travels down the group (an exclusive scan of states over ranks, as in LASP), then
// each slice runs from its S_in. Backward mirrors it: the gradient leaving slice r (what the
// later slices' outputs send back through S_in(r + 1)) climbs the group as
//   dS_in(r) = direct(r) + A(r)^T dS_in(r + 1),
// direct(r) being the gradient slice r's own outputs send into S_in(r).
static int cp_prev(const ContextGroup *g) {
    return g->rank > 0 ? g->first + g->rank - 1 : -1;
}
static int cp_next(const ContextGroup *g) {
    return g->rank < g->size - 1 ? g->first + g->rank + 1 : -1;
}

// halo [B, K-1, W] = the previous slice's last K - 1 rows of qkv [B, T, W] (zero on the first).
static void cp_halo_forward(const ContextGroup *g, const real *qkv, real *halo, int B, int T, int W,
                            int K) {
    size_t rows = (size_t)K - 1, n = (size_t)B * rows * W;
    real *tail = malloc(sizeof(real) * n);
    for (int b = 0; b < B; b++)
        memcpy(tail + b * rows * W, qkv + ((size_t)b * T + T - rows) * W, sizeof(real) * rows * W);
    memset(halo, 0, sizeof(real) * n);
    comm_sendrecv_bytes(g->comm, tail, sizeof(real) * n, cp_next(g), halo, sizeof(real) * n,
                        cp_prev(g));
    free(tail);
}

// The convolution's taps that reach before the slice: out[b, t] += w[c, j] x[b, t - K + 1 + j]
// with x at negative positions read from the halo.
static void cp_conv_halo_forward(real *out, const real *halo, const real *w, int B, int T, int W,
                                 int K) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < K - 1 && t < T; t++)
            for (int j = 0; j < K; j++) {
                int idx = t - K + 1 + j;  // < 0: the previous slice's row K - 1 + idx
                if (idx >= 0) continue;
                const real *h = halo + ((size_t)b * (K - 1) + K - 1 + idx) * W;
                real *o = out + ((size_t)b * T + t) * W;
                for (int c = 0; c < W; c++) o[c] += w[c * K + j] * h[c];
            }
}

// Their gradient: dw here, the halo's to the previous slice, and the next slice's gradient of
// this slice's tail added to dqkv.
static void cp_conv_halo_backward(const ContextGroup *g, real *dqkv, real *dw, const real *dout,
                                  const real *halo, const real *w, int B, int T, int W, int K) {
    size_t rows = (size_t)K - 1, n = (size_t)B * rows * W;
    real *dhalo = calloc(n, sizeof(real)), *dtail = calloc(n, sizeof(real));
    for (int b = 0; b < B; b++)
        for (int t = 0; t < K - 1 && t < T; t++)
            for (int j = 0; j < K; j++) {
                int idx = t - K + 1 + j;
                if (idx >= 0) continue;
                size_t hr = ((size_t)b * (K - 1) + K - 1 + idx) * W;
                const real *d = dout + ((size_t)b * T + t) * W;
                for (int c = 0; c < W; c++)
                    dhalo[hr + c] += d[c] * w[c * K + j], dw[c * K + j] += d[c] * halo[hr + c];
            }
    comm_sendrecv_bytes(g->comm, dhalo, sizeof(real) * n, cp_prev(g), dtail, sizeof(real) * n,
                        cp_next(g));
    if (cp_next(g) >= 0)
        for (int b = 0; b < B; b++)
            for (size_t i = 0; i < rows * W; i++)
                dqkv[((size_t)b * T + T - rows) * W + i] += dtail[b * rows * W + i];
    free(dhalo), free(dtail);
}

// The core on this rank's slice: state_in [carry_n] receives the entering state (kept in the
// activations for backward). The group's first rank needs no entering state and its last sends
// none on: each runs the core once; the ones between run it twice (their own contribution,
// then from the entering state).
static void cp_core_forward(const MixerLayout *l, const ContextGroup *g, const OpShape *s,
                            const real *const *in, real *const *out, real *saved, real *state_in) {
    size_t n = l->carry_n, bytes = sizeof(real) * n;
    real *local = cp_next(g) >= 0 ? malloc(bytes) : NULL;
    if (local) l->core->forward_carry(s, in, out, saved, NULL, local);
    memset(state_in, 0, bytes);
    comm_sendrecv_bytes(g->comm, NULL, 0, -1, state_in, bytes, cp_prev(g));
    if (local) {
        real *leaving = malloc(bytes);
        memcpy(leaving, state_in, bytes);
        if (l->core->carry_through) l->core->carry_through(s, in, leaving, 0);
        for (size_t i = 0; i < n; i++) leaving[i] += local[i];
        comm_sendrecv_bytes(g->comm, leaving, bytes, cp_next(g), NULL, 0, -1);
        free(leaving);
    }
    if (!local || cp_prev(g) >= 0) l->core->forward_carry(s, in, out, saved, state_in, NULL);
    free(local);
}

static void cp_core_backward(const MixerLayout *l, const ContextGroup *g, const OpShape *s,
                             const real *const *in, const real *const *out, const real *saved,
                             const real *const *dout, real *const *din, const real *state_in) {
    size_t n = l->carry_n, bytes = sizeof(real) * n;
    real *leaving = NULL;  // the gradient of the state leaving this slice (from the next rank)
    real *entering = cp_prev(g) >= 0 ? calloc(n, sizeof(real)) : NULL;
    if (cp_next(g) >= 0) {
        if (entering) {  // direct(r): a backward into throwaway gradients
            size_t sz[OP_MAX_IO] = {0}, osz[OP_MAX_IO], sv;
            l->core->sizes(s, sz, osz, &sv);
            real *scratch[OP_MAX_IO] = {0};
            for (int i = 0; i < l->core->n_in; i++)
                scratch[i] = sz[i] && din[i] ? calloc(sz[i], sizeof(real)) : NULL;
            l->core->backward_carry(s, in, out, saved, dout, scratch, state_in, NULL, entering);
            for (int i = 0; i < l->core->n_in; i++) free(scratch[i]);
        }
        leaving = calloc(n, sizeof(real));
        comm_sendrecv_bytes(g->comm, NULL, 0, -1, leaving, bytes, cp_next(g));
        if (entering) {
            real *through = malloc(bytes);
            memcpy(through, leaving, bytes);
            if (l->core->carry_through) l->core->carry_through(s, in, through, 1);
            for (size_t i = 0; i < n; i++) entering[i] += through[i];
            free(through);
        }
        l->core->backward_carry(s, in, out, saved, dout, din, state_in, leaving, NULL);
    } else {  // the last slice: its full backward gives direct(r) = dS_in(r)
        l->core->backward_carry(s, in, out, saved, dout, din, state_in, NULL, entering);
    }
    if (entering) comm_sendrecv_bytes(g->comm, entering, bytes, cp_prev(g), NULL, 0, -1);
    free(leaving), free(entering);
}

// Attention (an op with a prefix form): slice r reads the keys and values of every token before
// it. They travel down the group as one growing block: rank r receives [B, pos0, w] from r - 1
// (every earlier slice's rows), keeps it for backward, and sends r + 1 that block with its own
// [B, T, w] rows appended. Backward climbs back: rank r receives from r + 1 the gradient of
// [B, pos0 + T, w] summed over the later slices, adds its own rows' part to its input gradient,
// sums the rest with its own prefix gradient and sends that up to r - 1.
static void cp_prefix_forward(const MixerLayout *l, const ContextGroup *g, const OpShape *s,
                              const real *const *in, real *const *out, real *saved, real *prefix) {
    size_t w = l->prefix_w, B = (size_t)s->B, P = (size_t)g->pos0, T = (size_t)s->T;
    comm_sendrecv_bytes(g->comm, NULL, 0, -1, prefix, sizeof(real) * B * P * w, cp_prev(g));
    if (cp_next(g) >= 0) {
        real *own = malloc(sizeof(real) * B * T * w),
             *block = malloc(sizeof(real) * B * (P + T) * w);
        l->core->prefix_pack(s, in, own);
        for (size_t b = 0; b < B; b++) {
            memcpy(block + b * (P + T) * w, prefix + b * P * w, sizeof(real) * P * w);
            memcpy(block + (b * (P + T) + P) * w, own + b * T * w, sizeof(real) * T * w);
        }
        comm_sendrecv_bytes(g->comm, block, sizeof(real) * B * (P + T) * w, cp_next(g), NULL, 0,
                            -1);
        free(own), free(block);
    }
    l->core->forward_prefix(s, in, out, saved, P ? prefix : NULL);
}

static void cp_prefix_backward(const MixerLayout *l, const ContextGroup *g, const OpShape *s,
                               const real *const *in, const real *const *out, const real *saved,
                               const real *const *dout, real *const *din, const real *prefix) {
    size_t w = l->prefix_w, B = (size_t)s->B, P = (size_t)g->pos0, T = (size_t)s->T;
    real *dprefix = calloc(B * P * w + 1, sizeof(real));
    l->core->backward_prefix(s, in, out, saved, dout, din, P ? prefix : NULL, dprefix);
    if (cp_next(g) >= 0) {
        real *dblock = calloc(B * (P + T) * w, sizeof(real)),
             *down = malloc(sizeof(real) * B * T * w);
        comm_sendrecv_bytes(g->comm, NULL, 0, -1, dblock, sizeof(real) * B * (P + T) * w,
                            cp_next(g));
        for (size_t b = 0; b < B; b++) {
            for (size_t i = 0; i < P * w; i++)
                dprefix[b * P * w + i] += dblock[b * (P + T) * w + i];
            memcpy(down + b * T * w, dblock + (b * (P + T) + P) * w, sizeof(real) * T * w);
        }
        l->core->prefix_unpack_add(s, down, din);
        free(dblock), free(down);
    }
    comm_sendrecv_bytes(g->comm, dprefix, sizeof(real) * B * P * w, cp_prev(g), NULL, 0, -1);
    free(dprefix);
}

int F(mixer_aux)(const ModelConfig *cfg, int layer, const F(Backend) * k, int B, int T,
                 const Segments *seg, real *const *w, const real *acts, OpAux *out) {
    MixerLayout l = layout(cfg, layer, k, B, T, seg);
    const Op *cpu_core = F(OPS)[cfg->mixer[layer]];  // the figures are host code
    size_t N = (size_t)B * T, bad = 0;
    const real *core_in = acts + (l.rope ? l.qkv_rot : l.K ? l.qkv_conv : l.qkv);
    for (size_t i = 0; i < N * l.slot.in_w; i++) bad += !isfinite(core_in[i]);
    for (size_t i = 0; i < N * l.slot.out_w; i++) bad += !isfinite(acts[l.core_out + i]);
    out[0] = (OpAux){.name = "nonfinite", .value = (double)bad};
    if (!cpu_core->aux) return 1;
    // Packed: the core's figures of the first row's first example (they describe the
    // parameters on typical inputs; a figure over rows that mix examples would not).
    OpShape shape = l.shape;
    if (packed(seg)) shape = mixer_core_shape(cfg, layer, 1, seg->len[0]);
    const real *inputs[OP_MAX_IO];
    core_inputs(&l, core_in, acts + l.xproj, w, inputs);
    return 1 + cpu_core->aux(&shape, inputs, out + 1);
}

void F(mixer_forward)(const ModelConfig *cfg, int layer, const F(Backend) * k, int B, int T,
                      const Segments *seg, real *y, const real *x, real *const *w, real *acts) {
    MixerLayout l = layout(cfg, layer, k, B, T, seg);
    int N = B * T, C = cfg->d_model, E = l.slot.E, W = l.slot.in_w, O = l.slot.out_w;
    real *qkv = acts + l.qkv, *core_in = qkv, *core_out = acts + l.core_out, *readout = core_out;
    k->matmul_forward(qkv, x, w[l.slot.wqkv], N, C, W);
    if (l.slot.bqkv >= 0) k->bias_forward(qkv, w[l.slot.bqkv], N, W);
    // Per span (one over [B, T], or one per packed example), on its rows of the same buffers.
    if (l.K) {
        for (int i = 0; i < n_spans(seg); i++) {
            Span sp = span(seg, B, T, i);
            k->conv_causal_forward(acts + l.qkv_conv + sp.t0 * W, core_in + sp.t0 * W,
                                   w[l.slot.wconv], sp.B, sp.T, W, l.K);
        }
        if (cfg->cp.size > 1 && l.K > 1) {
            cp_halo_forward(&cfg->cp, core_in, acts + l.halo, B, T, W, l.K);
            cp_conv_halo_forward(acts + l.qkv_conv, acts + l.halo, w[l.slot.wconv], B, T, W, l.K);
        }
        core_in = acts + l.qkv_conv;
    }
    if (l.rope) {
        for (int i = 0; i < n_spans(seg); i++) {
            Span sp = span(seg, B, T, i);
            k->rope_forward(acts + l.qkv_rot + sp.t0 * W, core_in + sp.t0 * W, sp.B, sp.T, C,
                            cfg->n_heads, cfg->rope_base, cfg->cp.pos0);
        }
        core_in = acts + l.qkv_rot;
    }
    if (E) k->matmul_forward(acts + l.xproj, x, w[l.slot.wx], N, C, E);
    const real *inputs[OP_MAX_IO];
    core_inputs(&l, core_in, acts + l.xproj, w, inputs);
    size_t saved_at = l.core_saved;
    for (int i = 0; i < n_spans(seg); i++) {
        Span sp = span(seg, B, T, i);
        OpShape s = mixer_core_shape(cfg, layer, sp.B, sp.T);
        const real *span_inputs[OP_MAX_IO];
        memcpy(span_inputs, inputs, sizeof(inputs));
        span_inputs[CORE_IN_QKV] = inputs[CORE_IN_QKV] + sp.t0 * W;
        if (E) span_inputs[CORE_IN_XPROJ] = inputs[CORE_IN_XPROJ] + sp.t0 * E;
        real *outputs[1] = {core_out + sp.t0 * O};
        if (l.carry_n)
            cp_core_forward(&l, &cfg->cp, &s, span_inputs, outputs, acts + saved_at,
                            acts + l.carry_in);
        else if (l.prefix_w)
            cp_prefix_forward(&l, &cfg->cp, &s, span_inputs, outputs, acts + saved_at,
                              acts + l.prefix);
        else
            l.core->forward(&s, span_inputs, outputs, acts + saved_at);
        saved_at += span_saved(cfg, layer, l.core, sp);
    }
    if (l.gate) {
        k->matmul_forward(acts + l.gate_pre, x, w[l.slot.wg], N, C, O);
        if (l.slot.bg >= 0) k->bias_forward(acts + l.gate_pre, w[l.slot.bg], N, O);
        readout = acts + l.gated;
        k->gate_forward(readout, acts + l.gate_pre, core_out, (size_t)N * O);
    }
    k->matmul_forward(y, readout, w[l.slot.wo], N, O, C);
    if (l.slot.bo >= 0) k->bias_forward(y, w[l.slot.bo], N, C);
}

void F(mixer_backward)(const ModelConfig *cfg, int layer, const F(Backend) * k, int B, int T,
                       const Segments *seg, real *dx, real *const *dw, const real *dy,
                       const real *x, real *const *w, const real *acts, real *scratch) {
    MixerLayout l = layout(cfg, layer, k, B, T, seg);
    int N = B * T, C = cfg->d_model, E = l.slot.E, W = l.slot.in_w, O = l.slot.out_w;
    const real *qkv = acts + l.qkv, *core_in = qkv;
    if (l.K) core_in = acts + l.qkv_conv;
    if (l.rope) core_in = acts + l.qkv_rot;
    const real *core_out = acts + l.core_out;
    real *dcore = scratch + l.s_dcore;
    k->zero(scratch, l.s_total);
    if (l.slot.bo >= 0) k->bias_backward(dw[l.slot.bo], dy, N, C);
    if (l.gate) {
        real *dgated = scratch + l.s_dgated, *dgate_pre = scratch + l.s_dgate_pre;
        k->matmul_backward(dgated, dw[l.slot.wo], dy, acts + l.gated, w[l.slot.wo], N, O, C);
        k->gate_backward(dgate_pre, dcore, dgated, acts + l.gate_pre, core_out, (size_t)N * O);
        if (l.slot.bg >= 0) k->bias_backward(dw[l.slot.bg], dgate_pre, N, O);
        k->matmul_backward(dx, dw[l.slot.wg], dgate_pre, x, w[l.slot.wg], N, C, O);
    } else {
        k->matmul_backward(dcore, dw[l.slot.wo], dy, core_out, w[l.slot.wo], N, O, C);
    }
    real *dcore_in = scratch + l.s_dcore_in, *dxproj = scratch + l.s_dxproj;
    const real *inputs[OP_MAX_IO];
    core_inputs(&l, core_in, acts + l.xproj, w, inputs);
    real *dinputs[OP_MAX_IO] = {dcore_in, E ? dxproj : NULL};
    for (int i = 0; i < l.slot.n_core; i++) dinputs[CORE_IN_PARAMS + i] = dw[l.slot.core + i];
    size_t saved_at = l.core_saved;  // the parameter gradients accumulate over the spans
    for (int i = 0; i < n_spans(seg); i++) {
        Span sp = span(seg, B, T, i);
        OpShape s = mixer_core_shape(cfg, layer, sp.B, sp.T);
        const real *span_inputs[OP_MAX_IO];
        real *span_dinputs[OP_MAX_IO];
        memcpy(span_inputs, inputs, sizeof(inputs));
        memcpy(span_dinputs, dinputs, sizeof(dinputs));
        span_inputs[CORE_IN_QKV] = inputs[CORE_IN_QKV] + sp.t0 * W;
        span_dinputs[CORE_IN_QKV] = dcore_in + sp.t0 * W;
        if (E) {
            span_inputs[CORE_IN_XPROJ] = inputs[CORE_IN_XPROJ] + sp.t0 * E;
            span_dinputs[CORE_IN_XPROJ] = dxproj + sp.t0 * E;
        }
        const real *core_outputs[1] = {core_out + sp.t0 * O};
        const real *core_douts[1] = {dcore + sp.t0 * O};
        if (l.carry_n)
            cp_core_backward(&l, &cfg->cp, &s, span_inputs, core_outputs, acts + saved_at,
                             core_douts, span_dinputs, acts + l.carry_in);
        else if (l.prefix_w)
            cp_prefix_backward(&l, &cfg->cp, &s, span_inputs, core_outputs, acts + saved_at,
                               core_douts, span_dinputs, acts + l.prefix);
        else
            l.core->backward(&s, span_inputs, core_outputs, acts + saved_at, core_douts,
                             span_dinputs);
        saved_at += span_saved(cfg, layer, l.core, sp);
    }
    if (E) k->matmul_backward(dx, dw[l.slot.wx], dxproj, x, w[l.slot.wx], N, C, E);
    real *dqkv = dcore_in;
    if (l.rope) {
        for (int i = 0; i < n_spans(seg); i++) {
            Span sp = span(seg, B, T, i);
            k->rope_backward(scratch + l.s_drot + sp.t0 * W, dqkv + sp.t0 * W, sp.B, sp.T, C,
                             cfg->n_heads, cfg->rope_base, cfg->cp.pos0);
        }
        dqkv = scratch + l.s_drot;
    }
    if (l.K) {
        for (int i = 0; i < n_spans(seg); i++) {
            Span sp = span(seg, B, T, i);
            k->conv_causal_backward(scratch + l.s_dconv + sp.t0 * W, dw[l.slot.wconv],
                                    dqkv + sp.t0 * W, qkv + sp.t0 * W, w[l.slot.wconv], sp.B, sp.T,
                                    W, l.K);
        }
        if (cfg->cp.size > 1 && l.K > 1)
            cp_conv_halo_backward(&cfg->cp, scratch + l.s_dconv, dw[l.slot.wconv], dqkv,
                                  acts + l.halo, w[l.slot.wconv], B, T, W, l.K);
        dqkv = scratch + l.s_dconv;
    }
    if (l.slot.bqkv >= 0) k->bias_backward(dw[l.slot.bqkv], dqkv, N, W);
    k->matmul_backward(dx, dw[l.slot.wqkv], dqkv, x, w[l.slot.wqkv], N, C, W);
}
