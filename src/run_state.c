// A run's state between device and host: the model and optimizer state, their host views, and
// everything that crosses to disk (checkpoints, resume, warm start, rollback, final state).
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/rng.h"
#include "train_internal.h"
#include "util.h"

static int host_aliased(const Run *r) {
    return r->host_params == r->model.params;
}

static int moments_aliased(const Run *r) {
    return r->host_m == r->adam_m;
}

int run_build(Run *r, const ModelConfig *mc) {
    char err[1400];
    const Backend_f32 *k = r->k;
    Model_f32 *model = &r->model;
    if (model_build_f32(model, mc, k, err, sizeof(err))) {
        if (!r->comm->rank) fprintf(stderr, "madtrain: error: %s\n", err);
        return MT_EXIT_USAGE;
    }
    model_init_f32(model, (uint64_t)r->cfg->seed);
    size_t state_bytes = sizeof(float) * model->n_params;
    shards_init(&r->shards, model->n_params, r->comm->world, r->comm->rank, (int)r->cfg->zero);
    size_t slice_bytes = sizeof(float) * (shard_hi(&r->shards) - shard_lo(&r->shards));
    r->adam_m = k->alloc(slice_bytes ? slice_bytes : sizeof(float));
    r->adam_v = k->alloc(slice_bytes ? slice_bytes : sizeof(float));
    if (!model->params || !model->grads || !r->adam_m || !r->adam_v)
        comm_fatal(r->comm, MT_EXIT_FAIL, "out of %s memory for %zu parameters", k->name,
                   model->n_params);
    // debug.host_mirrors: the CPU run keeps copies as a GPU run must, so the CPU tests cover
    // every crossing (checkpoints, resume, warm start, rollback, replica hashes, final state).
    int mirrors = k != &BACKEND_CPU_f32 || r->cfg->debug_host_mirrors;
    r->host_params = mirrors ? xmalloc(state_bytes) : model->params;
    if (r->shards.on) {  // whole moments on rank 0 only, for the checkpoints it writes
        r->host_m = r->comm->rank ? NULL : xmalloc(state_bytes);
        r->host_v = r->comm->rank ? NULL : xmalloc(state_bytes);
    } else {
        r->host_m = mirrors ? xmalloc(state_bytes) : r->adam_m;
        r->host_v = mirrors ? xmalloc(state_bytes) : r->adam_v;
    }
    return 0;
}

void run_free(Run *r) {
    if (!host_aliased(r)) free(r->host_params);
    if (!moments_aliased(r)) free(r->host_m), free(r->host_v);
    r->k->release(r->adam_m), r->k->release(r->adam_v);
    shards_free(&r->shards);
    model_free_f32(&r->model);
}

void params_to_host(Run *r) {
    if (!host_aliased(r))
        r->k->download(r->host_params, r->model.params, sizeof(float) * r->model.n_params);
}

// ZeRO: this rank's slice of a moment buffer gathered into rank 0's whole host copy (the slice
// is host memory on the CPU backend; downloaded first on a device).
static void gather_moment(Run *r, const float *slice_dev, float *host_all) {
    size_t lo = shard_lo(&r->shards), n = shard_hi(&r->shards) - lo;
    const float *mine = slice_dev;
    float *staged = NULL;
    if (r->k != &BACKEND_CPU_f32) {
        staged = xmalloc(sizeof(float) * (n ? n : 1));
        r->k->download(staged, slice_dev, sizeof(float) * n);
        mine = staged;
    }
    comm_gather_slices_f32(r->comm, mine, host_all, r->shards.at, 0);
    free(staged);
}

void state_to_host(Run *r) {
    params_to_host(r);
    if (r->shards.on) {
        gather_moment(r, r->adam_m, r->host_m);
        gather_moment(r, r->adam_v, r->host_v);
        return;
    }
    if (moments_aliased(r)) return;
    size_t bytes = sizeof(float) * r->model.n_params;
    r->k->download(r->host_m, r->adam_m, bytes);
    r->k->download(r->host_v, r->adam_v, bytes);
}

// The parameters and this rank's slice of whole moments m, v (host) to the device.
static void load_state(Run *r, const float *m, const float *v) {
    if (!host_aliased(r))
        r->k->upload(r->model.params, r->host_params, sizeof(float) * r->model.n_params);
    if (m == r->adam_m) return;
    size_t lo = shard_lo(&r->shards), n = shard_hi(&r->shards) - lo;
    r->k->upload(r->adam_m, m + lo, sizeof(float) * n);
    r->k->upload(r->adam_v, v + lo, sizeof(float) * n);
}

void state_to_device(Run *r) {
    load_state(r, r->host_m, r->host_v);
}

// Whole-moment host buffers to read a checkpoint into: the host views where they are whole,
// else (ZeRO, ranks other than 0) temporaries that release_read_buffers frees.
static void read_buffers(Run *r, float **m, float **v) {
    if (r->host_m) {
        *m = r->host_m, *v = r->host_v;
        return;
    }
    *m = xmalloc(sizeof(float) * r->model.n_params);
    *v = xmalloc(sizeof(float) * r->model.n_params);
}

static void release_read_buffers(Run *r, float *m, float *v) {
    if (m != r->host_m) free(m), free(v);
}

uint64_t replica_hash(Run *r) {
    params_to_host(r);  // the hash reads the parameters only
    return hash_fnv1a64(r->host_params, sizeof(float) * r->model.n_params);
}

// ---- checkpoints ---------------------------------------------------------------------------
// An I/O outcome every rank must act on alike (a checkpoint was written, or not): rank 0's
// result and message, broadcast, so no rank rolls back to, or stops on, a checkpoint another
// rank thinks does not exist.
int agree_on_rank0(Comm *comm, int rc, char *msg, size_t n) {
    struct {
        int rc;
        char msg[1400];
    } o;
    memset(&o, 0, sizeof(o));
    o.rc = rc;
    if (!comm->rank) snprintf(o.msg, sizeof(o.msg), "%s", msg ? msg : "");
    comm_bcast_bytes(comm, &o, sizeof(o), 0);
    if (msg) snprintf(msg, n, "%s", o.msg);
    return o.rc;
}

// Every rank has the same parameters (checked by the replica hash), so rank 0 writes alone;
// all ranks return its result. `then` says what the run does after a failed write.
int save_checkpoint(Run *r, Logger *lg, const char *then) {
    char err[1400] = "", path[1100];
    int rc = 0;
    double t0 = now_seconds();
    if (r->shards.on) state_to_host(r);  // collective: every rank sends its slice
    if (!r->comm->rank) {
        if (!r->shards.on) state_to_host(r);
        rc = checkpoint_write(r->cfg->run_dir, &r->model, r->host_params, r->host_m, r->host_v,
                              &r->st, r->cfg, path, sizeof(path), err, sizeof(err))
                 ? -1
                 : 0;
        if (rc) {
            fprintf(stderr, "madtrain: error: %s; %s\n", err, then);
            jsonl(lg, "{\"event\":\"checkpoint_failed\",\"step\":%lld}", (long long)r->st.step);
        } else {
            checkpoint_prune(r->cfg->run_dir, r->cfg->ckpt_keep, r->cfg->ckpt_keep_every);
            printf("checkpoint: %s (%.2fs)\n", path, now_seconds() - t0);
            fflush(stdout);
            char esc[2 * sizeof(path) + 16];
            jsonl(lg, "{\"event\":\"checkpoint\",\"step\":%lld,\"path\":\"%s\"}",
                  (long long)r->st.step, json_escape(path, esc, sizeof(esc)));
        }
    }
    return agree_on_rank0(r->comm, rc, err, sizeof(err));
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
        float *m = NULL, *v = NULL;
        if (!rc) {
            read_buffers(r, &m, &v);
            rc = checkpoint_read(cands[i], &r->model, r->host_params, m, v, &r->st, NULL, err,
                                 sizeof(err));
            if (!rc) load_state(r, m, v);
            release_read_buffers(r, m, v);
        }
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
    }
    for (int j = 0; j < n; j++) free(cands[j]);
    if (rc) comm_fatal(r->comm, MT_EXIT_FAIL, "no usable checkpoint in %s", cfg->run_dir);
    return 0;
}

// checkpoint.init_from: parameters matched by name and shape; the tensors it does not hold
// keep their initialisation, and the moments start at zero.
static int warm_start(Run *r) {
    char err[1400];
    size_t state_bytes = sizeof(float) * r->model.n_params;
    r->k->download(r->host_params, r->model.params, state_bytes);  // tensors not loaded stay
    if (checkpoint_load_params(r->cfg->init_from, &r->model, r->host_params, err, sizeof(err))) {
        if (!r->comm->rank) fprintf(stderr, "madtrain: error: %s\n", err);
        return MT_EXIT_USAGE;
    }
    r->k->upload(r->model.params, r->host_params, state_bytes);
    if (!r->comm->rank) printf("init_from: parameters loaded from %s\n", r->cfg->init_from);
    return 0;
}

int run_restore(Run *r, int *resumed) {
    int rc = try_resume(r, resumed);
    if (rc) return rc;
    if (!*resumed && r->cfg->init_from[0]) return warm_start(r);
    return 0;
}

void rollback(Run *r) {
    // The data position keeps going, so the batches that produced the non-finite steps are not
    // replayed.
    char *last[1], err[1400] = "no checkpoint in the run directory";
    TrainState keep = r->st;
    float *m, *v;
    read_buffers(r, &m, &v);
    if (checkpoint_list(r->cfg->run_dir, last, 1) < 1 ||
        checkpoint_read(last[0], &r->model, r->host_params, m, v, &r->st, NULL, err, sizeof(err)))
        comm_fatal(r->comm, MT_EXIT_FAIL, "rollback failed: %s", err);
    load_state(r, m, v);
    release_read_buffers(r, m, v);
    if (!r->comm->rank) printf("rollback: reloaded %s\n", last[0]);
    free(last[0]);
    r->st = keep;
}

// ---- the run directory -----------------------------------------------------------------------
static int write_text(FILE *f, void *ctx) {
    return fputs(ctx, f) < 0 ? -1 : 0;
}

void run_dir_prepare(const Run *r, int eval_only) {
    const Config *cfg = r->cfg;
    char path[1100];
    if (mkdir_p(cfg->run_dir))
        comm_fatal(r->comm, MT_EXIT_FAIL, "cannot create run directory '%s': %s", cfg->run_dir,
                   strerror(errno));
    checkpoint_remove_partial(cfg->run_dir);
    snprintf(path, sizeof(path), "%s/config.yaml", cfg->run_dir);
    if (!eval_only && write_file_atomic(path, config_yaml_writer, (void *)cfg))
        comm_fatal(r->comm, MT_EXIT_FAIL, "cannot write '%s': %s", path, strerror(errno));
}

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

void write_final_state(Run *r, int preempted, int exit_code) {
    if (r->comm->rank) return;
    char path[1100];
    snprintf(path, sizeof(path), "%s/final_state.bin", r->cfg->run_dir);
    // written only after a clean finish, whose final checkpoint just copied the state down
    StateFile sf = {r->host_params, r->host_m, r->host_v, r->model.n_params};
    if (!preempted && exit_code == 0 && write_file_atomic(path, write_state, &sf))
        comm_fatal(r->comm, MT_EXIT_FAIL, "cannot write '%s': %s", path, strerror(errno));
    snprintf(path, sizeof(path), "%s/status", r->cfg->run_dir);
    const char *status = exit_code ? "failed\n" : preempted ? "preempted\n" : "finished\n";
    write_file_atomic(path, write_text, (void *)status);
}
