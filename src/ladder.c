// `madtrain ladder`: a compute-matched scaling ladder of a candidate mixer against baselines.
//
// From one config (the candidate at rung 0), rung i grows the model by a fixed rule: width
// d_model * 2^(i/2) rounded to a multiple of 8 x n_heads (head dims stay multiples of 8), depth
// n_layers + i, an explicit model.d_ff scaled with the width. The candidate at rung i trains on
// R tokens per parameter (--tokens-per-param, default 20, Chinchilla's ratio), which fixes the
// rung's training FLOPs C_i = R N_i F_cand, with F the model FLOPs per token as `madtrain bench`
// counts them (6 per matmul weight plus 3x the mixer core's own forward FLOPs from its row of
// the op table). Every mixer of the rung gets C_i: its step count is C_i / (F_mixer x tokens
// per step), rounded up, so each trains about the same FLOPs (not the same tokens).
//
// Each run is a run directory <out>/r<i>-<label> with its resolved config <out>/r<i>-<label>.yaml;
// <out>/ladder.tsv lists them. The runs execute in this process, one after another, under
// whatever MPI world launched the command (every rank trains every run, data-parallel as
// usual), or one per SLURM array task (--slurm, through launch/madtrain.sbatch). A finished
// run (status "finished") is skipped and an unfinished one resumes from its checkpoint, so
// the same command continues a ladder. `madtrain report --ladder <out>` draws the result.
#include "ladder.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../data/loader.h"
#include "bench.h"
#include "config.h"
#include "data_config.h"
#include "model.h"
#include "train.h"
#include "util.h"

typedef struct {
    int rung;
    char label[64];
    Config cfg;
    size_t params;
    double flops_per_token, flops;
    int64_t steps;
    char cfg_path[1100];
} LadderRun;

static void ladder_usage(FILE *f) {
    fprintf(
        f,
        "usage: madtrain ladder --config CANDIDATE.yaml [--baselines softmax,gla,mamba2]\n"
        "                       [--rungs N] [--tokens-per-param R] [--budget FLOPS]\n"
        "                       [--out DIR] [--list | --task K [--print-run-dir] |\n"
        "                       --slurm [--dry-run]] [key=value ...]\n\n"
        "A compute-matched ladder: rung i (0..N-1) is the config's model with width x 2^(i/2)\n"
        "(a multiple of 8 x model.n_heads) and model.n_layers + i; the candidate (the config's\n"
        "model.mixer) trains R tokens per parameter (default 20), and every baseline of the\n"
        "rung the same training FLOPs (model FLOPs per token as bench counts them). Runs go\n"
        "to DIR/r<i>-<mixer> (default DIR: runs/ladder-<candidate>), listed in\n"
        "DIR/ladder.tsv; they train here one after another (under mpirun, on all ranks), or\n"
        "as a SLURM job array with --slurm (sbatch options: $LADDER_SBATCH_ARGS; tasks at\n"
        "once: $LADDER_ARRAY_LIMIT). Finished\n"
        "runs are skipped and unfinished ones resume, so the same command continues.\n"
        "--budget refuses a ladder whose runs need more training FLOPs in all; --list\n"
        "prints the runs; --task K trains run K only. Then: madtrain report --ladder DIR.\n");
}

// Resets every mixer option the mixer does not read to its default (a baseline inherits the
// candidate's config, whose mixer.* keys it may not read and would refuse).
static int reset_unread_options(Config *c, const char *mixer, char *err, size_t errlen) {
    const OpDef_f32 *op = op_find_f32(mixer);
    int n;
    const ConfigKey *keys = config_keys(&n);
    for (int i = 0; i < n; i++) {
        if (keys[i].type != KEY_OPTION) continue;
        const char *key = keys[i].name + strlen("mixer.");
        if (op->options && op_option_find(op->options, key)) continue;
        if (config_set(c, keys[i].name, keys[i].def, "ladder", err, errlen)) return -1;
    }
    return 0;
}

static int set_key(Config *c, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int set_key(Config *c, const char *key, const char *fmt, ...) {
    char value[512], err[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(value, sizeof(value), fmt, ap);
    va_end(ap);
    return config_set(c, key, value, "ladder", err, sizeof(err));
}

typedef struct {
    const LadderRun *runs;
    int n;
} Listing;

static int write_listing(FILE *f, void *ctx) {
    const Listing *l = ctx;
    fprintf(f,
            "task\trung\tmixer\td_model\tn_layers\tparams\tflops_per_token\tsteps\tflops\tdir\n");
    for (int i = 0; i < l->n; i++) {
        const LadderRun *r = &l->runs[i];
        fprintf(f, "%d\t%d\t%s\t%lld\t%lld\t%zu\t%.6g\t%lld\t%.6g\t%s\n", i, r->rung, r->label,
                (long long)r->cfg.d_model, (long long)r->cfg.n_layers, r->params,
                r->flops_per_token, (long long)r->steps, r->flops, r->cfg.run_dir);
    }
    return ferror(f) ? -1 : 0;
}

extern char **environ;

static void scrub_mpi_environment(void) {
    static const char *prefixes[] = {"OMPI_", "PMIX_", "PRTE_", "OPAL_", "HYDI_", "PMI_"};
    for (int again = 1; again;) {
        again = 0;
        for (char **e = environ; *e && !again; e++)
            for (size_t p = 0; p < sizeof(prefixes) / sizeof(prefixes[0]); p++)
                if (!strncmp(*e, prefixes[p], strlen(prefixes[p]))) {
                    char name[256];
                    snprintf(name, sizeof(name), "%.*s", (int)strcspn(*e, "="), *e);
                    unsetenv(name);
                    again = 1;  // environ changed: walk it again
                    break;
                }
    }
}

int ladder_main(int argc, char **argv, Comm *comm) {
    const char *config_path = NULL, *baselines = "softmax", *out = NULL;
    int rungs = 3, task = -1, list = 0, slurm = 0, dry = 0, print_dir = 0;
    LadderRun *runs = NULL;
    double ratio = 20, budget = 0;
    char err[1400] = "";
    Config base;
    config_defaults(&base);
    for (int i = 1; i < argc; i++)  // the config file first: key=value arguments override it
        if (!strcmp(argv[i], "--config") && i + 1 < argc) config_path = argv[i + 1];
    if (config_path && config_load_file(&base, config_path, err, sizeof(err))) goto usage_err;
    for (int i = 1; i < argc && !err[0]; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            if (!comm->rank) ladder_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--list")) {
            list = 1;
        } else if (!strcmp(a, "--slurm")) {
            slurm = 1;
        } else if (!strcmp(a, "--dry-run")) {
            dry = 1;
        } else if (!strcmp(a, "--print-run-dir")) {
            print_dir = 1;
        } else if (a[0] == '-' && !v) {
            snprintf(err, sizeof(err), "ladder: %s needs a value", a);
        } else if (!strcmp(a, "--config")) {
            i++;
        } else if (!strcmp(a, "--baselines")) {
            baselines = v, i++;
        } else if (!strcmp(a, "--out")) {
            out = v, i++;
        } else if (!strcmp(a, "--rungs")) {
            rungs = (int)strtol(v, &end, 10), i++;
            if (*end || rungs < 1 || rungs > 12)
                snprintf(err, sizeof(err), "ladder: --rungs must be 1..12, not '%s'", v);
        } else if (!strcmp(a, "--task")) {
            task = (int)strtol(v, &end, 10), i++;
            if (*end || task < 0)
                snprintf(err, sizeof(err), "ladder: --task '%s' is not a run index", v);
        } else if (!strcmp(a, "--tokens-per-param")) {
            ratio = strtod(v, &end), i++;
            if (*end || !(ratio > 0) || ratio > 1e6)
                snprintf(err, sizeof(err), "ladder: --tokens-per-param must be > 0, not '%s'", v);
        } else if (!strcmp(a, "--budget")) {
            budget = strtod(v, &end), i++;
            if (*end || !(budget > 0))
                snprintf(err, sizeof(err), "ladder: --budget must be a FLOP count > 0, not '%s'",
                         v);
        } else if (a[0] == '-') {
            snprintf(err, sizeof(err), "ladder: unknown option '%s' (madtrain ladder --help)", a);
        } else if (config_override(&base, a, err, sizeof(err))) {
            break;
        }
    }
    if (!err[0] && !config_path) snprintf(err, sizeof(err), "ladder: --config FILE is required");
    if (!err[0] && strchr(base.mixer, ','))
        snprintf(err, sizeof(err),
                 "ladder: model.mixer must name one mixer (the candidate), not a per-layer list "
                 "('%.200s'): the rungs change the depth",
                 base.mixer);
    if (!err[0]) config_validate(&base, comm->world, err, sizeof(err));
    if (err[0]) goto usage_err;

    // The mixers: the candidate first, then each baseline once.
    char names[16][64], list_buf[512];
    int n_mixers = 0;
    snprintf(names[n_mixers++], sizeof(names[0]), "%.63s", base.mixer);
    snprintf(list_buf, sizeof(list_buf), "%s", baselines);
    for (char *save = NULL, *t = strtok_r(list_buf, ", ", &save); t;
         t = strtok_r(NULL, ", ", &save)) {
        if (!op_find_f32(t) || !op_find_f32(t)->mixer) {
            snprintf(err, sizeof(err), "ladder: --baselines: '%s' is not a mixer (madtrain mixers)",
                     t);
            goto usage_err;
        }
        int dup = 0;
        for (int m = 0; m < n_mixers; m++) dup |= !strcmp(names[m], t);
        if (!dup && n_mixers < 16) snprintf(names[n_mixers++], sizeof(names[0]), "%s", t);
    }
    char out_dir[600];
    snprintf(out_dir, sizeof(out_dir), "%s", out ? out : "");
    if (!out) snprintf(out_dir, sizeof(out_dir), "runs/ladder-%.63s", base.mixer);

    // The data's vocabulary and sequence length size the models (the same for every run).
    DataOptions data_opt = data_options_from_config(&base);
    Loader *data = loader_open(&data_opt, comm->rank, comm->world, err, sizeof(err));
    if (!data) comm_fatal(comm, MT_EXIT_FAIL, "%s", err);
    int vocab = loader_vocab(data), T = loader_seq_len(data);
    loader_close(data);

    int n_runs = rungs * n_mixers;
    runs = xcalloc((size_t)n_runs, sizeof(LadderRun));
    double total = 0, tokens_per_step = (double)base.batch_size * T;
    int q = 8 * (int)base.n_heads;
    for (int i = 0; i < rungs; i++) {
        int d = (int)lround(base.d_model * pow(2.0, i / 2.0) / q) * q;
        if (d < q) d = q;
        double rung_flops = 0;
        for (int m = 0; m < n_mixers; m++) {
            LadderRun *r = &runs[i * n_mixers + m];
            r->rung = i;
            r->cfg = base;
            Config *c = &r->cfg;
            snprintf(r->label, sizeof(r->label), "%.63s",
                     m == 0 && base.run_name[0] ? base.run_name : names[m]);
            int rc =
                set_key(c, "model.mixer", "%s", names[m]) || set_key(c, "model.d_model", "%d", d) ||
                set_key(c, "model.n_layers", "%lld", (long long)base.n_layers + i) ||
                (base.d_ff
                     ? set_key(c, "model.d_ff", "%lld",
                               (long long)llround(base.d_ff * (double)d / base.d_model / 8) * 8)
                     : 0) ||
                set_key(c, "run.name", "%s", r->label) ||
                set_key(c, "run.dir", "%s/r%d-%s", out_dir, i, r->label) ||
                set_key(c, "checkpoint.resume", "auto") || set_key(c, "train.epochs", "0");
            if (!rc) rc = reset_unread_options(c, names[m], err, sizeof(err));
            ModelConfig mc;
            if (rc || model_config_from(c, vocab, T, &mc, err, sizeof(err))) {
                if (!err[0])
                    snprintf(err, sizeof(err), "ladder: rung %d of %s: bad size", i, names[m]);
                goto usage_err;
            }
            size_t acts;
            model_memory_estimate_f32(&mc, &BACKEND_CPU_f32, 1, T, &r->params, &acts);
            r->flops_per_token = bench_flops_per_token(&mc, T);
            if (m == 0) rung_flops = ratio * (double)r->params * r->flops_per_token;
            r->steps = (int64_t)ceil(rung_flops / (r->flops_per_token * tokens_per_step));
            if (r->steps < 1) r->steps = 1;
            r->flops = (double)r->steps * tokens_per_step * r->flops_per_token;
            set_key(c, "train.steps", "%lld", (long long)r->steps);
            if (config_validate(c, comm->world, err, sizeof(err))) goto usage_err;
            snprintf(r->cfg_path, sizeof(r->cfg_path), "%s/r%d-%s.yaml", out_dir, i, r->label);
            total += r->flops;
        }
    }
    if (budget > 0 && total > budget) {
        snprintf(
            err, sizeof(err),
            "ladder: the %d runs need %.3g training FLOPs, above --budget %.3g: fewer --rungs, "
            "a smaller --tokens-per-param or a smaller model.d_model",
            n_runs, total, budget);
        goto usage_err;
    }
    if (task >= n_runs) {
        snprintf(err, sizeof(err), "ladder: --task %d, but the ladder has %d runs (0..%d)", task,
                 n_runs, n_runs - 1);
        goto usage_err;
    }
    if (print_dir) {
        if (task < 0) {
            snprintf(err, sizeof(err), "ladder: --print-run-dir needs --task K");
            goto usage_err;
        }
        if (!comm->rank) printf("%s\n", runs[task].cfg.run_dir);
        free(runs);
        return 0;
    }

    // The listing and the resolved configs (rank 0), before anything trains.
    int wrc = 0;
    if (!comm->rank) {
        wrc = mkdir_p(out_dir);
        char path[700];
        snprintf(path, sizeof(path), "%s/ladder.tsv", out_dir);
        Listing l = {runs, n_runs};
        if (!wrc) wrc = write_file_atomic(path, write_listing, &l);
        for (int i = 0; i < n_runs && !wrc; i++)
            wrc = write_file_atomic(runs[i].cfg_path, config_yaml_writer, &runs[i].cfg);
        if (wrc)
            snprintf(err, sizeof(err), "ladder: cannot write in '%s': %s", out_dir,
                     strerror(errno));
        printf("ladder: %d rung(s) x %d mixer(s), %.3g training FLOPs in all -> %s/ladder.tsv\n",
               rungs, n_mixers, total, out_dir);
        printf(
            "| task | rung | mixer | d_model | layers | params | FLOP/token | steps | FLOPs |\n"
            "|---|---|---|---|---|---|---|---|---|\n");
        for (int i = 0; i < n_runs; i++)
            printf("| %d | %d | %s | %lld | %lld | %zu | %.3g | %lld | %.3g |\n", i, runs[i].rung,
                   runs[i].label, (long long)runs[i].cfg.d_model, (long long)runs[i].cfg.n_layers,
                   runs[i].params, runs[i].flops_per_token, (long long)runs[i].steps,
                   runs[i].flops);
        fflush(stdout);
    }
    double w = wrc;
    comm_allreduce_sum_f64(comm, &w, 1);
    if (w)
        comm_fatal(comm, MT_EXIT_FAIL, "%s", err[0] ? err : "ladder: writing the listing failed");
    if (list) {
        free(runs);
        return 0;
    }
    if (slurm) {
        int rc = 0;
        if (!comm->rank) {
            // The same command as one array task each: launch/madtrain.sbatch runs
            // `madtrain ladder <these arguments> --task $SLURM_ARRAY_TASK_ID` and requeues it.
            char cmd[8192];
            const char *extra = getenv("LADDER_SBATCH_ARGS");
            const char *limit = getenv("LADDER_ARRAY_LIMIT");  // tasks at once, e.g. 4
            int n = snprintf(cmd, sizeof(cmd),
                             "sbatch --array=0-%d%s%s %s launch/madtrain.sbatch ladder", n_runs - 1,
                             limit ? "%" : "", limit ? limit : "", extra ? extra : "");
            for (int i = 1; i < argc; i++)
                if (strcmp(argv[i], "--slurm") && strcmp(argv[i], "--dry-run"))
                    n += snprintf(cmd + n, sizeof(cmd) - (size_t)n, " '%s'", argv[i]);
            printf("%s\n", cmd);
            fflush(stdout);
            // This process is an MPI singleton: its launcher variables must not reach the
            // job, whose mpirun would take them for its own and fail without a word.
            if (!dry) {
                scrub_mpi_environment();
                rc = system(cmd) ? MT_EXIT_FAIL : 0;
            }
        }
        free(runs);
        return rc;
    }

    int rc = 0;
    for (int i = 0; i < n_runs && !rc; i++) {
        if (task >= 0 && i != task) continue;
        LadderRun *r = &runs[i];
        if (run_status_is(r->cfg.run_dir, "finished")) {
            if (!comm->rank) printf("ladder: %s finished, skipped\n", r->cfg.run_dir);
            continue;
        }
        if (!comm->rank) {
            printf(
                "ladder: [%d/%d] rung %d, %s: d_model %lld, %lld layers, %zu parameters, %lld "
                "steps (%.3g FLOPs) -> %s\n",
                i + 1, n_runs, r->rung, r->label, (long long)r->cfg.d_model,
                (long long)r->cfg.n_layers, r->params, (long long)r->steps, r->flops,
                r->cfg.run_dir);
            fflush(stdout);
        }
        rc = train_run(&r->cfg, comm, 0);
        // A stopped run (preempted: status says so) ends the ladder here; rerunning resumes it.
        if (!rc && run_status_is(r->cfg.run_dir, "preempted")) break;
    }
    free(runs);
    return rc;

usage_err:
    if (!comm->rank) fprintf(stderr, "madtrain: error: %s\n", err);
    free(runs);
    return MT_EXIT_USAGE;
}
