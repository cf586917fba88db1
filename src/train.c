// The data-parallel training loop. Every rank runs the same loop over the same global batches
// and reads only its slice; after one all-reduce of the flat gradient all ranks hold the same
// gradient, so every decision (clip, skip, stop, eval) is taken identically everywhere.
// train_run sets a run up (train_internal.h names the parts) and calls train_step per step.
#include "train.h"

#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../data/h5util.h"
#include "../data/images.h"
#include "../kernels/rng.h"
#include "bench.h"
#include "data_config.h"
#include "optim.h"
#include "phases.h"
#include "train_internal.h"
#include "util.h"

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
    mc->head = c->head;
    char buf[sizeof(c->mixer)];
    snprintf(buf, sizeof(buf), "%s", c->mixer);
    int k = 0;
    for (char *save = NULL, *t = strtok_r(buf, ", ", &save); t && k < MAX_LAYERS;
         t = strtok_r(NULL, ", ", &save))
        mc->mixer[k++] = mixer_find(t);
    for (int l = 0; l < mc->n_layers; l++) {
        if (k == 1) mc->mixer[l] = mc->mixer[0];
        mc->rope[l] =
            c->rope == ROPE_AUTO ? OPS_f32[mc->mixer[l]]->rope_default : c->rope == ROPE_ON;
    }
    mixer_options_from(c, mc);
    return config_recompute_layers(c->recompute, mc->n_layers, mc->recompute, err, n);
}

// The ViT path (the data serves images): the token model's config from the same keys, then the
// image's geometry. T is the tokens per image; rotary positions are off under model.rope auto
// (positions come from model.pos). One line in err naming the key when the image and the
// model do not fit together.
static int vision_config_from(const Config *c, const Loader *data, int rank, ModelConfig *mc,
                              char *err, size_t n) {
    ImageGeom g = loader_image_geom(data);
    VisionConfig v = {(int)c->patch, g.height,   g.width,    g.channels,
                      c->pool,       c->vit_pos, c->dropout, c->label_smoothing};
    if (g.height % v.patch || g.width % v.patch) {
        snprintf(err, n, "model.patch (%d) must divide the images' height and width (%d x %d)",
                 v.patch, g.height, g.width);
        return -1;
    }
    if (v.pos == VIT_POS_SINCOS2D && c->d_model % 4) {
        snprintf(err, n, "model.pos sincos2d needs model.d_model (%lld) a multiple of 4",
                 (long long)c->d_model);
        return -1;
    }
    if (c->head != HEAD_LM) {
        snprintf(err, n, "model.head %s is for token tasks; image data has a classification head",
                 config_enum_name("model.head", c->head));
        return -1;
    }
    Config tc = *c;
    tc.seq_len = vit_tokens(&v);
    tc.vocab_size = 0;
    if (tc.rope == ROPE_AUTO) tc.rope = ROPE_OFF;
    if (model_config_from(&tc, g.num_classes, vit_tokens(&v), mc, err, n)) return -1;
    mc->vision = v;
    mc->tie_embeddings = 0, mc->max_positions = 0;
    int warned = 0;
    for (int l = 0; l < mc->n_layers; l++) {
        const OpDef_f32 *row = OPS_f32[mc->mixer[l]];
        unsigned char *opt = mc->core_opts[l].opt.bytes;
        // A mixer that reads a patch grid (options grid_w, prefix_tokens) gets the image's
        // where its config leaves them 0: the grid's width and the class token before it.
        const OpOption *gw = op_option_find(row->options, "grid_w");
        const OpOption *pt = op_option_find(row->options, "prefix_tokens");
        int value;
        if (gw && gw->type == OPT_INT && (memcpy(&value, opt + gw->offset, sizeof(int)), !value))
            value = g.width / v.patch, memcpy(opt + gw->offset, &value, sizeof(int));
        if (pt && pt->type == OPT_INT && (memcpy(&value, opt + pt->offset, sizeof(int)), !value))
            value = v.pool == VIT_POOL_CLS, memcpy(opt + pt->offset, &value, sizeof(int));
        // The class token comes first: under a causal mixer it attends to itself alone.
        int is_causal = op_option_int(row->options, "causal", &mc->core_opts[l], 0);
        if (is_causal && v.pool == VIT_POOL_CLS && !rank && !warned++)
            fprintf(stderr,
                    "madtrain: warning: layer %d's mixer %s has mixer.causal: true: the class "
                    "token (first) sees no patch through it; set mixer.causal: false or "
                    "model.pool: mean\n",
                    l, row->name);
    }
    return 0;
}

// Training FLOPs per example (a sequence, or an image), llm.c's convention as bench counts them:
// the blocks at T tokens; the ViT's patch embedding runs on its patches and its head once.
static double train_flops_per_example(const ModelConfig *mc, int T) {
    double flops = bench_flops_per_token(mc, T) * T;
    if (!mc->vision.patch) return flops;
    const VisionConfig *v = &mc->vision;
    double C = mc->d_model, K = mc->vocab_size, in_w = v->patch * v->patch * v->channels;
    return flops - 6 * K * C * T + 6 * K * C + 6 * vit_patches(v) * in_w * C;
}

// The step's dropout stream: a pure function of (seed, step).
static uint64_t train_dropout_key(const Config *cfg, int64_t step) {
    return rng_key((uint64_t)cfg->seed, 0xD40B, (uint64_t)step, 0);
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

// ---- one step --------------------------------------------------------------------------
typedef struct {
    Run *run;
    Logger *lg;
    Loader *data;
    GradReducer *reducer;
    Batch batch;
    int64_t GB, W, accum, steps;  // global batch, ranks, micro-steps, steps in all
    int mb, T;                    // sequences per micro-step and rank, their length
    int T_full;                   // the data's sequence length (T = T_full / parallel.context)
    int64_t groups;               // data-parallel replicas: ranks / parallel.context
    AdamWParams ap;               // ap.lr: the last step's
    Interval interval;
    int64_t bad_in_row;   // non-finite steps in a row
    int have_checkpoint;  // one to roll back to
    double grad_norm;     // the last step's, before clipping
    float *staging;       // ZeRO on a device over MPI: the parameters' host copy for the all-gather
    const Device *dev;
    PhaseMarks phases;  // train.profile_step's
} Trainer;

// train.profile_step: the step's phases as a table (rank 0's clock) and one metrics event.
static void report_phases(Trainer *t, int64_t step) {
    Comm *comm = t->run->comm;
    PhaseRow rows[BACKEND_MARKS];
    double total = 0;
    int n = phases_rows(&t->phases, rows, BACKEND_MARKS, &total);
    if (comm->rank) return;
    printf(
        "phases of step %lld on rank 0 (%s clock; a phase runs from the mark before it to its "
        "own):\n| phase | ms | %% of step |\n|---|---|---|\n",
        (long long)step + 1, t->run->k == &BACKEND_CPU_f32 ? "wall" : "device");
    for (int i = 0; i < n; i++)
        printf("| %s%s | %.3f | %.1f |\n", rows[i].label, rows[i].count > 1 ? " (summed)" : "",
               rows[i].ms, total > 0 ? 100 * rows[i].ms / total : 0);
    printf("| step | %.3f | 100.0 |\n", total);
    fflush(stdout);
    char buf[BACKEND_MARKS * 80];
    size_t used = 0;
    for (int i = 0; i < n && used < sizeof(buf); i++)
        used += (size_t)snprintf(buf + used, sizeof(buf) - used,
                                 "%s{\"phase\":\"%s\",\"ms\":%.6g,\"count\":%d}", i ? "," : "",
                                 rows[i].label, rows[i].ms, rows[i].count);
    jsonl(t->lg, "{\"event\":\"phases\",\"step\":%lld,\"step_ms\":%.6g,\"phases\":[%s]}",
          (long long)step + 1, total, buf);
}

// ZeRO-1: every rank's updated slice of the parameters to every rank (by NCCL on a device
// that reduces by NCCL, else through a host copy on a device; the parameters are host memory
// on the CPU backend).
static void allgather_params(Run *run, const Device *dev, float *staging) {
    const Backend_f32 *k = run->k;
    const Shards *sh = &run->shards;
    float *params = run->model.params;
    if (k == &BACKEND_CPU_f32) {
        comm_allgather_slices_f32(run->comm, params, sh->at);
        return;
    }
    if (dev->reduce == REDUCE_NCCL) {
        device_nccl_allgather(dev, params, sh->at);
        return;
    }
    size_t lo = shard_lo(sh), hi = shard_hi(sh);
    k->download(staging + lo, params + lo, sizeof(float) * (hi - lo));
    comm_allgather_slices_f32(run->comm, staging, sh->at);
    k->upload(params, staging, sizeof(float) * sh->n);
}

typedef enum { STEP_DONE, STEP_STOP, STEP_FAILED } StepOutcome;

// Where a non-finite step came from, when the forward made it: the first layer whose mixer
// input or output holds NaN/Inf on any rank (an oscillator whose state overflowed, a decay
// that underflowed to 0/0), as " (first in layer L's mixer, NAME: N non-finite values)", or ""
// when every mixer's values were finite (the loss or the backward then made it). Called on
// every rank alike (the gradient norm that sends us here is the same on all ranks).
static void nonfinite_layer(Model_f32 *m, Comm *comm, char *where, size_t n) {
    int L = m->cfg.n_layers;
    double *bad = calloc((size_t)L, sizeof(double));
    for (int l = 0; l < L; l++) {
        OpAux aux[OP_MAX_AUX + 1];
        model_layer_aux_f32(m, l, aux);  // aux[0]: the layer's non-finite count
        bad[l] = aux[0].value;
    }
    comm_allreduce_sum_f64(comm, bad, (size_t)L);
    where[0] = '\0';
    for (int l = 0; l < L; l++)
        if (bad[l] > 0) {
            snprintf(where, n, " (first in layer %d's mixer, %s: %.0f non-finite values)", l,
                     OPS_f32[m->cfg.mixer[l]]->name, bad[l]);
            break;
        }
    free(bad);
}

// Optimizer step `step` (0-based) on this rank's slice of global batch `step`.
static StepOutcome train_step(Trainer *t, int64_t step) {
    Run *run = t->run;
    const Config *cfg = run->cfg;
    Comm *comm = run->comm;
    const Backend_f32 *k = run->k;
    Model_f32 *model = &run->model;
    int64_t accum = t->accum, mb = t->mb, T = t->T;
    char err[1400];
    PhaseMarks *ph = step + 1 == cfg->profile_step ? &t->phases : NULL;
    if (ph) phases_begin(ph, k);
    // Random-projection redraws: draw step / R from (seed, layer, draw), a pure function, so every
    // rank draws the same projection and a run resumed past a redraw holds it in its checkpoint.
    if (cfg->redraw_interval > 0 && step > 0 && step % cfg->redraw_interval == 0)
        model_redraw_f32(model, (uint64_t)cfg->seed, step / cfg->redraw_interval);
    // This rank's slice of global batch `step`, as accum micro-batches of mb sequences.
    // Under parallel.context the ranks of a group read the same rows and keep their slices.
    const ContextGroup *cp = &model->cfg.cp;
    int64_t group = cp->size > 1 ? comm->rank / cp->size : comm->rank;
    int64_t base = run->st.data_position + group * (t->GB / t->groups);
    int *ids = t->batch.ids, *targets = t->batch.targets;
    int *pos = loader_packed(t->data) ? t->batch.pos : NULL;
    int images = loader_is_images(t->data);
    if (images ? loader_train_images(t->data, base, accum * mb, t->batch.pixels, targets, err,
                                     sizeof(err))
               : loader_train(t->data, base, accum * mb, ids, targets, pos, err, sizeof(err)))
        comm_fatal(comm, MT_EXIT_FAIL, "%s", err);
    context_slice_rows(ids, accum * mb, t->T_full, cp);
    context_slice_rows(targets, accum * mb, t->T_full, cp);
    int64_t per_example = images ? 1 : T;  // labels per image; targets per sequence (slice)
    fault_fail_at_step(cfg, comm, step);
    // One small all-reduce carries the global count of scored positions and any stop
    // request, so every rank learns both at the same step boundary.
    double head[2] = {0, stop_requested || fault_stop_at_step(cfg, step) ? 1 : 0};
    for (size_t i = 0; i < (size_t)(accum * mb * per_example); i++) head[0] += targets[i] >= 0;
    comm_allreduce_sum_f64(comm, head, 2);
    if (head[1] > 0) return STEP_STOP;
    if (ph) {
        phases_mark(ph, "data");
        model->on_phase = phases_model_hook, model->phase_ctx = ph;
    }
    // The loss is the mean over the scored positions of the whole global batch: with the
    // global count known up front, each rank's gradient is already its share of that mean
    // and the all-reduce is a plain sum, exact for any split of the batch.
    float scale = head[0] > 0 ? (float)(1.0 / head[0]) : 0.0f;
    model_zero_grad_f32(model);
    fault_nan_gradient(cfg, comm, run, step);
    double stats[5] = {0};
    // parallel.context: (correct, scored) per row of the global batch, whole after the sum
    double *rows = cp->size > 1 ? xcalloc(2 * (size_t)t->GB, sizeof(double)) : NULL;
    grad_reducer_begin(t->reducer);
    size_t pixels_per_image = images ? (size_t)model->cfg.vision.height * model->cfg.vision.width *
                                           model->cfg.vision.channels
                                     : 0;
    for (int64_t a = 0; a < accum; a++) {
        ImageStep is = {1, train_dropout_key(cfg, step), base + a * mb};
        ForwardStats st =
            images ? model_forward_images_f32(model, t->batch.pixels + a * mb * pixels_per_image,
                                              targets + a * mb, &is, scale)
                   : model_forward_packed_f32(model, ids + a * mb * T, targets + a * mb * T,
                                              pos ? pos + a * mb * T : NULL, scale);
        // the last micro-step's backward finishes the gradients: reduce while it runs
        model->on_grads_final = a == accum - 1 ? grad_reducer_hook : NULL;
        model->grads_final_ctx = t->reducer;
        model_backward_f32(model);
        stats[0] += st.loss_sum, stats[1] += (double)st.n_scored;
        stats[2] += st.example_acc_sum, stats[3] += (double)st.n_examples;
        stats[4] += st.top5_sum;
        if (rows)
            context_row_counts(model, targets + a * mb * T, (int)mb,
                               group * (t->GB / t->groups) + a * mb, rows);
    }
    model->on_grads_final = NULL;
    model->on_phase = NULL;
    grad_reducer_finish(t->reducer);
    if (ph) phases_mark(ph, "gradient all-reduce (wait)");
    comm_allreduce_sum_f64(comm, stats, 5);
    if (rows) {  // a slice's accuracy is not its example's: count whole examples
        comm_allreduce_sum_f64(comm, rows, 2 * (size_t)t->GB);
        context_example_acc(rows, t->GB, &stats[2], &stats[3]);
        free(rows);
    }
    for (int i = 0; i < 5; i++) t->interval.sums[i] += stats[i];

    // Computed on the device, in blocks (optim.h: Shards); every rank gets the same norm (its
    // own slice's blocks with ZeRO), so NaN/Inf is seen, and the step skipped, on all ranks
    // alike.
    double norm = sqrt(grad_norm_sq(k, model->grads, &run->shards, comm));
    t->grad_norm = norm;
    if (ph) phases_mark(ph, "loss sums and gradient norm");
    t->ap.lr = lr_at(step, t->steps, cfg->warmup_steps, cfg->lr, cfg->min_lr,
                     cfg->schedule == SCHEDULE_COSINE);
    if (!isfinite(norm)) {
        run->st.skipped_steps++;
        char where[160];
        nonfinite_layer(model, comm, where, sizeof(where));
        if (!comm->rank) {
            printf("step %lld: non-finite gradient, step skipped (%lld in a row)%s\n",
                   (long long)step + 1, (long long)t->bad_in_row + 1, where);
            jsonl(t->lg, "{\"event\":\"skipped\",\"step\":%lld}", (long long)step + 1);
        }
        if (++t->bad_in_row >= cfg->max_bad_steps) {
            if (cfg->rollback_on_nan && t->have_checkpoint) {
                rollback(run);
                t->bad_in_row = 0;
            } else {
                if (!comm->rank)
                    fprintf(stderr,
                            "madtrain: error: %lld non-finite steps in a row (train.max_bad_steps)"
                            " at step %lld%s; stopping\n",
                            (long long)t->bad_in_row, (long long)step + 1, where);
                run->st.step = step + 1;
                return STEP_FAILED;
            }
        }
    } else {
        t->bad_in_row = 0;
        // This rank's slice (all of it without ZeRO): the clip, AdamW, then with ZeRO every
        // rank's updated slice to every rank.
        const Shards *sh = &run->shards;
        size_t lo = shard_lo(sh), hi = shard_hi(sh);
        if (cfg->grad_clip > 0 && norm > cfg->grad_clip)
            k->scale(model->grads + lo, (float)(cfg->grad_clip / norm), hi - lo);
        adamw_update_range(k, model->params, model->grads, run->adam_m, run->adam_v, model->info,
                           model->n_tensors, t->ap, step + 1 - run->st.skipped_steps, lo, hi);
        if (sh->on) allgather_params(run, t->dev, t->staging);
    }
    if (ph) {
        phases_mark(ph, run->shards.on ? "optimizer and ZeRO all-gather" : "optimizer");
        report_phases(t, step);
    }
    run->st.step = step + 1;
    run->st.tokens += t->GB * t->T_full;  // every token of the global batch, slices or not
    run->st.data_position += t->GB;
    fault_diverge(cfg, comm, run, step);
    if (cfg->check_replicas_every > 0 && run->st.step % cfg->check_replicas_every == 0 &&
        !comm_all_equal_u64(comm, replica_hash(run)))
        comm_fatal(comm, MT_EXIT_FAIL,
                   "replicas diverged at step %lld: parameter hashes differ across ranks",
                   (long long)run->st.step);
    return STEP_DONE;
}

// ---- the run ---------------------------------------------------------------------------
// OpenMP and BLAS threads: cpu.threads, or the node's cores shared among its ranks.
static int set_threads(const Config *cfg, const Comm *comm) {
    int threads = (int)cfg->threads;
    if (!threads) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        threads = (int)(cores / comm->local_world);
        if (threads < 1) threads = 1;
    }
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
    return threads;
}

// srun without PMIx starts every task as a singleton MPI world of size 1.
static int ranks_joined(const Comm *comm) {
    const char *slurm_ntasks = getenv("SLURM_NTASKS");
    if (!slurm_ntasks || !getenv("SLURM_JOB_ID") || atoi(slurm_ntasks) == comm->world) return 1;
    if (!comm->rank)
        fprintf(stderr,
                "madtrain: error: SLURM_NTASKS is %s but the MPI world has %d rank(s): the "
                "ranks did not join one job (use mpirun, or srun --mpi=pmix)\n",
                slurm_ntasks, comm->world);
    return 0;
}

// Steps from the run's position to the end, or to a stop request or too many non-finite
// steps; then the final checkpoint, final state and summary. Returns the exit code.
static int run_training(Trainer *t, const Device *dev, EvalResult *last_eval) {
    Run *run = t->run;
    const Config *cfg = run->cfg;
    Comm *comm = run->comm;
    Model_f32 *model = &run->model;
    Logger *lg = t->lg;
    install_signal_handlers();
    fault_file_size_limit(cfg);
    size_t bucket_elems = (size_t)(cfg->bucket_mb * 1e6 / sizeof(float));
    t->dev = dev;
    t->reducer = grad_reducer_create(comm, dev->k, dev->reduce, dev->nccl, model->grads,
                                     model->n_params, bucket_elems);
    if (run->shards.on) {
        grad_reducer_owners(t->reducer, run->shards.at);
        const Shards *sh = &run->shards;
        if (!comm->rank)
            printf(
                "optim.zero: AdamW moments in %d slices of up to %zu parameters (rank 0: "
                "[%zu, %zu) of %zu), gradients reduced to their slice's rank, parameters "
                "all-gathered\n",
                comm->world, sh->at[1] - sh->at[0], sh->at[0], sh->at[1], sh->n);
        if (dev->k != &BACKEND_CPU_f32 && dev->reduce != REDUCE_NCCL)
            t->staging = xmalloc(sizeof(float) * model->n_params);
    }
    if (!comm->rank && comm->world > 1) {
        printf("all-reduce: %d bucket(s) of up to %.3g MB, started as backward finishes each\n",
               grad_reducer_buckets(t->reducer), cfg->bucket_mb);
        fflush(stdout);
    }

    // What a step costs (madtrain report's FLOPs and memory columns): training FLOPs per
    // example, the activations forward keeps for backward and backward's own scratch.
    if (!comm->rank)
        jsonl(lg,
              "{\"event\":\"cost\",\"train_flops_per_example\":%.6g,\"forward_bytes\":%zu,"
              "\"backward_bytes\":%zu}",
              train_flops_per_example(&model->cfg, t->T), sizeof(float) * model->acts_size,
              sizeof(float) * model->scratch_size);
    lg->t_start = now_seconds();
    t->interval.t_last = lg->t_start, t->interval.tokens_last = run->st.tokens;
    double t_ckpt = lg->t_start;
    int64_t first_step = run->st.step, steps = t->steps;
    int exit_code = 0, preempted = 0;
    for (int64_t step = run->st.step; step < steps; step++) {
        StepOutcome outcome = train_step(t, step);
        if (outcome == STEP_STOP) {
            preempted = 1;
            break;
        }
        if (outcome == STEP_FAILED) {
            exit_code = MT_EXIT_FAIL;
            break;
        }
        int last = step + 1 == steps;
        if (!comm->rank && ((step + 1) % cfg->log_every == 0 || last))
            log_step(lg, &t->interval, step, steps, first_step, t->ap.lr, t->grad_norm, &run->st);
        if ((step + 1) % cfg->log_every == 0) memset(t->interval.sums, 0, sizeof(t->interval.sums));
        if ((cfg->eval_every > 0 && (step + 1) % cfg->eval_every == 0) || last) {
            run_evals(model, t->data, cfg, comm, lg, step + 1, last, last_eval, &t->batch);
            // The figures come from a forward, which under parallel.context needs the group
            if (last && !loader_is_lm(t->data) && comm->rank < model->cfg.cp.size + !comm->rank)
                report_aux(comm->rank ? NULL : lg, model, t->data, &t->batch);
        }
        int due =
            !last && ((cfg->ckpt_every_steps > 0 && run->st.step % cfg->ckpt_every_steps == 0) ||
                      (cfg->ckpt_every_minutes > 0 &&
                       now_seconds() - t_ckpt >= 60 * cfg->ckpt_every_minutes));
        if (due) {
            if (!save_checkpoint(run, lg, "training goes on from the previous checkpoint"))
                t->have_checkpoint = 1;
            t_ckpt = now_seconds();
        }
    }
    double wall = now_seconds() - lg->t_start;
    if (!comm->rank && dev->k->memory_peak)
        jsonl(lg, "{\"event\":\"cost\",\"memory_peak_bytes\":%zu}", dev->k->memory_peak(0));
    // The end of training (or a stop request) always leaves a checkpoint to resume or reuse.
    // When that write fails, nothing claims it happened: a stopped run ends failed (a requeued
    // job would otherwise restart silently from an older checkpoint), a finished one exits 1.
    int ckpt_failed = 0;
    if (exit_code == 0)
        ckpt_failed = save_checkpoint(run, lg,
                                      preempted ? "stopping without a checkpoint of this step "
                                                  "(status: failed); its previous checkpoint "
                                                  "stays the newest"
                                                : "the run finished, but its newest checkpoint "
                                                  "is the previous one") != 0;
    if (ckpt_failed && preempted) preempted = 0, exit_code = MT_EXIT_FAIL;
    write_final_state(run, preempted, exit_code);
    if (!comm->rank)
        log_summary(lg, comm, &run->st, first_step, wall, t->GB * t->T_full, last_eval->acc,
                    last_eval->loss, model->n_params,
                    exit_code   ? "failed"
                    : preempted ? "preempted"
                                : "finished");
    return exit_code ? exit_code : ckpt_failed ? MT_EXIT_FAIL : 0;
}

// A model too large for memory but small enough for overcommit would thrash for minutes and be
// killed without a word: estimate what this rank allocates and refuse beforehand, with the
// keys that reduce it. Ranks on a CPU node share its memory; every rank must agree.
static int check_memory(Comm *comm, const ModelConfig *mc, const Backend_f32 *k, int micro_batch,
                        int T) {
    size_t n_params, acts;
    double need = (double)model_memory_estimate_f32(mc, k, micro_batch, T, &n_params, &acts);
    double avail = k->memory_available ? (double)k->memory_available() : 0;
    if (!strcmp(k->name, "cpu") && comm->local_world > 1) avail /= comm->local_world;
    double flags[2] = {avail > 0 && need > avail, 0};
    if (flags[0] && !comm->rank) flags[1] = 1;
    comm_allreduce_sum_f64(comm, flags, 2);
    if (flags[0] == 0) return 0;
    if (flags[0] > 0 && (!comm->rank || flags[1] == 0)) {
        const double gib = 1024.0 * 1024 * 1024;
        fprintf(stderr,
                "madtrain: error: this run needs about %.1f GiB per rank on %s (%zu parameters: "
                "%.1f GiB with gradients and AdamW moments; activations %.1f GiB for a micro-batch "
                "of %d x %d) but %.1f GiB is available; reduce model.d_model, model.n_layers, "
                "train.batch_size (or raise train.grad_accum) or data.seq_len\n",
                need / gib, k->name, n_params, (need - (double)acts) / gib, (double)acts / gib,
                micro_batch, T, avail / gib);
    }
    return MT_EXIT_USAGE;
}

int train_run(const Config *cfg, Comm *comm, int eval_only) {
    char err[1400];
    int threads = set_threads(cfg, comm);
    h5_setup(cfg->hdf5_errors);
    if (!ranks_joined(comm)) return MT_EXIT_USAGE;

    DataOptions data_opt = data_options_from_config(cfg);
    // The ranks of a context group read the same rows: the reader serves the group's share.
    int G = (int)cfg->context;
    Loader *data = loader_open(&data_opt, comm->rank / G, comm->world / G, err, sizeof(err));
    if (!data) comm_fatal(comm, MT_EXIT_FAIL, "%s", err);
    ModelConfig mc;
    int images = loader_is_images(data);
    if (images ? vision_config_from(cfg, data, comm->rank, &mc, err, sizeof(err))
               : model_config_from(cfg, loader_vocab(data), loader_seq_len(data), &mc, err,
                                   sizeof(err))) {
        if (!comm->rank) fprintf(stderr, "madtrain: error: %s\n", err);
        return MT_EXIT_USAGE;
    }
    int T_full = loader_seq_len(data);
    if (G > 1) {
        if (images) {
            if (!comm->rank)
                fprintf(stderr,
                        "madtrain: error: parallel.context > 1 splits token sequences; images "
                        "train whole (use parallel.context: 1)\n");
            return MT_EXIT_USAGE;
        }
        if (T_full % G) {
            if (!comm->rank)
                fprintf(stderr,
                        "madtrain: error: parallel.context (%d) must divide the sequence length "
                        "(%d): every rank of a group holds an equal slice\n",
                        G, T_full);
            return MT_EXIT_USAGE;
        }
        mc.cp = context_group(comm, G, T_full);
    }
    Device dev;
    int rc = device_open(cfg, comm, &dev);
    if (rc) return rc;
    if (G > 1 && dev.k != &BACKEND_CPU_f32) {
        if (!comm->rank)
            fprintf(stderr,
                    "madtrain: error: parallel.context > 1 runs on device: cpu for now (the "
                    "mixers' CUDA kernels carry no state across a cut yet)\n");
        device_close(&dev);
        return MT_EXIT_USAGE;
    }
    // T: tokens per sequence (per rank: its slice), or per image (its patches, and the class
    // token)
    if (images) T_full = vit_tokens(&mc.vision);
    int T = T_full / G;
    if ((rc = check_memory(comm, &mc, dev.k,
                           (int)(cfg->batch_size / (comm->world / G * cfg->grad_accum)), T)))
        return rc;
    Run run = {.cfg = cfg, .comm = comm, .k = dev.k};
    if ((rc = run_build(&run, &mc))) return rc;
    Model_f32 *model = &run.model;
    int64_t GB = cfg->batch_size, accum = cfg->grad_accum, W = comm->world, groups = W / G;
    int mb = (int)(GB / (groups * accum));
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

    int resumed = 0;
    if ((rc = run_restore(&run, &resumed))) return rc;
    if (eval_only && !resumed && !cfg->init_from[0]) {
        if (!comm->rank)
            fprintf(stderr,
                    "madtrain: error: eval needs checkpoint.resume or checkpoint.init_from\n");
        return MT_EXIT_USAGE;
    }
    run.st.world = comm->world;

    Logger lg;
    if (!comm->rank) run_dir_prepare(&run, eval_only);
    log_open(&lg, cfg, comm, resumed || eval_only);
    log_header(cfg, comm, threads, dev.describe, &mc, model->n_params, loader_describe(data),
               T_full, mb, steps);
    size_t per_step = (size_t)accum * mb * T_full;  // whole rows are read, then sliced
    Trainer t = {
        .run = &run,
        .lg = &lg,
        .data = data,
        .batch = {xmalloc(sizeof(int) * per_step), xmalloc(sizeof(int) * per_step),
                  xmalloc(sizeof(int) * per_step), xmalloc(sizeof(int) * per_step),
                  images ? xmalloc(sizeof(float) * (size_t)accum * mb * mc.vision.height *
                                   mc.vision.width * mc.vision.channels)
                         : NULL},
        .GB = GB,
        .W = W,
        .accum = accum,
        .steps = steps,
        .mb = mb,
        .T = T,
        .T_full = T_full,
        .groups = groups,
        .ap = {cfg->lr, cfg->beta1, cfg->beta2, cfg->adam_eps, cfg->weight_decay},
        .have_checkpoint = resumed,
    };
    t.interval.images = images;
    EvalResult last_eval = {0};
    int exit_code = 0;
    if (eval_only)
        run_evals(model, data, cfg, comm, &lg, run.st.step, 1, &last_eval, &t.batch);
    else
        exit_code = run_training(&t, &dev, &last_eval);
    log_close(&lg);
    loader_close(data);
    free(t.batch.ids), free(t.batch.targets), free(t.batch.levels), free(t.batch.pos);
    free(t.batch.pixels);
    grad_reducer_free(t.reducer);
    free(t.staging);
    run_free(&run);
    device_close(&dev);
    return exit_code;
}
