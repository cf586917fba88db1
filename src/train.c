// The data-parallel training loop. Every rank runs the same loop over the same global batches
// and reads only its slice; after one all-reduce of the flat gradient all ranks hold the same
// gradient, so every decision (clip, skip, stop, eval) is taken identically everywhere.
#include "train.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../data/loader.h"
#include "model.h"
#include "optim.h"
#include "util.h"

void openblas_set_num_threads(int);

int model_config_from(const Config *c, int task_vocab, ModelConfig *mc, char *err, size_t n) {
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
    mc->rope_base = c->rope_base, mc->norm_eps = c->norm_eps, mc->init_std = c->init_std;
    mc->feature_map = c->feature_map, mc->normalize = c->normalize, mc->chunk = (int)c->chunk;
    mc->attn_eps = c->attn_eps;
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", c->mixer);
    int k = 0;
    for (char *save = NULL, *t = strtok_r(buf, ", ", &save); t && k < MAX_LAYERS;
         t = strtok_r(NULL, ", ", &save))
        mc->mixer[k++] = mixer_find(t);
    for (int l = 0; l < mc->n_layers; l++) {
        if (k == 1) mc->mixer[l] = mc->mixer[0];
        mc->rope[l] = c->rope == ROPE_AUTO ? MIXERS[mc->mixer[l]].rope_default : c->rope == ROPE_ON;
    }
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

typedef struct {
    double loss, acc;
    int64_t scored, examples;
} EvalResult;

// Mean loss per scored position and mean per-example accuracy over the test split (or its
// first eval_examples), each rank taking a contiguous block of examples.
static EvalResult evaluate(Model_f32 *m, Loader *data, const Config *cfg, Comm *comm, int *ids,
                           int *targets) {
    int64_t n = loader_eval_size(data);
    if (cfg->eval_examples > 0 && cfg->eval_examples < n) n = cfg->eval_examples;
    int64_t lo = n * comm->rank / comm->world, hi = n * (comm->rank + 1) / comm->world;
    int B = m->B, T = m->T;
    char err[512];
    double sums[4] = {0};  // loss, scored, acc, examples
    for (int64_t start = lo; start < hi; start += B) {
        int64_t count = hi - start < B ? hi - start : B;
        if (loader_eval(data, start, count, ids, targets, err, sizeof(err)))
            comm_fatal(comm, MT_EXIT_FAIL, "%s", err);
        for (size_t i = (size_t)count * T; i < (size_t)B * T; i++) ids[i] = 0, targets[i] = -1;
        ForwardStats st = model_forward_f32(m, ids, targets, 0);
        sums[0] += st.loss_sum, sums[1] += (double)st.n_scored;
        sums[2] += st.example_acc_sum, sums[3] += (double)st.n_examples;
    }
    comm_allreduce_sum_f64(comm, sums, 4);
    EvalResult r = {sums[1] > 0 ? sums[0] / sums[1] : 0, sums[3] > 0 ? sums[2] / sums[3] : 0,
                    (int64_t)sums[1], (int64_t)sums[3]};
    return r;
}

typedef struct {
    const float *params;
    size_t n;
} ParamsFile;

// params.bin: "MTPARAMS", uint64 count, float32 values in the parameter table's order.
static int write_params(FILE *f, void *ctx) {
    const ParamsFile *p = ctx;
    uint64_t n = p->n;
    if (fwrite("MTPARAMS", 1, 8, f) != 8 || fwrite(&n, sizeof(n), 1, f) != 1) return -1;
    return fwrite(p->params, sizeof(float), p->n, f) == p->n ? 0 : -1;
}

static int write_config(FILE *f, void *ctx) {
    config_write_yaml(ctx, f);
    return ferror(f) ? -1 : 0;
}

int train_run(const Config *cfg, Comm *comm) {
    char err[512], path[1100];
    int threads = (int)cfg->threads;
    if (!threads) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        threads = (int)(cores / comm->local_world);
        if (threads < 1) threads = 1;
    }
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);

    Loader *data = loader_open(cfg, comm->rank, comm->world, err, sizeof(err));
    if (!data) comm_fatal(comm, MT_EXIT_FAIL, "%s", err);
    ModelConfig mc;
    if (model_config_from(cfg, loader_vocab(data), &mc, err, sizeof(err))) {
        if (!comm->rank) fprintf(stderr, "madtrain: error: %s\n", err);
        return MT_EXIT_USAGE;
    }
    Model_f32 model;
    if (model_build_f32(&model, &mc, err, sizeof(err))) {
        if (!comm->rank) fprintf(stderr, "madtrain: error: %s\n", err);
        return MT_EXIT_USAGE;
    }
    model_init_f32(&model, (uint64_t)cfg->seed);
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
    if (model_set_batch_f32(&model, mb, T))
        comm_fatal(comm, MT_EXIT_FAIL, "out of memory for activations (micro-batch %d x %d)", mb, T);

    Logger lg = {0};
    if (!comm->rank) {
        if (mkdir_p(cfg->run_dir))
            comm_fatal(comm, MT_EXIT_FAIL, "cannot create run directory '%s': %s", cfg->run_dir,
                       strerror(errno));
        snprintf(path, sizeof(path), "%s/config.yaml", cfg->run_dir);
        if (write_file_atomic(path, write_config, (void *)cfg))
            comm_fatal(comm, MT_EXIT_FAIL, "cannot write '%s': %s", path, strerror(errno));
        snprintf(path, sizeof(path), "%s/metrics.jsonl", cfg->run_dir);
        lg.metrics = fopen(path, "w");
        if (!lg.metrics)
            comm_fatal(comm, MT_EXIT_FAIL, "cannot write '%s': %s", path, strerror(errno));
        printf("madtrain %s | %d rank(s) x %d thread(s) | device cpu\n", MADTRAIN_VERSION,
               comm->world, threads);
        printf("model: %d layers, d_model %d, %d heads, mixer %s, mlp %s, %zu parameters\n",
               mc.n_layers, mc.d_model, mc.n_heads, cfg->mixer, config_enum_name("model.mlp", mc.mlp),
               model.n_params);
        printf("task: %s, T %d, vocab %d | batch %lld (%d per rank x %lld micro-steps) | %lld steps\n",
               config_enum_name("data.task", cfg->task), T, mc.vocab_size, (long long)GB, mb,
               (long long)accum, (long long)steps);
        fflush(stdout);
    }

    float *adam_m = xcalloc(model.n_params, sizeof(float));
    float *adam_v = xcalloc(model.n_params, sizeof(float));
    size_t per_step = (size_t)accum * mb * T;
    int *ids = xmalloc(sizeof(int) * per_step), *targets = xmalloc(sizeof(int) * per_step);
    AdamWParams ap = {cfg->lr, cfg->beta1, cfg->beta2, cfg->adam_eps, cfg->weight_decay};

    lg.t_start = now_seconds();
    double t_last = lg.t_start, interval[4] = {0};  // loss, scored, acc, examples since last log
    int64_t skipped = 0, tokens = 0, tokens_last = 0;
    EvalResult last_eval = {0};
    for (int64_t step = 0; step < steps; step++) {
        // This rank's slice of global batch `step`, as accum micro-batches of mb sequences.
        int64_t base = step * GB + comm->rank * (GB / W);
        if (loader_train(data, base, accum * mb, ids, targets, err, sizeof(err)))
            comm_fatal(comm, MT_EXIT_FAIL, "%s", err);
        double scored = 0;
        for (size_t i = 0; i < per_step; i++) scored += targets[i] >= 0;
        // The loss is the mean over the scored positions of the whole global batch: with the
        // global count known up front, each rank's gradient is already its share of that mean
        // and the all-reduce is a plain sum, exact for any split of the batch.
        comm_allreduce_sum_f64(comm, &scored, 1);
        float scale = scored > 0 ? (float)(1.0 / scored) : 0.0f;
        model_zero_grad_f32(&model);
        double stats[4] = {0};
        for (int64_t k = 0; k < accum; k++) {
            ForwardStats st = model_forward_f32(&model, ids + k * mb * T, targets + k * mb * T, scale);
            model_backward_f32(&model);
            stats[0] += st.loss_sum, stats[1] += (double)st.n_scored;
            stats[2] += st.example_acc_sum, stats[3] += (double)st.n_examples;
        }
        comm_allreduce_sum_f32(comm, model.grads, model.n_params);
        comm_allreduce_sum_f64(comm, stats, 4);
        for (int i = 0; i < 4; i++) interval[i] += stats[i];

        double norm = global_norm(model.grads, model.n_params);
        ap.lr = lr_at(step, steps, cfg->warmup_steps, cfg->lr, cfg->min_lr,
                      cfg->schedule == SCHEDULE_COSINE);
        if (!isfinite(norm)) {
            skipped++;  // every rank sees the same reduced gradient, so all skip together
        } else {
            if (cfg->grad_clip > 0 && norm > cfg->grad_clip) {
                float s = (float)(cfg->grad_clip / norm);
                for (size_t i = 0; i < model.n_params; i++) model.grads[i] *= s;
            }
            adamw_update(model.params, model.grads, adam_m, adam_v, model.info, model.n_tensors, ap,
                         step + 1 - skipped);
        }
        tokens += GB * T;

        int last = step + 1 == steps;
        if (!comm->rank && ((step + 1) % cfg->log_every == 0 || last)) {
            double now = now_seconds(), elapsed = now - lg.t_start;
            double tps = (tokens - tokens_last) / (now - t_last);
            double loss = interval[1] > 0 ? interval[0] / interval[1] : 0;
            double acc = interval[3] > 0 ? interval[2] / interval[3] : 0;
            char el[32], eta[32];
            format_duration(elapsed, el, sizeof(el));
            format_duration(elapsed / (step + 1) * (steps - step - 1), eta, sizeof(eta));
            printf("step %6lld/%lld | loss %.4f | acc %.4f | lr %.2e | gnorm %.3f | %.0f tok/s | "
                   "elapsed %s | eta %s\n",
                   (long long)step + 1, (long long)steps, loss, acc, ap.lr, norm, tps, el, eta);
            fflush(stdout);
            jsonl(&lg,
                  "{\"event\":\"train\",\"step\":%lld,\"loss\":%.6g,\"acc\":%.6g,\"lr\":%.6g,"
                  "\"grad_norm\":%.6g,\"tokens\":%lld,\"tokens_per_s\":%.6g,\"elapsed_s\":%.6f,"
                  "\"skipped_steps\":%lld}",
                  (long long)step + 1, loss, acc, ap.lr, norm, (long long)tokens, tps, elapsed,
                  (long long)skipped);
            t_last = now, tokens_last = tokens;
        }
        if (!comm->rank && (step + 1) % cfg->log_every == 0) memset(interval, 0, sizeof(interval));
        if ((cfg->eval_every > 0 && (step + 1) % cfg->eval_every == 0) || last) {
            if (loader_eval_size(data) > 0) {
                last_eval = evaluate(&model, data, cfg, comm, ids, targets);
                if (!comm->rank) {
                    printf("eval  %6lld | test loss %.4f | test acc %.4f | %lld examples\n",
                           (long long)step + 1, last_eval.loss, last_eval.acc,
                           (long long)last_eval.examples);
                    fflush(stdout);
                    jsonl(&lg,
                          "{\"event\":\"eval\",\"step\":%lld,\"loss\":%.6g,\"acc\":%.6g,"
                          "\"examples\":%lld}",
                          (long long)step + 1, last_eval.loss, last_eval.acc,
                          (long long)last_eval.examples);
                }
            }
        }
    }
    double wall = now_seconds() - lg.t_start;
    if (!comm->rank) {
        snprintf(path, sizeof(path), "%s/params.bin", cfg->run_dir);
        ParamsFile pf = {model.params, model.n_params};
        if (write_file_atomic(path, write_params, &pf))
            comm_fatal(comm, MT_EXIT_FAIL, "cannot write '%s': %s", path, strerror(errno));
        printf("done: %lld steps in %.1fs, %.0f tok/s, test acc %.4f, test loss %.4f, "
               "skipped %lld step(s)\n",
               (long long)steps, wall, wall > 0 ? tokens / wall : 0, last_eval.acc, last_eval.loss,
               (long long)skipped);
        jsonl(&lg,
              "{\"event\":\"summary\",\"steps\":%lld,\"wall_s\":%.3f,\"tokens\":%lld,"
              "\"tokens_per_s\":%.6g,\"test_acc\":%.6g,\"test_loss\":%.6g,\"params\":%zu,"
              "\"skipped_steps\":%lld,\"world\":%d}",
              (long long)steps, wall, (long long)tokens, wall > 0 ? tokens / wall : 0,
              last_eval.acc, last_eval.loss, model.n_params, (long long)skipped, comm->world);
        fclose(lg.metrics);
    }
    loader_close(data);
    free(adam_m), free(adam_v), free(ids), free(targets);
    model_free_f32(&model);
    return 0;
}
