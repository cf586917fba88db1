// The data-parallel training loop. Every rank runs the same loop over the same global batches
// and reads only its slice; after one all-reduce of the flat gradient all ranks hold the same
// gradient, so every decision (clip, skip, stop, eval) is taken identically everywhere.
#include "train.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../comm/grad_reduce.h"
#include "../data/loader.h"
#include "checkpoint.h"
#include "model.h"
#include "optim.h"
#include "util.h"
#ifdef MT_WITH_CUDA
#include "../comm/comm_nccl.h"
#include "../kernels/cuda/ops_cuda.h"
#endif

void openblas_set_num_threads(int);

int model_config_from(const Config *c, int task_vocab, int task_seq_len, ModelConfig *mc, char *err,
                      size_t n) {
    memset(mc, 0, sizeof(*mc));
    mc->vocab_size = c->vocab_size ? (int)c->vocab_size : task_vocab;
    if (mc->vocab_size < task_vocab) {
        snprintf(err, n, "model.vocab_size (%d) is smaller than the task's vocabulary (%d)",
                 mc->vocab_size, task_vocab);
        return -1;
    }
    mc->d_model = (int)c->d_model, mc->n_layers = (int)c->n_layers, mc->n_heads = (int)c->n_heads;
    mc->d_ff = c->d_ff ? (int)c->d_ff : 4 * (int)c->d_model;
    mc->mlp = c->mlp, mc->tie_embeddings = c->tie_embeddings, mc->gate = c->gate;
    mc->max_positions = c->pos_embedding ? task_seq_len : 0;  // the data's T (shards fix theirs)
    mc->rope_base = c->rope_base, mc->norm_eps = c->norm_eps, mc->init_std = c->init_std;
    mc->norm = c->norm, mc->mlp_bias = c->mlp_bias, mc->proj_bias = c->proj_bias;
    mc->init_scheme = c->init_scheme, mc->decay_all = c->decay == DECAY_ALL;
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", c->mixer);
    int k = 0;
    for (char *save = NULL, *t = strtok_r(buf, ", ", &save); t && k < MAX_LAYERS;
         t = strtok_r(NULL, ", ", &save))
        mc->mixer[k++] = mixer_find(t);
    for (int l = 0; l < mc->n_layers; l++) {
        if (k == 1) mc->mixer[l] = mc->mixer[0];
        mc->rope[l] = c->rope == ROPE_AUTO ? OPS_f32[mc->mixer[l]]->rope_default : c->rope == ROPE_ON;
    }
    mixer_options_from(c, mc);
    return 0;
}

typedef struct {
    FILE *metrics;  // rank 0 only
    double t_start;
} Logger;

static void jsonl(Logger *lg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void jsonl(Logger *lg, const char *fmt, ...) {
    if (!lg->metrics) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(lg->metrics, fmt, ap);
    va_end(ap);
    fputc('\n', lg->metrics);
    fflush(lg->metrics);
}

enum { MAX_EVAL_LEVELS = 8 };
typedef struct {
    double loss, acc;
    int64_t scored, examples;
    int n_levels;  // hcopy: accuracy per hierarchy level 1..n_levels (0: the task has none)
    double level_acc[MAX_EVAL_LEVELS];
} EvalResult;

// Held-out examples [first, first + count) as one micro-batch of the model's B sequences; the
// rows past count are padding that scores nothing.
static int load_eval_batch(const Model_f32 *m, Loader *data, EvalSplit split, int64_t first,
                           int64_t count, int *ids, int *targets, int *levels, char *err,
                           size_t errlen) {
    if (loader_eval(data, split, first, count, ids, targets, levels, err, errlen)) return -1;
    for (size_t i = (size_t)count * m->T; i < (size_t)m->B * m->T; i++)
        ids[i] = 0, targets[i] = -1, levels[i] = 0;
    return 0;
}

// Mean loss per scored position and mean per-example accuracy over a held-out split (or its
// first eval_examples), each rank taking a contiguous block of examples; for tasks with
// hierarchy levels, also the accuracy over the scored positions of each level.
static EvalResult evaluate(Model_f32 *m, Loader *data, EvalSplit split, const Config *cfg,
                           Comm *comm, int *ids, int *targets, int *levels) {
    int64_t n = loader_eval_size(data, split);
    if (cfg->eval_examples > 0 && cfg->eval_examples < n) n = cfg->eval_examples;
    int64_t lo = n * comm->rank / comm->world, hi = n * (comm->rank + 1) / comm->world;
    int B = m->B, T = m->T;
    char err[512];
    // loss, scored, acc, examples, then (scored, correct) per level 1..MAX_EVAL_LEVELS
    double sums[4 + 2 * MAX_EVAL_LEVELS] = {0};
    for (int64_t start = lo; start < hi; start += B) {
        int64_t count = hi - start < B ? hi - start : B;
        if (load_eval_batch(m, data, split, start, count, ids, targets, levels, err, sizeof(err)))
            comm_fatal(comm, MT_EXIT_FAIL, "%s", err);
        ForwardStats st = model_forward_f32(m, ids, targets, 0);
        sums[0] += st.loss_sum, sums[1] += (double)st.n_scored;
        sums[2] += st.example_acc_sum, sums[3] += (double)st.n_examples;
        for (size_t i = 0; i < (size_t)B * T; i++) {
            int l = levels[i];
            if (targets[i] < 0 || l < 1 || l > MAX_EVAL_LEVELS) continue;
            sums[4 + 2 * (l - 1)] += 1;
            sums[5 + 2 * (l - 1)] += m->predictions[i] == targets[i];
        }
    }
    comm_allreduce_sum_f64(comm, sums, 4 + 2 * MAX_EVAL_LEVELS);
    EvalResult r = {sums[1] > 0 ? sums[0] / sums[1] : 0,
                    sums[3] > 0 ? sums[2] / sums[3] : 0,
                    (int64_t)sums[1],
                    (int64_t)sums[3],
                    0,
                    {0}};
    for (int l = 0; l < MAX_EVAL_LEVELS; l++)
        if (sums[4 + 2 * l] > 0) {
            r.n_levels = l + 1;
            r.level_acc[l] = sums[5 + 2 * l] / sums[4 + 2 * l];
        }
    return r;
}

// One evaluation on rank 0's log and metrics. Language modelling: the mean loss is in nats per
// scored token; perplexity and bits per token are the figures papers report.
static void report_eval(Logger *lg, int64_t step, const char *name, int is_lm, EvalResult e) {
    char levels[64 * MAX_EVAL_LEVELS] = "", levels_json[64 * MAX_EVAL_LEVELS] = "";
    for (int l = 0; l < e.n_levels; l++) {
        size_t k = strlen(levels), kj = strlen(levels_json);
        snprintf(levels + k, sizeof(levels) - k, " | L%d %.4f", l + 1, e.level_acc[l]);
        snprintf(levels_json + kj, sizeof(levels_json) - kj, ",\"acc_level_%d\":%.6g", l + 1,
                 e.level_acc[l]);
    }
    if (is_lm) {
        double ppl = exp(e.loss), bits = e.loss / log(2.0);
        printf("eval  %6lld | %s loss %.4f | ppl %.2f | bits/token %.4f | %lld tokens\n",
               (long long)step, name, e.loss, ppl, bits, (long long)e.scored);
        jsonl(lg,
              "{\"event\":\"eval\",\"split\":\"%s\",\"step\":%lld,\"loss\":%.6g,\"ppl\":%.6g,"
              "\"bits_per_token\":%.6g,\"acc\":%.6g,\"tokens\":%lld,\"examples\":%lld}",
              name, (long long)step, e.loss, ppl, bits, e.acc, (long long)e.scored,
              (long long)e.examples);
    } else {
        printf("eval  %6lld | %s loss %.4f | %s acc %.4f%s | %lld examples\n", (long long)step,
               name, e.loss, name, e.acc, levels, (long long)e.examples);
        jsonl(lg,
              "{\"event\":\"eval\",\"split\":\"%s\",\"step\":%lld,\"loss\":%.6g,\"acc\":%.6g,"
              "\"examples\":%lld%s}",
              name, (long long)step, e.loss, e.acc, (long long)e.examples, levels_json);
    }
    fflush(stdout);
}

// The evaluations of one step: the validation split when there is one, and the test split
// when there is no validation split or `final` (the end of training, or `madtrain eval`).
// The test split's result goes to *test when it was evaluated.
static void run_evals(Model_f32 *m, Loader *data, const Config *cfg, Comm *comm, Logger *lg,
                      int64_t step, int final, EvalResult *test, int *ids, int *targets,
                      int *levels) {
    int has_valid = loader_eval_size(data, EVAL_VALID) > 0;
    for (int sp = EVAL_VALID; sp <= EVAL_TEST; sp++) {
        if (loader_eval_size(data, (EvalSplit)sp) <= 0) continue;
        if (sp == EVAL_TEST && has_valid && !final) continue;
        EvalResult e = evaluate(m, data, (EvalSplit)sp, cfg, comm, ids, targets, levels);
        if (sp == EVAL_TEST) *test = e;
        if (!comm->rank)
            report_eval(lg, step, loader_eval_name(data, (EvalSplit)sp), loader_is_lm(data), e);
    }
}

// The mixers' own figures (feature-map time, non-finite values, state energies, ...) on one
// held-out batch after training, one "aux" metrics line per layer.
static void report_aux(Logger *lg, Model_f32 *m, Loader *data, EvalSplit split, int *ids,
                       int *targets, int *levels) {
    int64_t n = loader_eval_size(data, split), count = n < m->B ? n : m->B;
    char err[512];
    if (count <= 0 ||
        load_eval_batch(m, data, split, 0, count, ids, targets, levels, err, sizeof(err)))
        return;
    model_forward_f32(m, ids, targets, 0);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        OpAux aux[OP_MAX_AUX + 1];
        int k = model_layer_aux_f32(m, l, aux);
        char line[8192];
        int len = snprintf(line, sizeof(line), "{\"event\":\"aux\",\"layer\":%d", l);
        printf("aux   layer %d |", l);
        for (int i = 0; i < k && len < (int)sizeof(line) - 128; i++) {
            if (isfinite(aux[i].value))
                len += snprintf(line + len, sizeof(line) - len, ",\"%s\":%.6g", aux[i].name,
                                aux[i].value);
            else
                len += snprintf(line + len, sizeof(line) - len, ",\"%s\":null", aux[i].name);
            printf(" %s %.4g", aux[i].name, aux[i].value);
        }
        printf("\n");
        jsonl(lg, "%s}", line);
    }
    fflush(stdout);
}

// ---- final state file and status ------------------------------------------------------
typedef struct {
    const float *params, *adam_m, *adam_v;
    size_t n;
} StateFile;

// final_state.bin: "MTSTATE1", uint64 n, then params, adam_m, adam_v (float32, n each, the
// parameter table's order): a raw dump for exact comparisons in tests.
static int write_state(FILE *f, void *ctx) {
    const StateFile *p = ctx;
    uint64_t n = p->n;
    if (fwrite("MTSTATE1", 1, 8, f) != 8 || fwrite(&n, sizeof(n), 1, f) != 1) return -1;
    if (fwrite(p->params, sizeof(float), p->n, f) != p->n) return -1;
    if (fwrite(p->adam_m, sizeof(float), p->n, f) != p->n) return -1;
    return fwrite(p->adam_v, sizeof(float), p->n, f) == p->n ? 0 : -1;
}

static int write_config(FILE *f, void *ctx) {
    config_write_yaml(ctx, f);
    return ferror(f) ? -1 : 0;
}

static int write_text(FILE *f, void *ctx) {
    return fputs(ctx, f) < 0 ? -1 : 0;
}

// ---- signals ---------------------------------------------------------------------------
// SIGTERM, SIGINT, SIGUSR1 ask for a checkpoint and an orderly exit at the next step
// boundary (the ranks agree on it through an all-reduce); a second SIGINT exits at once.
static volatile sig_atomic_t stop_requested = 0, interrupts = 0;

static void on_signal(int sig) {
    if (sig == SIGINT && ++interrupts > 1) _exit(130);
    stop_requested = sig;
}

static void install_signal_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    // A file-size limit or full disk must fail the write (EFBIG/ENOSPC), not kill the run.
    signal(SIGXFSZ, SIG_IGN);
}

static uint64_t hash_floats(const float *x, size_t n) {
    const unsigned char *p = (const unsigned char *)x;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n * sizeof(float); i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

// ---- the run ---------------------------------------------------------------------------
typedef struct {
    const Config *cfg;
    Comm *comm;
    const Backend_f32 *k;  // the device: model, gradients and optimizer state live there
    Model_f32 model;
    float *adam_m, *adam_v;  // on the device
    // Host views of params and moments (checkpoints, final state, replica hashes): the device
    // buffers themselves on the CPU backend, copies synchronised on demand on a GPU.
    float *host_params, *host_m, *host_v;
    TrainState st;
} Run;

static int host_aliased(const Run *r) { return r->host_params == r->model.params; }

static void params_to_host(Run *r) {
    if (!host_aliased(r))
        r->k->download(r->host_params, r->model.params, sizeof(float) * r->model.n_params);
}

static void state_to_host(Run *r) {
    if (host_aliased(r)) return;
    size_t bytes = sizeof(float) * r->model.n_params;
    params_to_host(r);
    r->k->download(r->host_m, r->adam_m, bytes);
    r->k->download(r->host_v, r->adam_v, bytes);
}

static void state_to_device(Run *r) {
    if (host_aliased(r)) return;
    size_t bytes = sizeof(float) * r->model.n_params;
    r->k->upload(r->model.params, r->host_params, bytes);
    r->k->upload(r->adam_m, r->host_m, bytes);
    r->k->upload(r->adam_v, r->host_v, bytes);
}

// Rank 0 writes; every rank has the same parameters (checked by the replica hash), so no
// gather is needed. A failed write is reported and training goes on from the previous one.
static int save_checkpoint(Run *r, Logger *lg) {
    if (r->comm->rank) return 0;
    char err[1400], path[1100];
    double t0 = now_seconds();
    state_to_host(r);
    if (checkpoint_write(r->cfg->run_dir, &r->model, r->host_params, r->host_m, r->host_v, &r->st,
                         r->cfg, path, sizeof(path), err, sizeof(err))) {
        fprintf(stderr, "madtrain: error: %s; training goes on from the previous checkpoint\n",
                err);
        jsonl(lg, "{\"event\":\"checkpoint_failed\",\"step\":%lld}", (long long)r->st.step);
        return -1;
    }
    checkpoint_prune(r->cfg->run_dir, r->cfg->ckpt_keep, r->cfg->ckpt_keep_every);
    printf("checkpoint: %s (%.2fs)\n", path, now_seconds() - t0);
    fflush(stdout);
    jsonl(lg, "{\"event\":\"checkpoint\",\"step\":%lld,\"path\":\"%s\"}", (long long)r->st.step,
          path);
    return 0;
}

// Resume: the newest usable checkpoint of the candidates. With `auto`, a corrupted newest
// checkpoint falls back to the previous one (and says so); an explicit file must be good.
static int try_resume(Run *r, int *resumed) {
    const Config *cfg = r->cfg;
    char err[1400], path[1100];
    char *cands[64];
    int n = 0;
    *resumed = 0;
    if (!cfg->resume[0]) return 0;
    int autom = !strcmp(cfg->resume, "auto");
    if (autom) {
        n = checkpoint_list(cfg->run_dir, cands, 64);
        if (!n) {
            if (!r->comm->rank)
                printf("resume: no checkpoint in %s, starting fresh\n", cfg->run_dir);
            return 0;
        }
    } else {
        if (checkpoint_resolve(cfg->resume, path, sizeof(path), err, sizeof(err)))
            comm_fatal(r->comm, MT_EXIT_FAIL, "%s", err);
        cands[n++] = strdup(path);
    }
    int rc = -1;
    for (int i = 0; i < n && rc; i++) {
        Config stored;
        char refused[2048], changed[2048];
        rc = checkpoint_read_config(cands[i], &stored, err, sizeof(err));
        if (!rc && config_diff(&stored, cfg, refused, sizeof(refused), changed, sizeof(changed))) {
            if (!r->comm->rank)
                fprintf(stderr, "madtrain: error: cannot resume from %s with a different %s\n",
                        cands[i], refused);
            for (int j = 0; j < n; j++) free(cands[j]);
            return MT_EXIT_USAGE;
        }
        if (!rc)
            rc = checkpoint_read(cands[i], &r->model, r->host_params, r->host_m, r->host_v,
                                 &r->st, NULL, err, sizeof(err));
        if (rc) {
            if (!autom) comm_fatal(r->comm, MT_EXIT_FAIL, "%s", err);
            if (!r->comm->rank)
                fprintf(stderr, "madtrain: warning: %s; falling back to the previous checkpoint\n",
                        err);
            continue;
        }
        if (!r->comm->rank) {
            printf("resume: %s at step %lld (written by %lld rank(s))\n", cands[i],
                   (long long)r->st.step, (long long)r->st.world);
            if (changed[0]) printf("resume: changed settings: %s\n", changed);
        }
        *resumed = 1;
        state_to_device(r);
    }
    for (int j = 0; j < n; j++) free(cands[j]);
    if (rc) comm_fatal(r->comm, MT_EXIT_FAIL, "no usable checkpoint in %s", cfg->run_dir);
    return 0;
}

// ---- device and communication ------------------------------------------------------------
typedef struct Device Device;
static void free_run(Run *r, Device *d, GradReducer *reducer);
#ifdef MT_WITH_CUDA
static Comm *fatal_comm;  // a failed CUDA call on any rank ends every rank
static void cuda_fatal(int code) { comm_abort(fatal_comm, code); }
#endif

struct Device {
    const Backend_f32 *k;
    ReduceMode reduce;
    void *nccl;
    char describe[256];
};

int select_backend(const Config *cfg, Comm *comm, const Backend_f32 **k, int *gpus_on_node,
                   char *describe, size_t dn, char *err, size_t errlen) {
    *k = &BACKEND_CPU_f32;
    int gpus = 0;
#ifdef MT_WITH_CUDA
    gpus = mt_cuda_device_count();
#endif
    *gpus_on_node = gpus;
    int want = cfg->device == DEVICE_AUTO ? (gpus > 0 ? DEVICE_CUDA : DEVICE_CPU) : cfg->device;
    if (want == DEVICE_CPU) {
        if (cfg->precision == PRECISION_BF16) {
            snprintf(err, errlen, "precision: bf16 needs device: cuda (the cpu backend is fp32)");
            return -1;
        }
        snprintf(describe, dn, "device cpu");
        return 0;
    }
#ifndef MT_WITH_CUDA
    (void)comm;
    snprintf(err, errlen,
             "device: cuda, but this madtrain was built without CUDA (nvcc and NCCL not found, or "
             "-DMADTRAIN_WITH_CUDA=OFF)");
    return -1;
#else
    if (gpus < 1) {
        snprintf(err, errlen, "device: cuda, but no CUDA device is visible on this node");
        return -1;
    }
    fatal_comm = comm;
    mt_cuda_rank = comm->rank;
    mt_cuda_fatal_hook = cuda_fatal;
    int dev = comm_cuda_select_device(comm);
    *k = BACKEND_CUDA;
    mt_cuda_set_precision(cfg->precision == PRECISION_BF16 ? MT_BF16 : MT_FP32);
    char name[128];
    mt_cuda_device_name(dev, name, sizeof(name));
    snprintf(describe, dn, "device cuda:%d (%s) | %s", dev, name,
             cfg->precision == PRECISION_BF16 ? "bf16 matmuls, fp32 accumulate" : "fp32");
    return 0;
#endif
}

// comm.backend on top of the device. NCCL needs a GPU per rank, so ranks that share one reduce
// through MPI (host-staged).
static int pick_device(const Config *cfg, Comm *comm, Device *d, char *err, size_t errlen) {
    memset(d, 0, sizeof(*d));
    d->reduce = REDUCE_HOST;
    int gpus;
    char where[160];
    if (select_backend(cfg, comm, &d->k, &gpus, where, sizeof(where), err, errlen)) return -1;
    if (d->k == &BACKEND_CPU_f32) {
        if (cfg->comm_backend == COMM_NCCL) {
            snprintf(err, errlen, "comm.backend: nccl needs device: cuda (this run is on the cpu)");
            return -1;
        }
        snprintf(d->describe, sizeof(d->describe), "%s%s", where,
                 comm->world > 1 ? " | comm mpi" : "");
        return 0;
    }
    int shared = comm->local_world > gpus;
    int nccl = cfg->comm_backend == COMM_NCCL || (cfg->comm_backend == COMM_AUTO && !shared);
    if (nccl && shared) {
        snprintf(err, errlen,
                 "comm.backend: nccl needs one GPU per rank (%d ranks on this node share %d "
                 "GPU(s)); use comm.backend: mpi",
                 comm->local_world, gpus);
        return -1;
    }
    d->reduce = nccl ? REDUCE_NCCL : REDUCE_STAGED;
    snprintf(d->describe, sizeof(d->describe), "%s | comm %s", where,
             nccl ? "nccl" : "mpi (host-staged)");
    return 0;
}

static void free_run(Run *r, Device *d, GradReducer *reducer) {
    grad_reducer_free(reducer);
    if (!host_aliased(r)) free(r->host_params), free(r->host_m), free(r->host_v);
    r->k->release(r->adam_m), r->k->release(r->adam_v);
    model_free_f32(&r->model);
#ifdef MT_WITH_CUDA
    comm_nccl_free(d->nccl);
#else
    (void)d;
#endif
}

int train_run(const Config *cfg, Comm *comm, int eval_only) {
    char err[1400], path[1100];
    int threads = (int)cfg->threads;
    if (!threads) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        threads = (int)(cores / comm->local_world);
        if (threads < 1) threads = 1;
    }
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
    h5_setup(cfg->hdf5_errors);

    const char *slurm_ntasks = getenv("SLURM_NTASKS");
    if (slurm_ntasks && getenv("SLURM_JOB_ID") && atoi(slurm_ntasks) != comm->world) {
        // srun without PMIx starts every task as a singleton MPI world of size 1.
        if (!comm->rank)
            fprintf(stderr,
                    "madtrain: error: SLURM_NTASKS is %s but the MPI world has %d rank(s): the "
                    "ranks did not join one job (use mpirun, or srun --mpi=pmix)\n",
                    slurm_ntasks, comm->world);
        return MT_EXIT_USAGE;
    }

    Loader *data = loader_open(cfg, comm->rank, comm->world, err, sizeof(err));
    if (!data) comm_fatal(comm, MT_EXIT_FAIL, "%s", err);
    ModelConfig mc;
    if (model_config_from(cfg, loader_vocab(data), loader_seq_len(data), &mc, err, sizeof(err))) {
        if (!comm->rank) fprintf(stderr, "madtrain: error: %s\n", err);
        return MT_EXIT_USAGE;
    }
    // The device checks read each node's own GPUs, so ranks can disagree (nodes that differ):
    // all learn whether any failed before a collective (NCCL's start) could wait on it.
    Device dev;
    int failed = pick_device(cfg, comm, &dev, err, sizeof(err)) != 0;
    double anyone[2] = {failed, comm->rank == 0 && failed};
    comm_allreduce_sum_f64(comm, anyone, 2);
    if (anyone[0] > 0) {
        if (failed && (comm->rank == 0 || anyone[1] == 0)) {
            if (comm->world > 1 && comm->rank) fprintf(stderr, "madtrain: error: [rank %d] %s\n", comm->rank, err);
            else fprintf(stderr, "madtrain: error: %s\n", err);
        }
        return MT_EXIT_USAGE;
    }
#ifdef MT_WITH_CUDA
    if (dev.reduce == REDUCE_NCCL) dev.nccl = comm_nccl_init(comm);
#endif
    const Backend_f32 *k = dev.k;
    Run run = {.cfg = cfg, .comm = comm, .k = k};
    Model_f32 *model = &run.model;
    if (model_build_f32(model, &mc, k, err, sizeof(err))) {
        if (!comm->rank) fprintf(stderr, "madtrain: error: %s\n", err);
        return MT_EXIT_USAGE;
    }
    model_init_f32(model, (uint64_t)cfg->seed);
    size_t state_bytes = sizeof(float) * model->n_params;
    run.adam_m = k->alloc(state_bytes);
    run.adam_v = k->alloc(state_bytes);
    if (!model->params || !model->grads || !run.adam_m || !run.adam_v)
        comm_fatal(comm, MT_EXIT_FAIL, "out of %s memory for %zu parameters", k->name,
                   model->n_params);
    // debug.host_mirrors: the CPU run keeps copies as a GPU run must, so the CPU tests cover
    // every crossing (checkpoints, resume, warm start, rollback, replica hashes, final state).
    if (k == &BACKEND_CPU_f32 && !cfg->debug_host_mirrors) {
        run.host_params = model->params, run.host_m = run.adam_m, run.host_v = run.adam_v;
    } else {
        run.host_params = xmalloc(state_bytes), run.host_m = xmalloc(state_bytes);
        run.host_v = xmalloc(state_bytes);
    }
    int64_t GB = cfg->batch_size, accum = cfg->grad_accum, W = comm->world;
    int mb = (int)(GB / (W * accum)), T = loader_seq_len(data);
    int64_t steps = cfg->steps;
    if (cfg->epochs > 0) {
        if (loader_train_size(data) <= 0) {
            if (!comm->rank)
                fprintf(stderr, "madtrain: error: train.epochs needs data.train_examples > 0\n");
            return MT_EXIT_USAGE;
        }
        steps = (int64_t)ceil(cfg->epochs * (double)loader_train_size(data) / (double)GB);
    }
    if (model_set_batch_f32(model, mb, T))
        comm_fatal(comm, MT_EXIT_FAIL, "out of memory for activations (micro-batch %d x %d)", mb,
                   T);

    int resumed = 0, rc = try_resume(&run, &resumed);
    if (rc) return rc;
    if (!resumed && cfg->init_from[0]) {
        k->download(run.host_params, model->params, state_bytes);  // tensors not loaded stay
        if (checkpoint_load_params(cfg->init_from, model, run.host_params, err, sizeof(err))) {
            if (!comm->rank) fprintf(stderr, "madtrain: error: %s\n", err);
            return MT_EXIT_USAGE;
        }
        k->upload(model->params, run.host_params, state_bytes);
        if (!comm->rank) printf("init_from: parameters loaded from %s\n", cfg->init_from);
    }
    if (eval_only && !resumed && !cfg->init_from[0]) {
        if (!comm->rank)
            fprintf(stderr,
                    "madtrain: error: eval needs checkpoint.resume or checkpoint.init_from\n");
        return MT_EXIT_USAGE;
    }
    run.st.world = comm->world;

    Logger lg = {0};
    if (!comm->rank) {
        if (mkdir_p(cfg->run_dir))
            comm_fatal(comm, MT_EXIT_FAIL, "cannot create run directory '%s': %s", cfg->run_dir,
                       strerror(errno));
        checkpoint_remove_partial(cfg->run_dir);
        snprintf(path, sizeof(path), "%s/config.yaml", cfg->run_dir);
        if (!eval_only && write_file_atomic(path, write_config, (void *)cfg))
            comm_fatal(comm, MT_EXIT_FAIL, "cannot write '%s': %s", path, strerror(errno));
        snprintf(path, sizeof(path), "%s/metrics.jsonl", cfg->run_dir);
        // A resumed run continues the same metrics file, as a requeued job continues its log.
        lg.metrics = fopen(path, resumed || eval_only ? "a" : "w");
        if (!lg.metrics)
            comm_fatal(comm, MT_EXIT_FAIL, "cannot write '%s': %s", path, strerror(errno));
        printf("madtrain %s | %d rank(s) x %d thread(s) | %s\n", MADTRAIN_VERSION, comm->world,
               threads, dev.describe);
        printf("model: %d layers, d_model %d, %d heads, mixer %s, mlp %s, %zu parameters\n",
               mc.n_layers, mc.d_model, mc.n_heads, cfg->mixer,
               config_enum_name("model.mlp", mc.mlp), model->n_params);
        printf(
            "task: %s, T %d, vocab %d | batch %lld (%d per rank x %lld micro-steps) | %lld steps\n",
            loader_describe(data), T, mc.vocab_size, (long long)GB, mb, (long long)accum,
            (long long)steps);
        fflush(stdout);
    }
    size_t per_step = (size_t)accum * mb * T;
    int *ids = xmalloc(sizeof(int) * per_step), *targets = xmalloc(sizeof(int) * per_step);
    int *levels = xmalloc(sizeof(int) * per_step);
    if (eval_only) {
        EvalResult test = {0};
        run_evals(model, data, cfg, comm, &lg, run.st.step, 1, &test, ids, targets, levels);
        if (!comm->rank) {
            fclose(lg.metrics);
        }
        free(ids), free(targets), free(levels);
        free_run(&run, &dev, NULL);
        loader_close(data);
        return 0;
    }
    install_signal_handlers();
    if (cfg->debug_file_size_limit > 0) {  // after MPI start-up, whose shared files need room
        struct rlimit lim = {(rlim_t)cfg->debug_file_size_limit,
                             (rlim_t)cfg->debug_file_size_limit};
        setrlimit(RLIMIT_FSIZE, &lim);
    }
    AdamWParams ap = {cfg->lr, cfg->beta1, cfg->beta2, cfg->adam_eps, cfg->weight_decay};
    size_t bucket_elems = (size_t)(cfg->bucket_mb * 1e6 / sizeof(float));
    GradReducer *reducer = grad_reducer_create(comm, k, dev.reduce, dev.nccl, model->grads,
                                               model->n_params, bucket_elems);
    if (!comm->rank && comm->world > 1) {
        printf("all-reduce: %d bucket(s) of up to %.3g MB, started as backward finishes each\n",
               grad_reducer_buckets(reducer), cfg->bucket_mb);
        fflush(stdout);
    }

    lg.t_start = now_seconds();
    double t_last = lg.t_start, t_ckpt = lg.t_start, interval[4] = {0};
    int64_t tokens_last = run.st.tokens, first_step = run.st.step, bad_in_row = 0;
    int have_checkpoint = resumed, exit_code = 0, preempted = 0;
    EvalResult last_eval = {0};
    for (int64_t step = run.st.step; step < steps; step++) {
        // Random-projection redraws: draw step / R from (seed, layer, draw), a pure function, so every rank
        // draws the same projection and a run resumed past a redraw holds it in its checkpoint.
        if (cfg->redraw_interval > 0 && step > 0 && step % cfg->redraw_interval == 0)
            model_redraw_f32(model, (uint64_t)cfg->seed, step / cfg->redraw_interval);
        // This rank's slice of global batch `step`, as accum micro-batches of mb sequences.
        int64_t base = run.st.data_position + comm->rank * (GB / W);
        if (loader_train(data, base, accum * mb, ids, targets, err, sizeof(err)))
            comm_fatal(comm, MT_EXIT_FAIL, "%s", err);
        if (cfg->debug_fail_at_step == step + 1 && cfg->debug_fail_rank == comm->rank)
            comm_fatal(comm, MT_EXIT_FAIL, "injected failure at step %lld (debug.fail_at_step)",
                       (long long)step + 1);
        // One small all-reduce carries the global count of scored positions and any stop
        // request, so every rank learns both at the same step boundary.
        double head[2] = {
            0, stop_requested || (cfg->debug_stop_at_step > 0 && cfg->debug_stop_at_step == step)
                   ? 1
                   : 0};
        for (size_t i = 0; i < per_step; i++) head[0] += targets[i] >= 0;
        comm_allreduce_sum_f64(comm, head, 2);
        if (head[1] > 0) {
            preempted = 1;
            break;
        }
        // The loss is the mean over the scored positions of the whole global batch: with the
        // global count known up front, each rank's gradient is already its share of that mean
        // and the all-reduce is a plain sum, exact for any split of the batch.
        float scale = head[0] > 0 ? (float)(1.0 / head[0]) : 0.0f;
        model_zero_grad_f32(model);
        if (cfg->debug_nan_at_step > 0 && step + 1 >= cfg->debug_nan_at_step &&
            step + 1 < cfg->debug_nan_at_step + cfg->debug_nan_count && comm->rank == 0) {
            float nan = NAN;  // backward adds into it: the reduced gradient is NaN everywhere
            k->upload(model->grads, &nan, sizeof(nan));
        }
        double stats[4] = {0};
        grad_reducer_begin(reducer);
        for (int64_t a = 0; a < accum; a++) {
            ForwardStats st =
                model_forward_f32(model, ids + a * mb * T, targets + a * mb * T, scale);
            // the last micro-step's backward finishes the gradients: reduce while it runs
            model->on_grads_final = a == accum - 1 ? grad_reducer_hook : NULL;
            model->grads_final_ctx = reducer;
            model_backward_f32(model);
            stats[0] += st.loss_sum, stats[1] += (double)st.n_scored;
            stats[2] += st.example_acc_sum, stats[3] += (double)st.n_examples;
        }
        model->on_grads_final = NULL;
        grad_reducer_finish(reducer);
        comm_allreduce_sum_f64(comm, stats, 4);
        for (int i = 0; i < 4; i++) interval[i] += stats[i];

        // Computed on the device; every rank holds the same reduced gradient, so NaN/Inf is
        // seen, and the step skipped, on all ranks alike.
        double norm = sqrt(k->norm_sq(model->grads, model->n_params));
        ap.lr = lr_at(step, steps, cfg->warmup_steps, cfg->lr, cfg->min_lr,
                      cfg->schedule == SCHEDULE_COSINE);
        if (!isfinite(norm)) {
            // Every rank sees the same reduced gradient, so all skip together.
            run.st.skipped_steps++;
            if (!comm->rank) {
                printf("step %lld: non-finite gradient, step skipped (%lld in a row)\n",
                       (long long)step + 1, (long long)bad_in_row + 1);
                jsonl(&lg, "{\"event\":\"skipped\",\"step\":%lld}", (long long)step + 1);
            }
            if (++bad_in_row >= cfg->max_bad_steps) {
                if (cfg->rollback_on_nan && have_checkpoint) {
                    // Back to the last good weights; the data position keeps going, so the
                    // batches that produced the non-finite steps are not replayed.
                    char *last[1];
                    TrainState keep = run.st;
                    if (checkpoint_list(cfg->run_dir, last, 1) < 1 ||
                        checkpoint_read(last[0], model, run.host_params, run.host_m, run.host_v,
                                        &run.st, NULL, err, sizeof(err)))
                        comm_fatal(comm, MT_EXIT_FAIL, "rollback failed: %s", err);
                    state_to_device(&run);
                    if (!comm->rank) printf("rollback: reloaded %s\n", last[0]);
                    free(last[0]);
                    run.st = keep;
                    bad_in_row = 0;
                } else {
                    if (!comm->rank)
                        fprintf(
                            stderr,
                            "madtrain: error: %lld non-finite steps in a row (train.max_bad_steps)"
                            " at step %lld; stopping\n",
                            (long long)bad_in_row, (long long)step + 1);
                    exit_code = MT_EXIT_FAIL;
                    run.st.step = step + 1;
                    break;
                }
            }
        } else {
            bad_in_row = 0;
            if (cfg->grad_clip > 0 && norm > cfg->grad_clip)
                k->scale(model->grads, (float)(cfg->grad_clip / norm), model->n_params);
            adamw_update(k, model->params, model->grads, run.adam_m, run.adam_v, model->info,
                         model->n_tensors, ap, step + 1 - run.st.skipped_steps);
        }
        run.st.step = step + 1;
        run.st.tokens += GB * T;
        run.st.data_position += GB;
        if (cfg->debug_diverge_at_step == step + 1 && comm->rank == comm->world - 1) {
            float p0;
            k->download(&p0, model->params, sizeof(p0));
            p0 += 1e-3f;
            k->upload(model->params, &p0, sizeof(p0));
        }
        if (cfg->check_replicas_every > 0 && run.st.step % cfg->check_replicas_every == 0) {
            params_to_host(&run);  // the hash reads the parameters only
            if (!comm_all_equal_u64(comm, hash_floats(run.host_params, model->n_params)))
                comm_fatal(comm, MT_EXIT_FAIL,
                           "replicas diverged at step %lld: parameter hashes differ across ranks",
                           (long long)run.st.step);
        }

        int last = step + 1 == steps;
        if (!comm->rank && ((step + 1) % cfg->log_every == 0 || last)) {
            double now = now_seconds(), elapsed = now - lg.t_start;
            double tps = (run.st.tokens - tokens_last) / (now - t_last);
            double loss = interval[1] > 0 ? interval[0] / interval[1] : 0;
            double acc = interval[3] > 0 ? interval[2] / interval[3] : 0;
            char el[32], eta[32];
            format_duration(elapsed, el, sizeof(el));
            format_duration(elapsed / (step + 1 - first_step) * (steps - step - 1), eta,
                            sizeof(eta));
            printf(
                "step %6lld/%lld | loss %.4f | acc %.4f | lr %.2e | gnorm %.3f | %.0f tok/s | "
                "elapsed %s | eta %s\n",
                (long long)step + 1, (long long)steps, loss, acc, ap.lr, norm, tps, el, eta);
            fflush(stdout);
            jsonl(&lg,
                  "{\"event\":\"train\",\"step\":%lld,\"loss\":%.6g,\"acc\":%.6g,\"lr\":%.6g,"
                  "\"grad_norm\":%.6g,\"tokens\":%lld,\"tokens_per_s\":%.6g,\"elapsed_s\":%.6f,"
                  "\"skipped_steps\":%lld}",
                  (long long)step + 1, loss, acc, ap.lr, norm, (long long)run.st.tokens, tps,
                  elapsed, (long long)run.st.skipped_steps);
            t_last = now, tokens_last = run.st.tokens;
        }
        if ((step + 1) % cfg->log_every == 0) memset(interval, 0, sizeof(interval));
        if ((cfg->eval_every > 0 && (step + 1) % cfg->eval_every == 0) || last) {
            run_evals(model, data, cfg, comm, &lg, step + 1, last, &last_eval, ids, targets,
                      levels);
            if (last && !comm->rank && !loader_is_lm(data))
                report_aux(&lg, model, data,
                           loader_eval_size(data, EVAL_VALID) > 0 ? EVAL_VALID : EVAL_TEST, ids,
                           targets, levels);
        }
        int due =
            !last && ((cfg->ckpt_every_steps > 0 && run.st.step % cfg->ckpt_every_steps == 0) ||
                      (cfg->ckpt_every_minutes > 0 &&
                       now_seconds() - t_ckpt >= 60 * cfg->ckpt_every_minutes));
        if (due) {
            if (!save_checkpoint(&run, &lg)) have_checkpoint = 1;
            t_ckpt = now_seconds();
        }
    }
    double wall = now_seconds() - lg.t_start;
    // The end of training (or a stop request) always leaves a checkpoint to resume or reuse.
    if (exit_code == 0) save_checkpoint(&run, &lg);
    if (!comm->rank) {
        snprintf(path, sizeof(path), "%s/final_state.bin", cfg->run_dir);
        // written only after a clean finish, whose final checkpoint just copied the state down
        StateFile sf = {run.host_params, run.host_m, run.host_v, model->n_params};
        if (!preempted && exit_code == 0 && write_file_atomic(path, write_state, &sf))
            comm_fatal(comm, MT_EXIT_FAIL, "cannot write '%s': %s", path, strerror(errno));
        snprintf(path, sizeof(path), "%s/status", cfg->run_dir);
        const char *status = exit_code ? "failed\n" : preempted ? "preempted\n" : "finished\n";
        write_file_atomic(path, write_text, (void *)status);
        int64_t done = run.st.step - first_step;
        if (preempted)
            printf(
                "stopped by signal at step %lld: checkpoint written, exit 0 (status: preempted)\n",
                (long long)run.st.step);
        printf(
            "done: %lld steps in %.1fs, %.0f tok/s, test acc %.4f, test loss %.4f, "
            "skipped %lld step(s)\n",
            (long long)done, wall, wall > 0 ? done * GB * T / wall : 0, last_eval.acc,
            last_eval.loss, (long long)run.st.skipped_steps);
        jsonl(&lg,
              "{\"event\":\"summary\",\"step\":%lld,\"steps_this_run\":%lld,\"wall_s\":%.3f,"
              "\"tokens\":%lld,\"tokens_per_s\":%.6g,\"test_acc\":%.6g,\"test_loss\":%.6g,"
              "\"params\":%zu,\"skipped_steps\":%lld,\"world\":%d,\"status\":\"%s\"}",
              (long long)run.st.step, (long long)done, wall, (long long)run.st.tokens,
              wall > 0 ? done * GB * T / wall : 0, last_eval.acc, last_eval.loss, model->n_params,
              (long long)run.st.skipped_steps, comm->world,
              exit_code   ? "failed"
              : preempted ? "preempted"
                          : "finished");
        fclose(lg.metrics);
    }
    loader_close(data);
    free(ids), free(targets), free(levels);
    free_run(&run, &dev, reducer);
    return exit_code;
}
