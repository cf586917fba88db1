// `madtrain report`: turns run directories into the results table of an experiment. Runs are
// grouped by label (run.name, or the mixer list), and each column is the mean +- standard
// deviation over the group's runs (seeds). Reads only files the trainer writes: config.yaml
// and metrics.jsonl.
#include "report.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../data/synthetic.h"
#include "config.h"
#include "util.h"

// Value of "key": in one flat JSON object line (the trainer writes numbers and strings only).
static int json_num(const char *line, const char *key, double *v) {
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *p = strstr(line, pat);
    if (!p) return 0;
    char *end;
    *v = strtod(p + strlen(pat), &end);
    return end != p + strlen(pat);
}

static int json_str(const char *line, const char *key, char *out, size_t n) {
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":\"", key);
    const char *p = strstr(line, pat);
    if (!p) return 0;
    p += strlen(pat);
    size_t k = strcspn(p, "\"");
    snprintf(out, n, "%.*s", (int)(k < n ? k : n - 1), p);
    return 1;
}

// Columns of the table; NAN where a run did not record the figure. The fixed columns are the
// run's own; the mixers' figures get the columns their rows declare (OpAuxCol), shown after
// NaN/Inf. Columns no run recorded (per-level accuracy on a task without levels, a mixer's figures
// in a run without that mixer) are left out of the table.
enum {
    COL_TEST_ACC,
    COL_MICRO,
    COL_MACRO,
    COL_LEVEL1,
    COL_LEVEL2,
    COL_LEVEL3,
    COL_LEVEL4,
    COL_BEST_VAL,
    COL_TRAIN_ACC,
    COL_TEST_LOSS,
    COL_PARAMS,
    COL_NONFINITE,
    COL_TOK_S,
    COL_WALL_S,
    COL_STEPS,
    COL_EPOCHS,
    COL_TOP5,      // image data: test top-5 accuracy
    COL_GFLOP,     // training GFLOP per example (sequence or image)
    COL_FWD_MIB,   // activations forward keeps for backward
    COL_BWD_MIB,   // backward's scratch
    COL_PEAK_MIB,  // the device's peak allocation of the run
    // train.profile_step: the profiled step's milliseconds, and its forward (every layer, the
    // embedding, the head and loss), backward, all-reduce wait and optimizer phases
    COL_PH_STEP,
    COL_PH_FWD,
    COL_PH_BWD,
    COL_PH_REDUCE,
    COL_PH_OPTIM,
    N_FIXED_COLS,
    N_COLS = N_FIXED_COLS + 32
};
static const char *COL_NAMES[N_COLS] = {
    "test acc",    "test micro",   "test macro", "test acc L1", "test acc L2", "test acc L3",
    "test acc L4", "best val acc", "train acc",  "test loss",   "params",      "NaN/Inf",
    "tokens/s",    "wall s",       "steps",      "epochs",      "test top5",   "train GFLOP/ex",
    "fwd MiB",     "bwd MiB",      "peak MiB",   "step ms",     "fwd ms",      "bwd ms",
    "reduce ms",   "optim ms"};
static int COL_DIGITS[N_COLS] = {4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 0, 0, 0,
                                 1, 0, 1, 4, 4, 2, 2, 2, 2, 2, 2, 2, 2};
static const OpAuxCol *AUX_COLS[N_COLS];  // by column index (NULL: a fixed column)
static int ORDER[N_COLS], n_cols;         // display order

static void build_columns(void) {
    if (n_cols) return;
    int n = N_FIXED_COLS;
    for (int c = 0; c <= COL_NONFINITE; c++) ORDER[n_cols++] = c;
    for (int r = 0; r < N_OPS_f32; r++)
        for (int a = 0; a < OP_MAX_AUX_COLS && OPS_f32[r]->aux_cols[a].key; a++) {
            const OpAuxCol *col = &OPS_f32[r]->aux_cols[a];
            int seen = 0;
            for (int c = N_FIXED_COLS; c < n; c++) seen |= !strcmp(AUX_COLS[c]->key, col->key);
            if (seen || n == N_COLS) continue;
            AUX_COLS[n] = col, COL_NAMES[n] = col->column, COL_DIGITS[n] = col->digits;
            ORDER[n_cols++] = n++;
        }
    for (int c = COL_NONFINITE + 1; c < N_FIXED_COLS; c++) ORDER[n_cols++] = c;
}

// Every numeric "name":value field of a flat JSON line whose name is col->key or starts with
// col->key and '_' (an indexed family), into the column's running sum, count and last value.
static void aux_fields(const char *line, const OpAuxCol *col, double *sum, int *count, double *last,
                       double *max) {
    size_t kn = strlen(col->key);
    for (const char *p = strchr(line, '"'); p; p = strchr(p + 1, '"')) {
        const char *name = p + 1, *q = strchr(name, '"');
        if (!q) break;
        size_t n = (size_t)(q - name);
        if (q[1] == ':' && n >= kn && !strncmp(name, col->key, kn) &&
            (n == kn || name[kn] == '_')) {
            char *end;
            double v = strtod(q + 2, &end);
            if (end != q + 2) *sum += v, (*count)++, *last = v, *max = v > *max ? v : *max;
        }
        p = q;
    }
}

typedef struct {
    char dir[1024], label[sizeof(((Config *)0)->mixer)];
    double col[N_COLS];
    int has_valid;  // the run evaluated a validation split (else its held-out split is test)
    double T, kv, d_model, lr;  // the grid coordinates (report --sweep)
    // report --mad: the task, its setting (every task parameter, as text) and the decay
    int task;
    char setting[256];
    double chance;  // the benchmark's chance level for its scaled accuracy (NAN: none defined)
    double wd;
} Run;

// A phases event (train.profile_step): its {"phase":NAME,"ms":X,...} entries summed by kind.
static void phase_columns(const char *line, Run *r) {
    double v;
    if (json_num(line, "step_ms", &v)) r->col[COL_PH_STEP] = v;
    double sum[4] = {0};
    static const char *kind[4] = {"forward", "backward", "gradient all-reduce", "optimizer"};
    for (const char *p = strstr(line, "{\"phase\":\""); p; p = strstr(p + 1, "{\"phase\":\"")) {
        const char *name = p + strlen("{\"phase\":\"");
        if (!json_num(p, "ms", &v)) continue;
        for (int k = 0; k < 4; k++)
            if (!strncmp(name, kind[k], strlen(kind[k]))) sum[k] += v;
    }
    for (int k = 0; k < 4; k++) r->col[COL_PH_FWD + k] = sum[k];
}

static int read_run(const char *dir, Run *r, char *err, size_t errlen) {
    memset(r, 0, sizeof(*r));
    for (int i = 0; i < N_COLS; i++) r->col[i] = NAN;
    snprintf(r->dir, sizeof(r->dir), "%s", dir);
    char path[1100];
    Config cfg;
    config_defaults(&cfg);
    snprintf(path, sizeof(path), "%s/config.yaml", dir);
    if (config_load_file(&cfg, path, err, errlen)) return -1;
    snprintf(r->label, sizeof(r->label), "%s", cfg.run_name[0] ? cfg.run_name : cfg.mixer);
    r->T = (double)cfg.seq_len, r->kv = (double)cfg.num_kv_pairs, r->d_model = cfg.d_model;
    r->lr = cfg.lr, r->wd = cfg.weight_decay, r->task = cfg.task;
    if (cfg.task >= TASK_STATE_FIRST) {
        char mod[48] = "";  // the modulus means something to modular arithmetic only
        if (cfg.task == DATA_TASK_MODULAR_ARITHMETIC)
            snprintf(mod, sizeof(mod), ", mod %lld%s", (long long)cfg.modulus,
                     cfg.brackets ? ", brackets" : "");
        // Scaled accuracy (acc - c) / (1 - c), as the benchmark defines it (tasks.md 4):
        // c = 1/2 for the parities, 1/modulus for modular arithmetic; none for word problems.
        r->chance = cfg.task == DATA_TASK_MODULAR_ARITHMETIC ? 1.0 / (double)cfg.modulus
                    : cfg.task == DATA_TASK_PARITY || cfg.task == DATA_TASK_CUMULATIVE_PARITY ? 0.5
                                                                                              : NAN;
        snprintf(r->setting, sizeof(r->setting),
                 "%s%s, T %lld%s, lengths %lld-%lld / test %lld-%lld, train %lld, d %lld",
                 cfg.task == DATA_TASK_WORD_PROBLEM ? cfg.group : "-",
                 cfg.generators ? " (generators)" : "", (long long)cfg.seq_len, mod,
                 (long long)cfg.min_len, (long long)cfg.max_len, (long long)cfg.test_min_len,
                 (long long)cfg.test_max_len, (long long)cfg.train_examples,
                 (long long)cfg.d_model);
    } else
        snprintf(r->setting, sizeof(r->setting),
                 "vocab %lld, T %lld, train %lld, noise %lld/%g, motifs %lld/%lld, copy %lld, d "
                 "%lld",
                 (long long)cfg.data_vocab, (long long)cfg.seq_len, (long long)cfg.train_examples,
                 (long long)cfg.noise_vocab_size, cfg.frac_noise, (long long)cfg.k_motif_size,
                 (long long)cfg.v_motif_size, (long long)cfg.num_tokens_to_copy,
                 (long long)cfg.d_model);
    snprintf(path, sizeof(path), "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot read '%s': %s", path, strerror(errno));
        return -1;
    }
    char line[65536], event[32], split[32];  // a phases event holds a row per layer
    double v, best_val = NAN, best_any = NAN, nonfinite = 0;
    double aux_sum[N_COLS] = {0}, aux_last[N_COLS], aux_max[N_COLS];
    for (int c = 0; c < N_COLS; c++) aux_max[c] = -INFINITY;
    int aux_count[N_COLS] = {0};
    while (fgets(line, sizeof(line), f)) {
        if (!json_str(line, "event", event, sizeof(event))) continue;
        if (!strcmp(event, "train")) {
            if (json_num(line, "acc", &v)) r->col[COL_TRAIN_ACC] = v;
        } else if (!strcmp(event, "eval") && json_num(line, "acc", &v)) {
            int valid = json_str(line, "split", split, sizeof(split)) && !strcmp(split, "valid");
            if (valid && !(v <= best_val)) best_val = v;
            if (!(v <= best_any)) best_any = v;
            if (!valid) {  // the last test evaluation's micro, macro and per-level accuracy
                r->col[COL_MICRO] = json_num(line, "acc_micro", &v) ? v : NAN;
                r->col[COL_MACRO] = json_num(line, "acc_macro", &v) ? v : NAN;
                r->col[COL_TOP5] = json_num(line, "acc_top5", &v) ? v : NAN;
            }
            if (!valid)
                for (int l = 0; l < 4; l++) {
                    char key[32];
                    snprintf(key, sizeof(key), "acc_level_%d", l + 1);
                    r->col[COL_LEVEL1 + l] = json_num(line, key, &v) ? v : NAN;
                }
        } else if (!strcmp(event, "aux")) {  // one line per layer: sum times and counts
            if (json_num(line, "nonfinite", &v)) nonfinite += v;
            for (int c = N_FIXED_COLS; c < N_COLS; c++)
                if (AUX_COLS[c])
                    aux_fields(line, AUX_COLS[c], &aux_sum[c], &aux_count[c], &aux_last[c],
                               &aux_max[c]);
        } else if (!strcmp(event, "cost")) {
            const double mib = 1024.0 * 1024.0;
            if (json_num(line, "train_flops_per_example", &v)) r->col[COL_GFLOP] = v / 1e9;
            if (json_num(line, "forward_bytes", &v)) r->col[COL_FWD_MIB] = v / mib;
            if (json_num(line, "backward_bytes", &v)) r->col[COL_BWD_MIB] = v / mib;
            if (json_num(line, "memory_peak_bytes", &v)) r->col[COL_PEAK_MIB] = v / mib;
        } else if (!strcmp(event, "phases")) {
            phase_columns(line, r);
        } else if (!strcmp(event, "summary")) {
            if (json_num(line, "test_acc", &v)) r->col[COL_TEST_ACC] = v;
            if (json_num(line, "test_loss", &v)) r->col[COL_TEST_LOSS] = v;
            if (json_num(line, "params", &v)) r->col[COL_PARAMS] = v;
            if (json_num(line, "tokens_per_s", &v)) r->col[COL_TOK_S] = v;
            if (json_num(line, "wall_s", &v)) r->col[COL_WALL_S] = v;
            if (json_num(line, "step", &v)) r->col[COL_STEPS] = v;
            if (json_num(line, "skipped_steps", &v)) r->col[COL_NONFINITE] = v;
        }
    }
    fclose(f);
    // Non-finite events: steps skipped for a non-finite gradient, plus non-finite values in
    // the mixers' inputs and outputs on the held-out batch after training.
    if (!isnan(r->col[COL_NONFINITE])) r->col[COL_NONFINITE] += nonfinite;
    for (int c = N_FIXED_COLS; c < N_COLS; c++)
        if (AUX_COLS[c] && aux_count[c])
            r->col[c] = AUX_COLS[c]->reduce == AUX_SUM    ? aux_sum[c]
                        : AUX_COLS[c]->reduce == AUX_MEAN ? aux_sum[c] / aux_count[c]
                        : AUX_COLS[c]->reduce == AUX_MAX  ? aux_max[c]
                                                          : aux_last[c];
    // data.train_examples sizes the in-process tasks only: shard data (data.path) has its own
    // size, which the config does not hold.
    if (cfg.train_examples > 0 && !cfg.data_path[0] && !isnan(r->col[COL_STEPS]))
        r->col[COL_EPOCHS] =
            r->col[COL_STEPS] * (double)cfg.batch_size / (double)cfg.train_examples;
    // Without a validation split the best held-out evaluation stands in (said in the table).
    r->has_valid = !isnan(best_val);
    r->col[COL_BEST_VAL] = r->has_valid ? best_val : best_any;
    if (isnan(r->col[COL_TEST_ACC])) {
        snprintf(err, errlen, "%s: the run has no summary (not finished)", dir);
        return 1;
    }
    return 0;
}

static int is_run_dir(const char *dir) {
    char p[2100];
    snprintf(p, sizeof(p), "%.2000s/metrics.jsonl", dir);
    return access(p, R_OK) == 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

// A run directory, or a directory of run directories (one level, sorted).
static int collect(const char *dir, char **out, int n, int max) {
    if (is_run_dir(dir)) {
        if (n < max) out[n++] = strdup(dir);
        return n;
    }
    DIR *d = opendir(dir);
    if (!d) return n;
    char *names[4096];
    int k = 0;
    for (struct dirent *e; (e = readdir(d)) && k < 4096;) {
        if (e->d_name[0] == '.') continue;
        char p[1100];
        snprintf(p, sizeof(p), "%.800s/%.256s", dir, e->d_name);
        if (is_run_dir(p)) names[k++] = strdup(p);
    }
    closedir(d);
    qsort(names, (size_t)k, sizeof(char *), cmp_str);
    for (int i = 0; i < k; i++) {
        if (n < max)
            out[n++] = names[i];
        else
            free(names[i]);
    }
    return n;
}

typedef struct {
    char label[sizeof(((Config *)0)->mixer)];
    int n;
    double mean[N_COLS], std[N_COLS];
} Group;

static void summarise(Run *runs, int n_runs, Group *groups, int *n_groups) {
    *n_groups = 0;
    for (int i = 0; i < n_runs; i++) {
        int g = 0;
        while (g < *n_groups && strcmp(groups[g].label, runs[i].label)) g++;
        if (g == *n_groups) {
            memset(&groups[g], 0, sizeof(Group));
            snprintf(groups[g].label, sizeof(groups[g].label), "%s", runs[i].label);
            (*n_groups)++;
        }
        groups[g].n++;
    }
    for (int g = 0; g < *n_groups; g++)
        for (int c = 0; c < N_COLS; c++) {
            double s = 0, ss = 0;
            int k = 0;
            for (int i = 0; i < n_runs; i++)
                if (!strcmp(runs[i].label, groups[g].label) && !isnan(runs[i].col[c]))
                    s += runs[i].col[c], k++;
            double mean = k ? s / k : NAN;
            for (int i = 0; i < n_runs; i++)
                if (!strcmp(runs[i].label, groups[g].label) && !isnan(runs[i].col[c]))
                    ss += (runs[i].col[c] - mean) * (runs[i].col[c] - mean);
            groups[g].mean[c] = mean;
            groups[g].std[c] = k > 1 ? sqrt(ss / (k - 1)) : 0;  // sample std over seeds
        }
}

static void cell(char *out, size_t n, double mean, double std, int digits, int with_std) {
    if (isnan(mean))
        snprintf(out, n, "-");
    else if (with_std && std > 0)
        snprintf(out, n, "%.*f ± %.*f", digits, mean, digits, std);
    else
        snprintf(out, n, "%.*f", digits, mean);
}

// Curves: per run one data file of the train log lines (step, loss, acc) and one of the
// held-out evaluations (step, loss, acc; the validation split where there is one), one gnuplot
// script, and PNGs (train loss, train accuracy, held-out accuracy) if gnuplot runs.
static void plots(Run *runs, int n_runs, const char *dir) {
    if (mkdir_p(dir)) {
        fprintf(stderr, "madtrain: warning: cannot create '%s': %s; no plots\n", dir,
                strerror(errno));
        return;
    }
    char path[1200];
    for (int i = 0; i < n_runs; i++) {
        char line[8192], ev[32], split[32], train_dat[1200], eval_dat[1200];
        snprintf(train_dat, sizeof(train_dat), "%s/run%03d.dat", dir, i);
        snprintf(eval_dat, sizeof(eval_dat), "%s/run%03d.eval.dat", dir, i);
        snprintf(path, sizeof(path), "%s/metrics.jsonl", runs[i].dir);
        FILE *in = fopen(path, "r"), *tr = fopen(train_dat, "w"), *evf = fopen(eval_dat, "w");
        double step, loss, acc;
        while (in && tr && evf && fgets(line, sizeof(line), in)) {
            if (!json_str(line, "event", ev, sizeof(ev)) || !json_num(line, "step", &step) ||
                !json_num(line, "loss", &loss) || !json_num(line, "acc", &acc))
                continue;
            if (!strcmp(ev, "train")) fprintf(tr, "%g %g %g\n", step, loss, acc);
            int is_valid = json_str(line, "split", split, sizeof(split)) && !strcmp(split, "valid");
            if (!strcmp(ev, "eval") && is_valid == runs[i].has_valid)
                fprintf(evf, "%g %g %g\n", step, loss, acc);
        }
        if (in) fclose(in);
        if (tr) fclose(tr);
        if (evf) fclose(evf);
    }
    snprintf(path, sizeof(path), "%s/curves.gp", dir);
    FILE *gp = fopen(path, "w");
    if (!gp) return;
    // noenhanced: run names such as hss_r8 are not sub-scripted
    fprintf(gp,
            "set terminal pngcairo size 900,540 noenhanced\nset key outside right\n"
            "set grid\nset xlabel 'step'\n");
    static const char *png[3] = {"loss", "accuracy", "heldout_accuracy"};
    static const char *ylabel[3] = {"train loss", "train accuracy", "held-out accuracy (valid)"};
    for (int which = 0; which < 3; which++) {
        fprintf(gp, "set output '%s/%s.png'\nset ylabel '%s'\nplot ", dir, png[which],
                ylabel[which]);
        for (int i = 0; i < n_runs; i++) {
            const char *base = strrchr(runs[i].dir, '/');
            fprintf(gp, "%s'%s/run%03d%s.dat' using 1:%d with lines title '%s (%s)'", i ? ", " : "",
                    dir, i, which == 2 ? ".eval" : "", which == 0 ? 2 : 3, runs[i].label,
                    base ? base + 1 : runs[i].dir);
        }
        fprintf(gp, "\n");
    }
    fclose(gp);
    char cmd[1400];
    snprintf(cmd, sizeof(cmd), "gnuplot '%s/curves.gp' 2>/dev/null", dir);
    if (system("command -v gnuplot > /dev/null 2>&1") == 0 && system(cmd) == 0)
        printf("\nplots: %s/loss.png, %s/accuracy.png, %s/heldout_accuracy.png\n", dir, dir, dir);
    else
        fprintf(stderr, "madtrain: warning: gnuplot not available; curve data and script in %s\n",
                dir);
}

// --sweep: a grid of runs (launch/sweep.sh). Runs with the same label, T, kv pairs, d_model
// and learning rate are seeds of one point (mean); per (label, T, kv, d_model) the learning
// rate with the best mean held-out accuracy during training (the validation split where
// there is one) is kept, and its test accuracy reported, as the Zoology figure keeps the best
// rate. The plot: test accuracy against d_model, one panel per T, one line per label.
typedef struct {
    char label[sizeof(((Config *)0)->mixer)];
    double T, kv, d_model, lr, test, val;
    int n, n_lr;
} SweepRow;

static int cmp_sweep(const void *a, const void *b) {
    const SweepRow *x = a, *y = b;
    int c = strcmp(x->label, y->label);
    if (c) return c;
    if (x->T != y->T) return x->T < y->T ? -1 : 1;
    if (x->kv != y->kv) return x->kv < y->kv ? -1 : 1;
    return x->d_model < y->d_model ? -1 : x->d_model > y->d_model;
}

static int sweep_report(Run *runs, int n, const char *csv, const char *dir) {
    SweepRow *rows = xcalloc((size_t)n, sizeof(SweepRow));
    int *used = xcalloc((size_t)n, sizeof(int)), n_rows = 0;
    for (int i = 0; i < n; i++) {
        if (used[i]) continue;
        SweepRow best = {0};
        best.val = -1;
        int n_lr = 0;
        // every learning rate of this (label, T, kv, d_model): the mean over its seeds
        for (int j = i; j < n; j++) {
            Run *a = &runs[i], *b = &runs[j];
            if (used[j] || strcmp(a->label, b->label) || a->T != b->T || a->kv != b->kv ||
                a->d_model != b->d_model)
                continue;
            double val = 0, test = 0;
            int k = 0;
            for (int m = j; m < n; m++) {
                Run *c = &runs[m];
                if (used[m] || strcmp(b->label, c->label) || b->T != c->T || b->kv != c->kv ||
                    b->d_model != c->d_model || b->lr != c->lr)
                    continue;
                val += c->col[COL_BEST_VAL], test += c->col[COL_TEST_ACC], k++, used[m] = 1;
            }
            n_lr++;
            val /= k, test /= k;
            if (val > best.val || (val == best.val && b->lr < best.lr)) {
                snprintf(best.label, sizeof(best.label), "%s", b->label);
                best.T = b->T, best.kv = b->kv, best.d_model = b->d_model, best.lr = b->lr;
                best.val = val, best.test = test, best.n = k;
            }
        }
        best.n_lr = n_lr;
        rows[n_rows++] = best;
    }
    qsort(rows, (size_t)n_rows, sizeof(SweepRow), cmp_sweep);
    printf(
        "| mixer | T | kv pairs | d_model | best lr | lrs tried | seeds | test acc | best val acc "
        "|\n"
        "|---|---|---|---|---|---|---|---|---|\n");
    for (int r = 0; r < n_rows; r++)
        printf("| %s | %g | %g | %g | %g | %d | %d | %.4f | %.4f |\n", rows[r].label, rows[r].T,
               rows[r].kv, rows[r].d_model, rows[r].lr, rows[r].n_lr, rows[r].n, rows[r].test,
               rows[r].val);
    printf(
        "\nper mixer, task cell and width, the learning rate with the best mean held-out\n"
        "accuracy during training (validation split where the task has one) is kept; test\n"
        "acc and best val acc are that rate's means over its seeds.\n");
    if (csv) {
        FILE *f = fopen(csv, "w");
        if (!f) {
            fprintf(stderr, "madtrain: error: report: cannot write '%s': %s\n", csv,
                    strerror(errno));
            free(rows), free(used);
            return MT_EXIT_FAIL;
        }
        fprintf(f, "mixer,T,kv_pairs,d_model,best_lr,lrs_tried,seeds,test_acc,best_val_acc\n");
        for (int r = 0; r < n_rows; r++)
            fprintf(f, "%s,%g,%g,%g,%g,%d,%d,%.6g,%.6g\n", rows[r].label, rows[r].T, rows[r].kv,
                    rows[r].d_model, rows[r].lr, rows[r].n_lr, rows[r].n, rows[r].test,
                    rows[r].val);
        fclose(f);
    }
    if (dir && !mkdir_p(dir)) {
        char path[1200];
        snprintf(path, sizeof(path), "%s/sweep.dat", dir);
        FILE *dat = fopen(path, "w");
        snprintf(path, sizeof(path), "%s/sweep.gp", dir);
        FILE *gp = fopen(path, "w");
        if (dat && gp) {
            double Ts[64];
            int nT = 0, block = 0;
            for (int r = 0; r < n_rows; r++) {
                int seen = 0;
                for (int t = 0; t < nT; t++) seen |= Ts[t] == rows[r].T;
                if (!seen && nT < 64) Ts[nT++] = rows[r].T;
            }
            fprintf(gp,
                    "set terminal pngcairo size %d,420 noenhanced\nset output '%s/sweep.png'\n"
                    "set multiplot layout 1,%d\nset logscale x 2\nset yrange [0:1.05]\n"
                    "set grid\nset xlabel 'd_model'\nset ylabel 'test accuracy'\n"
                    "set key bottom right\n",
                    360 * nT + 40, dir, nT);
            for (int t = 0; t < nT; t++) {
                fprintf(gp, "set title 'T = %g'\nplot ", Ts[t]);
                int first = 1;
                for (int r = 0; r < n_rows; r++) {
                    if (rows[r].T != Ts[t] ||
                        (r && rows[r - 1].T == Ts[t] && !strcmp(rows[r - 1].label, rows[r].label)))
                        continue;
                    for (int q = r; q < n_rows && !strcmp(rows[q].label, rows[r].label); q++)
                        if (rows[q].T == Ts[t])
                            fprintf(dat, "%g %g\n", rows[q].d_model, rows[q].test);
                    fprintf(dat, "\n\n");
                    fprintf(gp, "%s'%s/sweep.dat' index %d using 1:2 with linespoints title '%s'",
                            first ? "" : ", ", dir, block++, rows[r].label);
                    first = 0;
                }
                fprintf(gp, "\n");
            }
            fprintf(gp, "unset multiplot\n");
        }
        if (dat) fclose(dat);
        if (gp) fclose(gp);
        char cmd[1400];
        snprintf(cmd, sizeof(cmd), "gnuplot '%s/sweep.gp' 2>/dev/null", dir);
        if (system("command -v gnuplot > /dev/null 2>&1") == 0 && system(cmd) == 0)
            printf("\nplot: %s/sweep.png\n", dir);
        else
            fprintf(stderr, "madtrain: warning: gnuplot not available; data and script in %s\n",
                    dir);
    }
    free(rows), free(used);
    return 0;
}

// --tasks (and --mad): a grid over tasks (launch/sweep.sh mad, state-tracking). Per mixer,
// task and setting, the (lr, wd) with the best mean test accuracy over its seeds (macro for
// the MAD tasks, MAD's score; micro, i.e. per position, for the others), with its micro,
// macro and per-level (length bucket) accuracy. MAD's score for a task is the mean over its
// settings of that best macro accuracy, the suite's the mean of the six tasks': both tables
// (macro and micro) follow when MAD tasks were run.
static int task_report(Run *runs, int n, const char *csv) {
    enum { N_MAD = 6, N_V = 6 };  // values: macro, micro, L1..L4
    char labels[64][sizeof(runs[0].label)];
    int n_labels = 0, any_mad = 0;
    for (int i = 0; i < n; i++) {
        int seen = 0;
        for (int l = 0; l < n_labels; l++) seen |= !strcmp(labels[l], runs[i].label);
        if (!seen && n_labels < 64)
            snprintf(labels[n_labels++], sizeof(labels[0]), "%s", runs[i].label);
        any_mad |= runs[i].task >= TASK_MAD_FIRST && runs[i].task < TASK_STATE_FIRST;
    }
    // score[label][MAD task][0 macro, 1 micro]: sum over settings of the best; settings
    double score[64][N_MAD][2] = {{{0}}};
    int settings[64][N_MAD] = {{0}};
    int *used = xcalloc((size_t)n, sizeof(int));
    FILE *f = csv ? fopen(csv, "w") : NULL;
    if (csv && !f) {
        fprintf(stderr, "madtrain: error: report: cannot write '%s': %s\n", csv, strerror(errno));
        free(used);
        return MT_EXIT_FAIL;
    }
    static const int cols[N_V] = {COL_MACRO,  COL_MICRO,  COL_LEVEL1,
                                  COL_LEVEL2, COL_LEVEL3, COL_LEVEL4};
    if (f)
        fprintf(f,
                "mixer,task,setting,best_lr,best_wd,runs,test_macro,test_micro,test_L1,"
                "test_L2,test_L3,test_L4,scaled_micro\n");
    printf(
        "| mixer | task | setting | best lr | best wd | runs | test macro | test micro | "
        "L1 | L2 | L3 | L4 | scaled |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < n; i++) {
        Run *a = &runs[i];
        if (used[i] || a->task < TASK_MAD_FIRST) continue;
        int mad = a->task < TASK_STATE_FIRST, key = mad ? 0 : 1;
        double best[N_V], best_lr = 0, best_wd = 0, best_any[2] = {-1, -1};
        for (int v = 0; v < N_V; v++) best[v] = -1;
        int k_all = 0;
        for (int j = i; j < n; j++) {  // every (lr, wd) of this (label, task, setting)
            Run *b = &runs[j];
            if (used[j] || strcmp(a->label, b->label) || a->task != b->task ||
                strcmp(a->setting, b->setting))
                continue;
            double sum[N_V] = {0};
            int k = 0;
            for (int m = j; m < n; m++) {
                Run *c = &runs[m];
                if (used[m] || strcmp(a->label, c->label) || a->task != c->task ||
                    strcmp(a->setting, c->setting) || c->lr != b->lr || c->wd != b->wd)
                    continue;
                for (int v = 0; v < N_V; v++) sum[v] += c->col[cols[v]];
                k++, used[m] = 1;
            }
            k_all += k;
            for (int v = 0; v < N_V; v++) sum[v] /= k;
            if (sum[key] > best[key]) {
                memcpy(best, sum, sizeof(best));
                best_lr = b->lr, best_wd = b->wd;
            }
            for (int q = 0; q < 2; q++)  // the MAD tables: each figure's own best
                if (sum[q] > best_any[q]) best_any[q] = sum[q];
        }
        if (mad) {
            int l = 0, t = a->task - TASK_MAD_FIRST;
            while (l < n_labels && strcmp(labels[l], a->label)) l++;
            if (l < n_labels && best_any[0] >= 0 && best_any[1] >= 0) {     // runs without the
                for (int q = 0; q < 2; q++) score[l][t][q] += best_any[q];  // figures: left out
                settings[l][t]++;
            }
        }
        printf("| %s | %s | %s | %g | %g | %d |", a->label, task_name(a->task), a->setting, best_lr,
               best_wd, k_all);
        for (int v = 0; v < N_V; v++)
            printf(isnan(best[v]) || best[v] < 0 ? " - |" : " %.4f |", best[v]);
        // the scaled figure of the micro accuracy (the state tasks' key figure)
        double scaled =
            mad || isnan(a->chance) || best[1] < 0 ? NAN : (best[1] - a->chance) / (1 - a->chance);
        printf(isnan(scaled) ? " - |\n" : " %.4f |\n", scaled);
        if (f) {
            fprintf(f, "%s,%s,\"%s\",%g,%g,%d", a->label, task_name(a->task), a->setting, best_lr,
                    best_wd, k_all);
            for (int v = 0; v < N_V; v++) fprintf(f, ",%.6g", best[v]);
            fprintf(f, ",%.6g\n", scaled);
        }
    }
    if (f) fclose(f);
    for (int q = 0; q < 2 && any_mad; q++) {
        printf(
            "\n%s accuracy: per task the mean over its settings of the best over lr x wd; "
            "the MAD score the mean over the tasks run\n\n| mixer |",
            q ? "micro" : "macro (MAD's score)");
        for (int t = 0; t < N_MAD; t++) printf(" %s |", task_name(TASK_MAD_FIRST + t));
        printf(" MAD score |\n|---|---|---|---|---|---|---|---|\n");
        for (int l = 0; l < n_labels; l++) {
            double total = 0;
            int tasks = 0;
            for (int t = 0; t < N_MAD; t++) tasks += settings[l][t] > 0;
            if (!tasks) continue;
            printf("| %s |", labels[l]);
            for (int t = 0; t < N_MAD; t++) {
                if (!settings[l][t]) {
                    printf(" - |");
                    continue;
                }
                double sc = score[l][t][q] / settings[l][t];
                total += sc;
                printf(" %.4f |", sc);
            }
            printf(" %.4f%s |\n", total / tasks, tasks < N_MAD ? " (of the tasks run)" : "");
        }
    }
    free(used);
    return 0;
}

// --ladder DIR (madtrain ladder): per run of DIR/ladder.tsv its last held-out loss against its
// training FLOPs; per mixer a power law loss = a C^b fitted by least squares in log-log (over
// its finished rungs); per rung the candidate's perplexity over softmax's (when softmax is a
// baseline) and, per baseline, the first rung where the candidate's loss is at or below it.
// Markdown on stdout, DIR/ladder.csv, and DIR/ladder.png (gnuplot) with its data and script.
enum { LADDER_MAX = 256 };
typedef struct {
    int task, rung;
    char mixer[64], dir[1100];
    double d_model, layers, params, flops, loss;
} LadderRow;

static int ladder_report(const char *dir) {
    char path[1200], line[4096];
    snprintf(path, sizeof(path), "%s/ladder.tsv", dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "madtrain: error: report --ladder: cannot read '%s': %s\n", path,
                strerror(errno));
        return MT_EXIT_USAGE;
    }
    LadderRow *rows = xcalloc(LADDER_MAX, sizeof(LadderRow));
    int n = 0, unfinished = 0;
    char mixers[16][64];
    int n_mixers = 0;
    while (fgets(line, sizeof(line), f) && n < LADDER_MAX) {
        LadderRow *r = &rows[n];
        double fpt, steps;
        if (sscanf(line, "%d\t%d\t%63s\t%lf\t%lf\t%lf\t%lf\t%lf\t%lf\t%1099s", &r->task, &r->rung,
                   r->mixer, &r->d_model, &r->layers, &r->params, &fpt, &steps, &r->flops,
                   r->dir) != 10)
            continue;  // the header
        int seen = 0;
        for (int m = 0; m < n_mixers; m++) seen |= !strcmp(mixers[m], r->mixer);
        if (!seen && n_mixers < 16) snprintf(mixers[n_mixers++], sizeof(mixers[0]), "%s", r->mixer);
        // the last evaluation's loss (the held-out split), from a finished run only
        r->loss = NAN;
        char mpath[1200];
        snprintf(mpath, sizeof(mpath), "%s/metrics.jsonl", r->dir);
        FILE *mf = run_status_is(r->dir, "finished") ? fopen(mpath, "r") : NULL;
        char ev[32], jl[8192];
        double v;
        while (mf && fgets(jl, sizeof(jl), mf))
            if (json_str(jl, "event", ev, sizeof(ev)) && !strcmp(ev, "eval") &&
                json_num(jl, "loss", &v))
                r->loss = v;
        if (mf) fclose(mf);
        unfinished += isnan(r->loss);
        n++;
    }
    fclose(f);
    if (!n) {
        fprintf(stderr, "madtrain: error: report --ladder: '%s' lists no runs\n", path);
        free(rows);
        return MT_EXIT_USAGE;
    }
    if (unfinished)
        fprintf(stderr, "madtrain: warning: report --ladder: %d run(s) not finished, left blank\n",
                unfinished);
    const char *cand = mixers[0];
    int has_softmax = 0;
    for (int m = 1; m < n_mixers; m++) has_softmax |= !strcmp(mixers[m], "softmax");
    printf(
        "| rung | mixer | d_model | layers | params | training FLOPs | held-out loss | "
        "ppl | ppl / softmax |\n|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < n; i++) {
        const LadderRow *r = &rows[i];
        double soft = NAN;
        for (int j = 0; j < n; j++)
            if (rows[j].rung == r->rung && !strcmp(rows[j].mixer, "softmax")) soft = rows[j].loss;
        printf("| %d | %s | %.0f | %.0f | %.0f | %.3g |", r->rung, r->mixer, r->d_model, r->layers,
               r->params, r->flops);
        if (isnan(r->loss))
            printf(" - | - | - |\n");
        else if (has_softmax && !isnan(soft))
            printf(" %.4f | %.2f | %.4f |\n", r->loss, exp(r->loss), exp(r->loss - soft));
        else
            printf(" %.4f | %.2f | - |\n", r->loss, exp(r->loss));
    }
    // loss = a C^b: least squares of log loss on log C
    double fit_a[16], fit_b[16];
    printf(
        "\nPower law per mixer, held-out loss = a * C^b over its finished rungs (C: training "
        "FLOPs):\n\n| mixer | a | b | rungs |\n|---|---|---|---|\n");
    for (int m = 0; m < n_mixers; m++) {
        double sx = 0, sy = 0, sxx = 0, sxy = 0;
        int k = 0;
        for (int i = 0; i < n; i++)
            if (!strcmp(rows[i].mixer, mixers[m]) && !isnan(rows[i].loss) && rows[i].loss > 0) {
                double x = log(rows[i].flops), y = log(rows[i].loss);
                sx += x, sy += y, sxx += x * x, sxy += x * y, k++;
            }
        fit_a[m] = fit_b[m] = NAN;
        if (k >= 2 && k * sxx - sx * sx > 0) {
            fit_b[m] = (k * sxy - sx * sy) / (k * sxx - sx * sx);
            fit_a[m] = exp((sy - fit_b[m] * sx) / k);
            printf("| %s | %.4g | %.4f | %d |\n", mixers[m], fit_a[m], fit_b[m], k);
        } else {
            printf("| %s | - | - | %d |\n", mixers[m], k);
        }
    }
    printf(
        "\nWhere the candidate (%s) reaches each baseline (its held-out loss at or below the "
        "baseline's at the same rung):\n\n",
        cand);
    for (int m = 1; m < n_mixers; m++) {
        int cross = -1;
        for (int i = 0; i < n && cross < 0; i++) {
            if (strcmp(rows[i].mixer, cand) || isnan(rows[i].loss)) continue;
            for (int j = 0; j < n; j++)
                if (rows[j].rung == rows[i].rung && !strcmp(rows[j].mixer, mixers[m]) &&
                    !isnan(rows[j].loss) && rows[i].loss <= rows[j].loss)
                    cross = rows[i].rung;
        }
        if (cross >= 0)
            printf("- %s: from rung %d\n", mixers[m], cross);
        else
            printf("- %s: at no finished rung\n", mixers[m]);
    }
    // CSV, plot data (one file per mixer) and the gnuplot script
    snprintf(path, sizeof(path), "%s/ladder.csv", dir);
    FILE *csv = fopen(path, "w");
    if (csv) {
        fprintf(csv, "rung,mixer,d_model,layers,params,flops,loss,ppl\n");
        for (int i = 0; i < n; i++)
            fprintf(csv, "%d,%s,%.0f,%.0f,%.0f,%.6g,%.6g,%.6g\n", rows[i].rung, rows[i].mixer,
                    rows[i].d_model, rows[i].layers, rows[i].params, rows[i].flops, rows[i].loss,
                    exp(rows[i].loss));
        fclose(csv);
    }
    snprintf(path, sizeof(path), "%s/ladder.gp", dir);
    FILE *gp = fopen(path, "w");
    if (gp) {
        fprintf(gp,
                "set terminal pngcairo size 800,560\nset output '%s/ladder.png'\n"
                "set logscale xy\nset xlabel 'training FLOPs'\nset ylabel 'held-out loss'\n"
                "set key top right\nset title 'compute-matched ladder (fitted: a C^b)'\nplot ",
                dir);
        for (int m = 0; m < n_mixers; m++) {
            char dpath[1200];
            snprintf(dpath, sizeof(dpath), "%s/ladder-%s.dat", dir, mixers[m]);
            FILE *d = fopen(dpath, "w");
            for (int i = 0; d && i < n; i++)
                if (!strcmp(rows[i].mixer, mixers[m]) && !isnan(rows[i].loss))
                    fprintf(d, "%.6g %.6g\n", rows[i].flops, rows[i].loss);
            if (d) fclose(d);
            fprintf(gp, "%s'%s' using 1:2 with linespoints lt %d title '%s'", m ? ", " : "", dpath,
                    m + 1, mixers[m]);
            if (!isnan(fit_a[m]))
                fprintf(gp, ", %.6g * x**(%.6g) with lines dt 2 lt %d notitle", fit_a[m], fit_b[m],
                        m + 1);
        }
        fprintf(gp, "\n");
        fclose(gp);
        char cmd[1300];
        snprintf(cmd, sizeof(cmd), "gnuplot '%s/ladder.gp' 2>/dev/null", dir);
        if (system("command -v gnuplot > /dev/null 2>&1") == 0 && system(cmd) == 0)
            printf("\nplot: %s/ladder.png; table: %s/ladder.csv\n", dir, dir);
        else
            fprintf(stderr, "madtrain: warning: gnuplot not available; data and script in %s\n",
                    dir);
    }
    free(rows);
    return 0;
}

int report_main(int argc, char **argv) {
    build_columns();
    const char *csv = NULL, *plot_dir = NULL;
    char *dirs[4096];
    int n = 0, sweep = 0, tasks = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf(
                "usage: madtrain report [--sweep | --tasks] [--csv FILE] [--plots DIR] RUN_DIR...\n"
                "       madtrain report --ladder DIR   (the folder of madtrain ladder --out)\n"
                "  A RUN_DIR may also be a directory of run directories. Runs are grouped by\n"
                "  run.name (or their mixer list); columns are mean ± std over each group.\n"
                "  --sweep: a grid (launch/sweep.sh): per run.name, T, kv pairs and d_model the\n"
                "  learning rate with the best held-out accuracy, and a plot of test accuracy\n"
                "  against d_model per T.\n"
                "  --tasks (or --mad): a grid over tasks (launch/sweep.sh mad, state-tracking):\n"
                "  per mixer, task and setting the best test accuracy over lr x weight decay\n"
                "  (macro for MAD's tasks, micro for the others; per-length buckets too), and\n"
                "  for MAD's tasks the task and MAD scores (means over settings, then tasks).\n");
            return 0;
        } else if (!strcmp(argv[i], "--ladder")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "madtrain: error: report: --ladder needs the ladder's folder\n");
                return MT_EXIT_USAGE;
            }
            return ladder_report(argv[i + 1]);
        } else if (!strcmp(argv[i], "--sweep")) {
            sweep = 1;
        } else if (!strcmp(argv[i], "--mad") || !strcmp(argv[i], "--tasks")) {
            tasks = 1;
        } else if (!strcmp(argv[i], "--csv") && i + 1 < argc) {
            csv = argv[++i];
        } else if (!strcmp(argv[i], "--plots") && i + 1 < argc) {
            plot_dir = argv[++i];
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "madtrain: error: report: unknown option '%s'\n", argv[i]);
            return MT_EXIT_USAGE;
        } else {
            struct stat sb;
            if (stat(argv[i], &sb) || !S_ISDIR(sb.st_mode)) {
                fprintf(stderr, "madtrain: error: report: '%s' is not a directory\n", argv[i]);
                return MT_EXIT_USAGE;
            }
            int before = n;
            n = collect(argv[i], dirs, n, 4096);
            if (n == before) {
                fprintf(stderr,
                        "madtrain: error: report: no run directory (with metrics.jsonl) in '%s'\n",
                        argv[i]);
                return MT_EXIT_USAGE;
            }
        }
    }
    if (!n) {
        fprintf(stderr,
                "madtrain: error: report: no run directories given (madtrain report --help)\n");
        return MT_EXIT_USAGE;
    }
    Run *runs = xcalloc((size_t)n, sizeof(Run));
    char err[1200];
    int n_dirs = n;
    n = 0;
    for (int i = 0; i < n_dirs; i++) {
        int rc = read_run(dirs[i], &runs[n], err, sizeof(err));
        free(dirs[i]);
        if (rc < 0) {
            fprintf(stderr, "madtrain: error: report: %s\n", err);
            return MT_EXIT_FAIL;
        }
        // A run still going (or stopped) is left out, so an experiment can be tabulated while
        // its last runs train; the table says how many runs each row holds.
        if (rc > 0)
            fprintf(stderr, "madtrain: warning: report: skipping %s\n", err);
        else
            n++;
    }
    if (!n) {
        fprintf(stderr, "madtrain: error: report: no finished run to tabulate\n");
        return MT_EXIT_FAIL;
    }
    if (tasks) {
        int rc = task_report(runs, n, csv);
        free(runs);
        return rc;
    }
    if (sweep) {
        int rc = sweep_report(runs, n, csv, plot_dir);
        free(runs);
        return rc;
    }
    Group *groups = xcalloc((size_t)n, sizeof(Group));
    int n_groups;
    summarise(runs, n, groups, &n_groups);

    int shown[N_COLS];
    for (int c = 0; c < N_COLS; c++) {
        shown[c] = 0;
        if (c >= N_FIXED_COLS && !AUX_COLS[c]) continue;
        for (int g = 0; g < n_groups; g++) shown[c] |= !isnan(groups[g].mean[c]);
    }
    printf("| mixer | runs |");
    for (int o = 0; o < n_cols; o++)
        if (shown[ORDER[o]]) printf(" %s |", COL_NAMES[ORDER[o]]);
    printf("\n|---|---|");
    for (int o = 0; o < n_cols; o++)
        if (shown[ORDER[o]]) printf("---|");
    printf("\n");
    for (int g = 0; g < n_groups; g++) {
        printf("| %s | %d |", groups[g].label, groups[g].n);
        for (int o = 0; o < n_cols; o++) {
            int c = ORDER[o];
            if (!shown[c]) continue;
            char s[64];
            cell(s, sizeof(s), groups[g].mean[c], groups[g].std[c], COL_DIGITS[c],
                 c != COL_PARAMS && c != COL_STEPS);
            printf(" %s |", s);
        }
        printf("\n");
    }
    printf(
        "\nmean ± sample std over runs; best val acc is the best held-out evaluation during\n"
        "training (the validation split where the task has one); feature map ms is the\n"
        "feature map alone on one held-out batch, summed over layers; NaN/Inf counts steps\n"
        "skipped for a non-finite gradient plus non-finite mixer values on that batch.\n");
    if (shown[COL_PH_STEP])
        printf(
            "step ms .. optim ms: the step of train.profile_step on rank 0's clock, and its\n"
            "forward, backward, gradient all-reduce wait and optimizer phases.\n");
    if (csv) {
        FILE *f = fopen(csv, "w");
        if (!f) {
            fprintf(stderr, "madtrain: error: report: cannot write '%s': %s\n", csv,
                    strerror(errno));
            return MT_EXIT_FAIL;
        }
        fprintf(f, "mixer,runs");
        for (int o = 0; o < n_cols; o++)
            fprintf(f, ",%s mean,%s std", COL_NAMES[ORDER[o]], COL_NAMES[ORDER[o]]);
        fprintf(f, "\n");
        for (int g = 0; g < n_groups; g++) {
            fprintf(f, "%s,%d", groups[g].label, groups[g].n);
            for (int o = 0; o < n_cols; o++)
                fprintf(f, ",%.6g,%.6g", groups[g].mean[ORDER[o]], groups[g].std[ORDER[o]]);
            fprintf(f, "\n");
        }
        fclose(f);
    }
    if (plot_dir) plots(runs, n, plot_dir);
    free(runs);
    free(groups);
    return 0;
}
