// `madtrain bench`: training-step throughput of each mixer at fixed model shapes, on the
// configured device. Per (shape, mixer): tokens/s over timed steps (forward + backward + AdamW,
// after warm-up, timed by the backend's timer: CUDA events on a GPU), model FLOPs per token, the
// achieved FLOP/s as a fraction of the device's matrix-product peak measured in the same run (MFU),
// peak memory (the buffers the backend allocated: parameters, gradients, moments, activations), and
// the step time relative to the first mixer (the peer in the same run).
#include "bench.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "optim.h"
#include "rng.h"
#include "train.h"
#include "util.h"

void openblas_set_num_threads(int);

typedef struct {
    const char *name;
    int d_model, n_layers, n_heads, seq_len, vocab, batch;
    const char *doc;
} BenchShape;

static const BenchShape SHAPES[] = {
    {"gpt2-small", 768, 12, 12, 1024, 50257, 8, "GPT-2 small: d 768, 12 layers, 12 heads, T 1024"},
    {"gpt2-small-4k", 768, 12, 12, 4096, 50257, 2, "GPT-2 small at T 4096"},
    {"e008", 32, 2, 2, 128, 64, 64, "E008: d 32, 2 layers, 2 heads, T 128, batch 64"},
    {"tiny", 128, 2, 4, 256, 512, 8, "a CPU-sized model: d 128, 2 layers, 4 heads, T 256"},
};
enum { N_SHAPES = sizeof(SHAPES) / sizeof(SHAPES[0]) };

// Model FLOPs per trained token, llm.c's convention: 6 per matmul weight (forward 2, backward 4)
// plus the mixer core at 3x its forward, as its row of the op table counts it (every mixer
// row declares its FLOPs; the per-token projection W_x of a core that reads one is a matmul).
double bench_flops_per_token(const ModelConfig *mc, int T) {
    double C = mc->d_model, V = mc->vocab_size, mm = 0, core = 0;
    for (int l = 0; l < mc->n_layers; l++) {
        MixerSlots slot = mixer_slots(mc, l);
        mm += C * (slot.in_w + slot.out_w) + (mc->gate ? C * slot.out_w : 0) + (double)slot.E * C;
        if (mc->mlp != MLP_NONE) mm += (mc->mlp == MLP_SWIGLU ? 3 : 2) * C * mc->d_ff;
        OpShape s = mixer_core_shape(mc, l, 1, T);
        core += OPS_f32[mc->mixer[l]]->flops(&s);
    }
    mm += V * C;  // LM head (the embedding lookup is no matmul)
    return 6 * mm + 3 * core;
}

static void bench_usage(FILE *f) {
    fprintf(f,
            "usage: madtrain bench [--shapes a,b] [--mixers softmax,linear] [--steps N] "
            "[--warmup N] [--batch B] [--ranks 1,2,4] [--out FILE.jsonl] [key=value ...]\n\n"
            "Times training steps (forward, backward, AdamW; no communication) of each mixer at\n"
            "each shape on the configured device (key=value: device=cpu|cuda, model.mlp=...,\n"
            "mixer.chunk=..., cpu.threads=...). Shapes (default: gpt2-small,gpt2-small-4k,e008\n"
            "on cuda; tiny,e008 on cpu). --ranks 1,2,4 adds the peak memory of one rank at each\n"
            "world size (its share of the batch; moments whole or its ZeRO-1 slice).\n\n"
            "madtrain bench --cores gla,deltanet [--T 2048,4096,8192,16384] [--tokens 65536]\n"
            "[--heads 16] [--head-dim 64] [--steps N] [--warmup N] [--out FILE.jsonl]: forward\n"
            "and forward + backward of each mixer's core op alone (no projections), B x T =\n"
            "tokens fixed, the median of N calls (the peer of bench/peer_fla.py). Shapes:\n");
    for (int i = 0; i < N_SHAPES; i++)
        fprintf(f, "  %-14s %s (batch %d)\n", SHAPES[i].name, SHAPES[i].doc, SHAPES[i].batch);
}

typedef struct {
    double tokens_per_s, step_ms, flops_per_token, mfu;
    size_t memory, params;
    int ok;
} BenchResult;

// world > 1: what rank 0 of `world` data-parallel ranks allocates and runs (no communication):
// its share of the batch, and with zero its ZeRO-1 slice of the AdamW moments (src/optim.h).
static BenchResult bench_one(const Config *base, const BenchShape *sh, const char *mixer,
                             const Backend_f32 *k, int batch, int warmup, int steps, double peak,
                             int world, int zero, char *err, size_t errlen) {
    BenchResult r = {0};
    k->memory_peak(1);
    Config cfg = *base;
    cfg.d_model = sh->d_model, cfg.n_layers = sh->n_layers, cfg.n_heads = sh->n_heads;
    cfg.seq_len = sh->seq_len;
    snprintf(cfg.mixer, sizeof(cfg.mixer), "%s", mixer);
    ModelConfig mc;
    Model_f32 m;
    if (model_config_from(&cfg, sh->vocab, sh->seq_len, &mc, err, errlen) ||
        model_build_f32(&m, &mc, k, err, errlen))
        return r;
    int B = batch > 0 ? batch : sh->batch, T = sh->seq_len;
    B = (B + world - 1) / world;
    Shards shards;
    shards_init(&shards, m.n_params, world, 0, zero);
    size_t lo = shard_lo(&shards), hi = shard_hi(&shards);
    size_t bytes = sizeof(float) * (hi - lo ? hi - lo : 1);
    float *adam_m = k->alloc(bytes), *adam_v = k->alloc(bytes);
    if (!adam_m || !adam_v || model_set_batch_f32(&m, B, T)) {
        snprintf(err, errlen, "out of %s memory at batch %d x %d", k->name, B, T);
        k->release(adam_m), k->release(adam_v);
        model_free_f32(&m);
        return r;
    }
    model_init_f32(&m, 1);
    int *ids = malloc(sizeof(int) * (size_t)B * T), *targets = malloc(sizeof(int) * (size_t)B * T);
    for (size_t i = 0; i < (size_t)B * T; i++) {
        ids[i] = (int)rng_below(rng_key(3, 1, 0, 0), i, (uint64_t)sh->vocab);
        targets[i] = (int)rng_below(rng_key(3, 2, 0, 0), i, (uint64_t)sh->vocab);
    }
    AdamWParams ap = {1e-4, 0.9, 0.95, 1e-8, 0.1};
    for (int s = 0; s < warmup + steps; s++) {
        if (s == warmup) k->synchronize(), k->mark(0);
        model_zero_grad_f32(&m);
        model_forward_f32(&m, ids, targets, 1.0f / (B * T));
        model_backward_f32(&m);
        adamw_update_range(k, m.params, m.grads, adam_m, adam_v, m.info, m.n_tensors, ap, s + 1, lo,
                           hi);
    }
    k->mark(1);
    double wall = 1e-3 * k->mark_ms(0, 1);
    r.step_ms = 1e3 * wall / steps;
    r.tokens_per_s = (double)steps * B * T / wall;
    r.flops_per_token = bench_flops_per_token(&mc, T);
    r.mfu = r.tokens_per_s * r.flops_per_token / peak;
    r.memory = k->memory_peak(0);
    r.params = m.n_params;
    r.ok = 1;
    free(ids), free(targets);
    k->release(adam_m), k->release(adam_v);
    shards_free(&shards);
    model_free_f32(&m);
    return r;
}

// 1234567 -> "1.23M": the table spans a 30k-parameter model on a CPU and GPT-2 on an H100.
static const char *si(double x, char *buf) {
    const char *units = " kMGTP";
    int u = 0;
    while (fabs(x) >= 1000 && u < 5) x /= 1000, u++;
    if (u)
        sprintf(buf, "%.3g%c", x, units[u]);
    else
        sprintf(buf, "%.3g", x);
    return buf;
}

static int parse_count(const char *s) {  // -1 for anything but a plain non-negative integer
    char *end;
    long v = strtol(s, &end, 10);
    return *s && !*end && v >= 0 && v < (1L << 30) ? (int)v : -1;
}

static int split_list(char *s, char **out, int max) {
    int n = 0;
    for (char *save = NULL, *t = strtok_r(s, ",", &save); t && n < max;
         t = strtok_r(NULL, ",", &save))
        out[n++] = t;
    return n;
}

// --cores: forward and forward + backward of one mixer's core op alone (no projections, norms
// or MLP), B x T tokens fixed as T grows, the peer of fla's chunked kernels (bench/peer_fla.py).
// Inputs and output gradients are random normal; each timing is the median of `steps` calls
// after `warmup`, between marks on the device's clock.
typedef struct {
    double fwd_ms, fwd_bwd_ms;
    size_t memory;
    int ok;
} CoreResult;

static double median_ms(const Backend_f32 *k, int first, int n) {
    double v[BACKEND_MARKS];
    for (int i = 0; i < n; i++) v[i] = k->mark_ms(first + i, first + i + 1);
    for (int i = 1; i < n; i++)  // insertion sort: n is a few dozen
        for (int j = i; j > 0 && v[j] < v[j - 1]; j--) {
            double t = v[j];
            v[j] = v[j - 1], v[j - 1] = t;
        }
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static CoreResult bench_core(const Config *base, const Backend_f32 *k, const char *core, int B,
                             int T, int H, int D, int warmup, int steps, char *err, size_t errlen) {
    CoreResult r = {0};
    Config cfg = *base;
    cfg.d_model = (int64_t)H * D, cfg.n_heads = H, cfg.n_layers = 1, cfg.seq_len = T;
    snprintf(cfg.mixer, sizeof(cfg.mixer), "%s", core);
    ModelConfig mc;
    if (model_config_from(&cfg, 256, T, &mc, err, errlen)) return r;
    const OpDef_f32 *op = k->op_row(mc.mixer[0]);
    if (!op) {
        snprintf(err, errlen, "no %s kernel for %s", k->name, core);
        return r;
    }
    OpShape s = mixer_core_shape(&mc, 0, B, T);
    if (op->check && op->check(&s, err, errlen)) return r;
    size_t in_n[OP_MAX_IO], out_n[OP_MAX_IO], saved_n = 0;
    op->sizes(&s, in_n, out_n, &saved_n);
    float *in[OP_MAX_IO] = {0}, *din[OP_MAX_IO] = {0}, *out[OP_MAX_IO] = {0},
          *dout[OP_MAX_IO] = {0};
    k->memory_peak(1);
    size_t biggest = 1;
    for (int i = 0; i < op->n_in; i++) biggest = in_n[i] > biggest ? in_n[i] : biggest;
    for (int o = 0; o < op->n_out; o++) biggest = out_n[o] > biggest ? out_n[o] : biggest;
    float *host = malloc(sizeof(float) * biggest);
    float *saved = k->alloc(sizeof(float) * (saved_n ? saved_n : 1));
    int ok = host && saved;
    for (int i = 0; i < op->n_in && ok; i++) {
        in[i] = k->alloc(sizeof(float) * (in_n[i] ? in_n[i] : 1));
        din[i] = k->alloc(sizeof(float) * (in_n[i] ? in_n[i] : 1));
        ok = in[i] && din[i];
        if (!ok) break;
        uint64_t key = rng_key(41, (uint64_t)i, 0, 0);
#pragma omp parallel for schedule(static)  // a value per index: the same on any thread count
        for (size_t j = 0; j < in_n[i]; j++) host[j] = (float)rng_normal(key, j);
        k->upload(in[i], host, sizeof(float) * in_n[i]);
        k->zero(din[i], in_n[i]);
    }
    for (int o = 0; o < op->n_out && ok; o++) {
        out[o] = k->alloc(sizeof(float) * (out_n[o] ? out_n[o] : 1));
        dout[o] = k->alloc(sizeof(float) * (out_n[o] ? out_n[o] : 1));
        ok = out[o] && dout[o];
        if (!ok) break;
        uint64_t key = rng_key(43, (uint64_t)o, 0, 0);
#pragma omp parallel for schedule(static)
        for (size_t j = 0; j < out_n[o]; j++) host[j] = (float)rng_normal(key, j);
        k->upload(dout[o], host, sizeof(float) * out_n[o]);
    }
    if (!ok) {
        snprintf(err, errlen, "out of %s memory at %d x %d", k->name, B, T);
    } else {
        const float *const *cin = (const float *const *)in;
        for (int i = 0; i < warmup; i++) {
            op->forward(&s, cin, out, saved);
            op->backward(&s, cin, (const float *const *)out, saved, (const float *const *)dout,
                         din);
        }
        k->synchronize();
        // marks 0..steps: forward calls; steps+1..2 steps+1: forward + backward calls
        for (int i = 0; i < steps; i++) {
            k->mark(i);
            op->forward(&s, cin, out, saved);
        }
        k->mark(steps);
        for (int i = 0; i < steps; i++) {
            k->mark(steps + 1 + i);
            op->forward(&s, cin, out, saved);
            op->backward(&s, cin, (const float *const *)out, saved, (const float *const *)dout,
                         din);
        }
        k->mark(2 * steps + 1);
        r.fwd_ms = median_ms(k, 0, steps);
        r.fwd_bwd_ms = median_ms(k, steps + 1, steps);
        r.memory = k->memory_peak(0);
        // a timing of garbage is no timing: the output must be finite
        k->download(host, out[0], sizeof(float) * out_n[0]);
        size_t bad = 0;
        for (size_t j = 0; j < out_n[0]; j++) bad += !isfinite(host[j]);
        if (bad)
            snprintf(err, errlen, "%zu non-finite outputs on random inputs", bad);
        else
            r.ok = 1;
    }
    for (int i = 0; i < op->n_in; i++) k->release(in[i]), k->release(din[i]);
    for (int o = 0; o < op->n_out; o++) k->release(out[o]), k->release(dout[o]);
    k->release(saved);
    free(host);
    return r;
}

// Parses a comma list of integers in [1, hi] into v (at most max); returns the count, -1 if bad.
static int parse_ints(const char *s, int *v, int max, long hi) {
    int n = 0;
    for (const char *p = s; *p;) {
        char *end;
        long x = strtol(p, &end, 10);
        if (end == p || x < 1 || x > hi || (*end && *end != ',') || n == max) return -1;
        v[n++] = (int)x;
        p = *end ? end + 1 : end;
    }
    return n;
}

static int bench_cores(const Config *cfg, const Backend_f32 *k, const char *where, char *cores_arg,
                       const char *t_arg, int tokens, int H, int D, int warmup, int steps,
                       FILE *out) {
    char err[1024], *names[32];
    int n_cores = split_list(cores_arg, names, 32), Ts[32];
    int n_T = parse_ints(t_arg, Ts, 32, 1L << 24);
    if (n_T < 1 || tokens < 1 || H < 1 || D < 1 || steps > BACKEND_MARKS / 2 - 1) {
        fprintf(stderr,
                "madtrain: error: bench: --T takes a list of lengths (e.g. 2048,4096), --tokens, "
                "--heads and --head-dim positive integers, --steps at most %d with --cores\n",
                BACKEND_MARKS / 2 - 1);
        return MT_EXIT_USAGE;
    }
    for (int i = 0; i < n_cores; i++)
        if (mixer_find(names[i]) < 0) {
            fprintf(stderr, "madtrain: error: bench: unknown mixer '%s'\n", names[i]);
            return MT_EXIT_USAGE;
        }
    printf(
        "madtrain bench --cores | %s | %d tokens per call (B x T), %d heads of %d | "
        "median of %d after %d warm-up\n\n| core | B x T | fwd ms | fwd+bwd ms | "
        "tokens/s (fwd+bwd) | peak memory |\n|---|---|---|---|---|---|\n",
        where, tokens, H, D, steps, warmup);
    fflush(stdout);
    int failed = 0;
    for (int c = 0; c < n_cores; c++)
        for (int t = 0; t < n_T; t++) {
            int T = Ts[t], B = tokens / T > 0 ? tokens / T : 1;
            CoreResult r =
                bench_core(cfg, k, names[c], B, T, H, D, warmup, steps, err, sizeof(err));
            if (!r.ok) {
                printf("| %s | %d x %d | - | - | - | %s |\n", names[c], B, T, err);
                failed++;
                continue;
            }
            printf("| %s | %d x %d | %.3f | %.3f | %.4g | %.0f MiB |\n", names[c], B, T, r.fwd_ms,
                   r.fwd_bwd_ms, (double)B * T / (1e-3 * r.fwd_bwd_ms),
                   (double)r.memory / (1 << 20));
            fflush(stdout);
            if (out)
                fprintf(out,
                        "{\"core\":\"%s\",\"B\":%d,\"T\":%d,\"H\":%d,\"D\":%d,"
                        "\"device\":\"%s\",\"precision\":\"%s\",\"fwd_ms\":%.6g,"
                        "\"fwd_bwd_ms\":%.6g,\"peak_memory_bytes\":%zu}\n",
                        names[c], B, T, H, D, where,
                        cfg->precision == PRECISION_BF16 ? "bf16" : "fp32", r.fwd_ms, r.fwd_bwd_ms,
                        r.memory);
            if (out) fflush(out);  // a run stopped at its time limit keeps the rows it has
        }
    return failed ? MT_EXIT_FAIL : 0;
}

int bench_main(int argc, char **argv, Comm *comm) {
    Config cfg;
    config_defaults(&cfg);
    char err[1024], shapes_arg[256] = "", mixers_arg[256] = "", out_path[512] = "";
    // Default: the table's first two mixers (the attention baseline and its linear peer).
    for (int i = 0, n = 0; i < N_OPS_f32 && n < 2; i++)
        if (OPS_f32[i]->mixer)
            snprintf(mixers_arg + strlen(mixers_arg), sizeof(mixers_arg) - strlen(mixers_arg),
                     "%s%s", n++ ? "," : "", OPS_f32[i]->name);
    int steps = 10, warmup = 3, batch = 0, tokens = 65536, heads = 16, head_dim = 64;
    char ranks_arg[64] = "", cores_arg[256] = "", t_arg[256] = "2048,4096,8192,16384";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            bench_usage(stdout);
            return 0;
        }
        int has_value = i + 1 < argc;
        if (!strcmp(a, "--shapes") && has_value)
            snprintf(shapes_arg, sizeof(shapes_arg), "%s", argv[++i]);
        else if (!strcmp(a, "--mixers") && has_value)
            snprintf(mixers_arg, sizeof(mixers_arg), "%s", argv[++i]);
        else if (!strcmp(a, "--out") && has_value)
            snprintf(out_path, sizeof(out_path), "%s", argv[++i]);
        else if (!strcmp(a, "--steps") && has_value)
            steps = parse_count(argv[++i]);
        else if (!strcmp(a, "--warmup") && has_value)
            warmup = parse_count(argv[++i]);
        else if (!strcmp(a, "--batch") && has_value)
            batch = parse_count(argv[++i]);
        else if (!strcmp(a, "--ranks") && has_value)
            snprintf(ranks_arg, sizeof(ranks_arg), "%s", argv[++i]);
        else if (!strcmp(a, "--cores") && has_value)
            snprintf(cores_arg, sizeof(cores_arg), "%s", argv[++i]);
        else if (!strcmp(a, "--T") && has_value)
            snprintf(t_arg, sizeof(t_arg), "%s", argv[++i]);
        else if (!strcmp(a, "--tokens") && has_value)
            tokens = parse_count(argv[++i]);
        else if (!strcmp(a, "--heads") && has_value)
            heads = parse_count(argv[++i]);
        else if (!strcmp(a, "--head-dim") && has_value)
            head_dim = parse_count(argv[++i]);
        else if (a[0] != '-' && strchr(a, '=')) {
            if (config_override(&cfg, a, err, sizeof(err))) {
                fprintf(stderr, "madtrain: error: %s\n", err);
                return MT_EXIT_USAGE;
            }
        } else {
            fprintf(stderr,
                    "madtrain: error: bench: unknown or incomplete option '%s' (madtrain bench "
                    "--help)\n",
                    a);
            return MT_EXIT_USAGE;
        }
    }
    int ranks[16], n_ranks = parse_ints(ranks_arg, ranks, 16, 4096);  // --ranks: world sizes
    if (n_ranks < 0) {
        fprintf(stderr, "madtrain: error: bench: --ranks takes world sizes 1..4096, e.g. 1,2,4\n");
        return MT_EXIT_USAGE;
    }
    if (steps < 1 || warmup < 0 || batch < 0) {
        fprintf(stderr,
                "madtrain: error: bench: --steps must be an integer >= 1, --warmup and --batch "
                "integers >= 0\n");
        return MT_EXIT_USAGE;
    }
    if (cfg.threads > 0) {
        omp_set_num_threads((int)cfg.threads);
        openblas_set_num_threads((int)cfg.threads);
    }
    const Backend_f32 *k;
    int gpus;
    char where[160];
    if (select_backend(&cfg, comm, &k, &gpus, where, sizeof(where), err, sizeof(err))) {
        fprintf(stderr, "madtrain: error: %s\n", err);
        return MT_EXIT_USAGE;
    }
    if (cores_arg[0]) {
        FILE *out = out_path[0] ? fopen(out_path, "w") : NULL;
        if (out_path[0] && !out) {
            fprintf(stderr, "madtrain: error: bench: cannot write '%s'\n", out_path);
            return MT_EXIT_FAIL;
        }
        int rc = bench_cores(&cfg, k, where, cores_arg, t_arg, tokens, heads, head_dim, warmup,
                             steps, out);
        if (out) fclose(out);
        return rc;
    }
    if (!shapes_arg[0])
        snprintf(shapes_arg, sizeof(shapes_arg), "%s",
                 k == &BACKEND_CPU_f32 ? "tiny,e008" : "gpt2-small,gpt2-small-4k,e008");
    char *shape_names[16], *mixer_names[16];
    int n_shapes = split_list(shapes_arg, shape_names, 16),
        n_mixers = split_list(mixers_arg, mixer_names, 16);
    const BenchShape *shapes[16];
    for (int i = 0; i < n_shapes; i++) {
        shapes[i] = NULL;
        for (int j = 0; j < N_SHAPES; j++)
            if (!strcmp(SHAPES[j].name, shape_names[i])) shapes[i] = &SHAPES[j];
        if (!shapes[i]) {
            fprintf(stderr, "madtrain: error: bench: unknown shape '%s' (madtrain bench --help)\n",
                    shape_names[i]);
            return MT_EXIT_USAGE;
        }
    }
    for (int i = 0; i < n_mixers; i++)
        if (mixer_find(mixer_names[i]) < 0) {
            fprintf(stderr, "madtrain: error: bench: unknown mixer '%s'\n", mixer_names[i]);
            return MT_EXIT_USAGE;
        }
    FILE *out = NULL;
    if (out_path[0] && !(out = fopen(out_path, "w"))) {
        fprintf(stderr, "madtrain: error: bench: cannot write '%s'\n", out_path);
        return MT_EXIT_FAIL;
    }
    double peak = k->gemm_peak();
    char b1[32], b2[32], b3[32], b4[32];
    printf(
        "madtrain bench | %s | measured GEMM peak %sFLOP/s (%s) | %d warm-up + %d timed steps\n\n",
        where, si(peak, b1), k == &BACKEND_CPU_f32 ? "fp32 BLAS" : "bf16 cuBLAS, fp32 accumulate",
        warmup, steps);
    printf(
        "| shape | mixer | batch x T | params | tokens/s | step ms | vs %s | FLOP/token | FLOP/s | "
        "MFU | peak memory |\n",
        mixer_names[0]);
    printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
    fflush(stdout);
    int failed = 0;
    for (int sh = 0; sh < n_shapes; sh++) {
        double first_ms = 0;
        for (int mi = 0; mi < n_mixers; mi++) {
            BenchResult r = bench_one(&cfg, shapes[sh], mixer_names[mi], k, batch, warmup, steps,
                                      peak, 1, 0, err, sizeof(err));
            int B = batch > 0 ? batch : shapes[sh]->batch;
            if (!r.ok) {
                printf("| %s | %s | %d x %d | - | - | - | - | - | - | - | %s |\n", shapes[sh]->name,
                       mixer_names[mi], B, shapes[sh]->seq_len, err);
                failed++;
                continue;
            }
            if (mi == 0) first_ms = r.step_ms;
            printf("| %s | %s | %d x %d | %s | %s | %.1f | %.2f | %s | %s | %.1f%% | %.0f MiB |\n",
                   shapes[sh]->name, mixer_names[mi], B, shapes[sh]->seq_len,
                   si((double)r.params, b1), si(r.tokens_per_s, b2), r.step_ms,
                   first_ms > 0 ? r.step_ms / first_ms : 0, si(r.flops_per_token, b3),
                   si(r.tokens_per_s * r.flops_per_token, b4), 100 * r.mfu,
                   (double)r.memory / (1 << 20));
            fflush(stdout);
            if (out)
                fprintf(
                    out,
                    "{\"shape\":\"%s\",\"mixer\":\"%s\",\"batch\":%d,\"T\":%d,\"device\":\"%s\","
                    "\"tokens_per_s\":%.6g,\"step_ms\":%.6g,\"flops_per_token\":%.6g,"
                    "\"peak_flops\":%.6g,\"mfu\":%.6g,\"peak_memory_bytes\":%zu}\n",
                    shapes[sh]->name, mixer_names[mi], B, shapes[sh]->seq_len, where,
                    r.tokens_per_s, r.step_ms, r.flops_per_token, peak, r.mfu, r.memory);
            if (out) fflush(out);  // a run stopped at its time limit keeps the rows it has
        }
    }
    // --ranks: the memory one rank holds at each world size, the global batch split across
    // the ranks, with the moments whole (all-reduce) and sliced (ZeRO-1, optim.zero).
    if (n_ranks > 0) {
        printf(
            "\nPeak memory of one rank at W ranks (the global batch split; moments whole, or "
            "its ZeRO-1 slice; one step):\n\n| shape | mixer | ranks | batch per rank | peak "
            "memory, all-reduce | peak memory, ZeRO-1 |\n|---|---|---|---|---|---|\n");
        for (int sh = 0; sh < n_shapes; sh++)
            for (int mi = 0; mi < n_mixers; mi++)
                for (int w = 0; w < n_ranks; w++) {
                    int W = ranks[w], B = batch > 0 ? batch : shapes[sh]->batch;
                    BenchResult a = bench_one(&cfg, shapes[sh], mixer_names[mi], k, batch, 0, 1,
                                              peak, W, 0, err, sizeof(err));
                    BenchResult z = bench_one(&cfg, shapes[sh], mixer_names[mi], k, batch, 0, 1,
                                              peak, W, 1, err, sizeof(err));
                    if (!a.ok || !z.ok) {
                        failed++;
                        continue;
                    }
                    printf("| %s | %s | %d | %d | %.1f MiB | %.1f MiB |\n", shapes[sh]->name,
                           mixer_names[mi], W, (B + W - 1) / W, (double)a.memory / (1 << 20),
                           (double)z.memory / (1 << 20));
                    fflush(stdout);
                }
    }
    if (out) fclose(out);
    return failed ? MT_EXIT_FAIL : 0;
}
