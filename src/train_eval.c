// Evaluation on the held-out splits. Every rank takes a contiguous block of the examples and
// one all-reduce sums the figures, so all ranks hold the same result.
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../data/h5util.h"
#include "../data/images.h"
#include "train_internal.h"
#include "util.h"

// Held-out examples [first, first + count) as one micro-batch of the model's B sequences; the
// rows past count are padding that scores nothing.
// Under parallel.context whole rows are read and each rank keeps its slice of them.
static int load_eval_batch(const Model_f32 *m, Loader *data, EvalSplit split, int64_t first,
                           int64_t count, Batch *b, char *err, size_t errlen) {
    if (loader_eval(data, split, first, count, b->ids, b->targets, b->levels, b->pos, err, errlen))
        return -1;
    const ContextGroup *cp = &m->cfg.cp;
    int T = m->T * (cp->size > 1 ? cp->size : 1);
    context_slice_rows(b->ids, count, T, cp);
    context_slice_rows(b->targets, count, T, cp);
    context_slice_rows(b->levels, count, T, cp);
    for (size_t i = (size_t)count * m->T; i < (size_t)m->B * m->T; i++)
        b->ids[i] = 0, b->targets[i] = -1, b->levels[i] = 0, b->pos[i] = (int)(i % m->T);
    return 0;
}

// The model's forward on an evaluation batch (packed rows: with their examples).
static ForwardStats eval_forward(Model_f32 *m, Loader *data, const Batch *b) {
    return model_forward_packed_f32(m, b->ids, b->targets, loader_packed(data) ? b->pos : NULL, 0);
}

// Mean loss per scored position and mean per-example accuracy over a held-out split (or its
// first eval_examples), micro and macro accuracy over the scored positions; for tasks with
// hierarchy levels, also the accuracy over the scored positions of each level.
// Per-position results of one split for `eval --dump`: [n, T] each, rank blocks summed (every
// rank writes only its own examples' rows, the rest stay 0).
typedef struct {
    int64_t n;
    double *ids, *targets, *predictions, *losses, *levels;
} EvalDump;

static EvalResult evaluate(Model_f32 *m, Loader *data, EvalSplit split, const Config *cfg,
                           Comm *comm, Batch *b, EvalDump *dump) {
    int64_t n = loader_eval_size(data, split);
    if (cfg->eval_examples > 0 && cfg->eval_examples < n) n = cfg->eval_examples;
    // A block per data-parallel replica: per rank, or per context group (its ranks alike).
    const ContextGroup *cp = &m->cfg.cp;
    int G = cp->size > 1 ? cp->size : 1, group = comm->rank / G, groups = comm->world / G;
    int64_t lo = n * group / groups, hi = n * (group + 1) / groups;
    int B = m->B, T = m->T, V = m->cfg.vocab_size, T_full = T * G;
    double *rows = G > 1 ? xcalloc(2 * (size_t)n + 1, sizeof(double)) : NULL;
    char err[512];
    // loss, scored, acc, examples, then (scored, correct) per level 1..MAX_EVAL_LEVELS, then
    // per class: target count, correct, predicted count
    enum { N_SUMS = 4 + 2 * MAX_EVAL_LEVELS };
    size_t n_all = N_SUMS + 3 * (size_t)V;
    double *sums = xcalloc(n_all, sizeof(double)), *cls = sums + N_SUMS;
    for (int64_t start = lo; start < hi; start += B) {
        int64_t count = hi - start < B ? hi - start : B;
        if (load_eval_batch(m, data, split, start, count, b, err, sizeof(err)))
            comm_fatal(comm, MT_EXIT_FAIL, "%s", err);
        ForwardStats st = eval_forward(m, data, b);
        if (dump)
            for (size_t i = 0; i < (size_t)count * T; i++) {
                size_t at = ((size_t)start + i / T) * T_full + cp->pos0 + i % T;
                dump->ids[at] = b->ids[i], dump->targets[at] = b->targets[i];
                dump->predictions[at] = b->targets[i] >= 0 ? m->predictions[i] : -1;
                dump->losses[at] = b->targets[i] >= 0 ? m->losses[i] : 0;
                dump->levels[at] = b->levels[i];
            }
        sums[0] += st.loss_sum, sums[1] += (double)st.n_scored;
        sums[2] += st.example_acc_sum, sums[3] += (double)st.n_examples;
        if (rows) context_row_counts(m, b->targets, (int)count, start, rows);
        for (size_t i = 0; i < (size_t)B * T; i++) {
            int y = b->targets[i], l = b->levels[i], pred = m->predictions[i];
            if (y < 0) continue;
            cls[3 * y] += 1, cls[3 * y + 1] += pred == y;
            if (pred >= 0 && pred < V) cls[3 * pred + 2] += 1;
            if (l < 1 || l > MAX_EVAL_LEVELS) continue;
            sums[4 + 2 * (l - 1)] += 1;
            sums[5 + 2 * (l - 1)] += pred == y;
        }
    }
    if (rows) {  // whole examples: every slice's (correct, scored) summed first
        memset(sums + 2, 0, 2 * sizeof(double));
        comm_allreduce_sum_f64(comm, rows, 2 * (size_t)n);
        // every rank now holds every example's counts: one rank adds them to the sum below
        if (!comm->rank) context_example_acc(rows, n, &sums[2], &sums[3]);
        free(rows);
    }
    comm_allreduce_sum_f64(comm, sums, n_all);
    EvalResult r = {.loss = sums[1] > 0 ? sums[0] / sums[1] : 0,
                    .acc = sums[3] > 0 ? sums[2] / sums[3] : 0,
                    .scored = (int64_t)sums[1],
                    .examples = (int64_t)sums[3]};
    double right = 0, macro = 0;
    int classes = 0;
    for (int c = 0; c < V; c++) {
        right += cls[3 * c + 1];
        if (cls[3 * c] + cls[3 * c + 2] == 0) continue;
        classes++;
        macro += cls[3 * c] > 0 ? cls[3 * c + 1] / cls[3 * c] : 0;
    }
    r.acc_micro = sums[1] > 0 ? right / sums[1] : 0;
    r.acc_macro = classes ? macro / classes : 0;
    for (int l = 0; l < MAX_EVAL_LEVELS; l++) {  // NaN: no scored position of that level
        r.level_acc[l] = NAN;
        if (sums[4 + 2 * l] > 0) {
            r.n_levels = l + 1;
            r.level_acc[l] = sums[5 + 2 * l] / sums[4 + 2 * l];
        }
    }
    free(sums);
    return r;
}

static int write_2d(hid_t g, const char *name, hid_t type, const double *v, int64_t n, int T);

// ---- image data ----------------------------------------------------------------------------
// Per-image results of one split for `eval --dump`: labels, top-1 predictions, losses [n] and
// the 5 highest classes [n, 5] (rank blocks summed, as EvalDump).
typedef struct {
    int64_t n;
    double *labels, *predictions, *losses, *top5;
} ImageDump;

// Loss, top-1 (acc and acc_micro), top-5 and the mean per-class accuracy (acc_macro) over the
// split's images (or its first eval_examples); per class: images, right, predicted in
// class_sums [3 * classes] when asked (the dump's per-class accuracy).
static EvalResult evaluate_images(Model_f32 *m, Loader *data, EvalSplit split, const Config *cfg,
                                  Comm *comm, Batch *b, ImageDump *dump, double *class_sums) {
    int64_t n = loader_eval_size(data, split);
    if (cfg->eval_examples > 0 && cfg->eval_examples < n) n = cfg->eval_examples;
    int64_t lo = n * comm->rank / comm->world, hi = n * (comm->rank + 1) / comm->world;
    const VisionConfig *v = &m->cfg.vision;
    int B = m->B, K = m->cfg.vocab_size;
    size_t px = (size_t)v->height * v->width * v->channels;
    char err[512];
    enum { N_SUMS = 5 };  // loss, images, top-1 right, top-5 right, (unused)
    size_t n_all = N_SUMS + 3 * (size_t)K;
    double *sums = xcalloc(n_all, sizeof(double)), *cls = sums + N_SUMS;
    for (int64_t start = lo; start < hi; start += B) {
        int64_t count = hi - start < B ? hi - start : B;
        if (loader_eval_images(data, split, start, count, b->pixels, b->targets, err, sizeof(err)))
            comm_fatal(comm, MT_EXIT_FAIL, "%s", err);
        for (int64_t i = count; i < B; i++) b->targets[i] = -1;
        memset(b->pixels + count * px, 0, sizeof(float) * (size_t)(B - count) * px);
        ImageStep is = {0, 0, start};
        ForwardStats st = model_forward_images_f32(m, b->pixels, b->targets, &is, 0);
        sums[0] += st.loss_sum, sums[1] += (double)st.n_scored;
        sums[2] += st.example_acc_sum, sums[3] += st.top5_sum;
        for (int64_t i = 0; i < count; i++) {
            int y = b->targets[i], pred = m->predictions[i];
            cls[3 * y] += 1, cls[3 * y + 1] += pred == y, cls[3 * pred + 2] += 1;
            if (!dump) continue;
            int64_t at = start + i;
            dump->labels[at] = y, dump->predictions[at] = pred, dump->losses[at] = m->losses[i];
            // the 5 highest logits, highest first (selection: classes are few)
            const float *z = m->host_logits + (size_t)i * K;
            int picked[5];
            for (int r = 0; r < 5; r++) {
                int best = -1;
                for (int c = 0; c < K; c++) {
                    int used = 0;
                    for (int q = 0; q < r; q++) used |= picked[q] == c;
                    if (!used && (best < 0 || z[c] > z[best])) best = c;
                }
                picked[r] = best;
                dump->top5[at * 5 + r] = best;
            }
        }
    }
    comm_allreduce_sum_f64(comm, sums, n_all);
    EvalResult r = {.loss = sums[1] > 0 ? sums[0] / sums[1] : 0,
                    .acc = sums[1] > 0 ? sums[2] / sums[1] : 0,
                    .scored = (int64_t)sums[1],
                    .examples = (int64_t)sums[1],
                    .images = 1,
                    .acc_top5 = sums[1] > 0 ? sums[3] / sums[1] : 0};
    r.acc_micro = r.acc;
    double macro = 0;
    int classes = 0;
    for (int c = 0; c < K; c++) {
        if (cls[3 * c] + cls[3 * c + 2] == 0) continue;
        classes++;
        macro += cls[3 * c] > 0 ? cls[3 * c + 1] / cls[3 * c] : 0;
    }
    r.acc_macro = classes ? macro / classes : 0;
    for (int l = 0; l < MAX_EVAL_LEVELS; l++) r.level_acc[l] = NAN;
    if (class_sums) memcpy(class_sums, cls, sizeof(double) * 3 * (size_t)K);
    free(sums);
    return r;
}

static int write_1d(hid_t g, const char *name, hid_t type, const double *v, int64_t n) {
    hsize_t dims[1] = {(hsize_t)n};
    hid_t sp = H5Screate_simple(1, dims, NULL);
    hid_t ds = H5Dcreate2(g, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int ok = ds >= 0 && H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0;
    if (ds >= 0) H5Dclose(ds);
    H5Sclose(sp);
    return ok ? 0 : -1;
}

// One group per split: labels, predictions (top-1), losses [n], top5 [n, 5] (highest first);
// per class: class_count, class_correct, class_accuracy (NaN for a class with no image) and
// class_names [classes]; attributes step, loss, acc (top-1), acc_top5, acc_macro.
static int dump_images_split(hid_t f, const char *split, const ImageDump *d, Loader *data, int K,
                             const double *class_sums, int64_t step, const EvalResult *e) {
    hid_t g = H5Gcreate2(f, split, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return -1;
    hid_t i32 = H5T_STD_I32LE;
    double *count = xcalloc(3 * (size_t)K, sizeof(double)), *right = count + K, *acc = right + K;
    for (int c = 0; c < K; c++) {
        count[c] = class_sums[3 * c], right[c] = class_sums[3 * c + 1];
        acc[c] = count[c] > 0 ? right[c] / count[c] : NAN;
    }
    enum { NAME_LEN = 64 };
    char *names = xcalloc((size_t)K, NAME_LEN);
    for (int c = 0; c < K; c++)
        snprintf(names + (size_t)c * NAME_LEN, NAME_LEN, "%s", loader_class_name(data, c));
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, NAME_LEN);
    hsize_t kd[1] = {(hsize_t)K};
    hid_t sp = H5Screate_simple(1, kd, NULL);
    hid_t ds = H5Dcreate2(g, "class_names", st, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int names_ok = ds >= 0 && H5Dwrite(ds, st, H5S_ALL, H5S_ALL, H5P_DEFAULT, names) >= 0;
    if (ds >= 0) H5Dclose(ds);
    H5Sclose(sp), H5Tclose(st);
    int rc = !names_ok || write_1d(g, "labels", i32, d->labels, d->n) ||
             write_1d(g, "predictions", i32, d->predictions, d->n) ||
             write_1d(g, "losses", H5T_IEEE_F32LE, d->losses, d->n) ||
             write_2d(g, "top5", i32, d->top5, d->n, 5) ||
             write_1d(g, "class_count", i32, count, K) ||
             write_1d(g, "class_correct", i32, right, K) ||
             write_1d(g, "class_accuracy", H5T_IEEE_F64LE, acc, K) ||
             h5_attr_write_i64(g, "step", step) ||
             h5_attr_write(g, "loss", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &e->loss) ||
             h5_attr_write(g, "acc", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &e->acc) ||
             h5_attr_write(g, "acc_top5", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &e->acc_top5) ||
             h5_attr_write(g, "acc_macro", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &e->acc_macro);
    free(count), free(names);
    H5Gclose(g);
    return rc ? -1 : 0;
}

// Whether any rank's flag is set (a collective: every rank calls it).
static int any_rank(Comm *comm, int flag) {
    double v = flag;
    comm_allreduce_sum_f64(comm, &v, 1);
    return v > 0;
}

// A [n, T] dataset of file type `type` from doubles (HDF5 converts; ids and targets are exact
// integers, so nothing is lost).
static int write_2d(hid_t g, const char *name, hid_t type, const double *v, int64_t n, int T) {
    hsize_t dims[2] = {(hsize_t)n, (hsize_t)T};
    hid_t sp = H5Screate_simple(2, dims, NULL);
    hid_t ds = H5Dcreate2(g, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int ok = ds >= 0 && H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0;
    if (ds >= 0) H5Dclose(ds);
    H5Sclose(sp);
    return ok ? 0 : -1;
}

// One group per split: ids, targets (-1: not scored), predictions (-1 where not scored),
// losses (nats; 0 where not scored), levels (hierarchy level or length bucket; 0: none),
// [examples, T] each, plus the step and the split's figures as attributes.
static int dump_split(hid_t f, const char *split, const EvalDump *d, int T, int64_t step,
                      const EvalResult *e) {
    hid_t g = H5Gcreate2(f, split, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return -1;
    hid_t i32 = H5T_STD_I32LE;
    int rc = write_2d(g, "ids", i32, d->ids, d->n, T) ||
             write_2d(g, "targets", i32, d->targets, d->n, T) ||
             write_2d(g, "predictions", i32, d->predictions, d->n, T) ||
             write_2d(g, "losses", H5T_IEEE_F32LE, d->losses, d->n, T) ||
             write_2d(g, "levels", i32, d->levels, d->n, T) || h5_attr_write_i64(g, "step", step) ||
             h5_attr_write(g, "loss", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &e->loss) ||
             h5_attr_write(g, "acc_micro", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &e->acc_micro) ||
             h5_attr_write(g, "acc_macro", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &e->acc_macro);
    H5Gclose(g);
    return rc ? -1 : 0;
}

void run_evals(Model_f32 *m, Loader *data, const Config *cfg, Comm *comm, Logger *lg, int64_t step,
               int final, EvalResult *test, Batch *b) {
    int has_valid = loader_eval_size(data, EVAL_VALID) > 0, dumping = final && cfg->eval_dump[0];
    // eval --dump: written to FILE.tmp.<pid> and renamed when complete (never a half file)
    char tmp[1100];
    hid_t f = -1;
    if (dumping && !comm->rank) {
        snprintf(tmp, sizeof(tmp), "%s.tmp.%d", cfg->eval_dump, (int)getpid());
        h5_lock();
        f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
        h5_unlock();
    }
    if (dumping && any_rank(comm, !comm->rank && f < 0))
        comm_fatal(comm, MT_EXIT_FAIL, "eval --dump: cannot create '%s'", cfg->eval_dump);
    int dump_failed = 0;
    for (int sp = EVAL_VALID; sp <= EVAL_TEST; sp++) {
        if (loader_eval_size(data, (EvalSplit)sp) <= 0) continue;
        if (sp == EVAL_TEST && has_valid && !final) continue;
        if (loader_is_images(data)) {
            int64_t n = loader_eval_size(data, (EvalSplit)sp);
            if (cfg->eval_examples > 0 && cfg->eval_examples < n) n = cfg->eval_examples;
            int K = m->cfg.vocab_size;
            ImageDump id = {0};
            double *class_sums = xcalloc(3 * (size_t)K, sizeof(double));
            if (dumping) {
                id.n = n;
                id.labels = xcalloc(8 * (size_t)n + 1, sizeof(double));
                id.predictions = id.labels + n, id.losses = id.predictions + n;
                id.top5 = id.losses + n;
            }
            EvalResult e = evaluate_images(m, data, (EvalSplit)sp, cfg, comm, b,
                                           dumping ? &id : NULL, class_sums);
            if (sp == EVAL_TEST) *test = e;
            if (!comm->rank) log_eval(lg, step, loader_eval_name(data, (EvalSplit)sp), 0, &e);
            if (dumping) {
                comm_allreduce_sum_f64(comm, id.labels, 8 * (size_t)n);
                if (!comm->rank) {
                    h5_lock();
                    dump_failed |= dump_images_split(f, loader_eval_name(data, (EvalSplit)sp), &id,
                                                     data, K, class_sums, step, &e) != 0;
                    h5_unlock();
                }
                free(id.labels);
            }
            free(class_sums);
            continue;
        }
        EvalDump d = {0};
        if (dumping) {
            int64_t n = loader_eval_size(data, (EvalSplit)sp);
            if (cfg->eval_examples > 0 && cfg->eval_examples < n) n = cfg->eval_examples;
            size_t cells = (size_t)n * m->T * (m->cfg.cp.size > 1 ? m->cfg.cp.size : 1);
            d.n = n;
            d.ids = xcalloc(5 * cells + 1, sizeof(double));
            d.targets = d.ids + cells, d.predictions = d.targets + cells;
            d.losses = d.predictions + cells, d.levels = d.losses + cells;
        }
        EvalResult e = evaluate(m, data, (EvalSplit)sp, cfg, comm, b, dumping ? &d : NULL);
        if (sp == EVAL_TEST) *test = e;
        if (!comm->rank)
            log_eval(lg, step, loader_eval_name(data, (EvalSplit)sp), loader_is_lm(data), &e);
        if (dumping) {
            int T_full = m->T * (m->cfg.cp.size > 1 ? m->cfg.cp.size : 1);
            comm_allreduce_sum_f64(comm, d.ids, 5 * (size_t)d.n * T_full);
            if (!comm->rank) {
                h5_lock();
                dump_failed |=
                    dump_split(f, loader_eval_name(data, (EvalSplit)sp), &d, T_full, step, &e) != 0;
                h5_unlock();
            }
            free(d.ids);
        }
    }
    if (dumping && !comm->rank) {
        h5_lock();
        dump_failed |= H5Fclose(f) < 0;
        h5_unlock();
        if (dump_failed || rename(tmp, cfg->eval_dump))
            unlink(tmp), dump_failed = 1;
        else
            printf("eval: per-%s results in %s\n", loader_is_images(data) ? "image" : "position",
                   cfg->eval_dump);
    }
    if (dumping && any_rank(comm, dump_failed))
        comm_fatal(comm, MT_EXIT_FAIL, "eval --dump: writing '%s' failed", cfg->eval_dump);
}

void report_aux(Logger *lg, Model_f32 *m, Loader *data, Batch *b) {
    EvalSplit split = loader_eval_size(data, EVAL_VALID) > 0 ? EVAL_VALID : EVAL_TEST;
    int64_t n = loader_eval_size(data, split), count = n < m->B ? n : m->B;
    char err[512];
    if (loader_is_images(data)) {  // the first held-out images, the rest of the batch padding
        const VisionConfig *v = &m->cfg.vision;
        size_t px = (size_t)v->height * v->width * v->channels;
        if (count <= 0 ||
            loader_eval_images(data, split, 0, count, b->pixels, b->targets, err, sizeof(err)))
            return;
        for (int64_t i = count; i < m->B; i++) b->targets[i] = -1;
        memset(b->pixels + count * px, 0, sizeof(float) * (size_t)(m->B - count) * px);
        ImageStep is = {0, 0, 0};
        model_forward_images_f32(m, b->pixels, b->targets, &is, 0);
    } else {
        if (count <= 0 || load_eval_batch(m, data, split, 0, count, b, err, sizeof(err))) return;
        eval_forward(m, data, b);
    }
    for (int l = 0; l < m->cfg.n_layers; l++) {
        OpAux aux[OP_MAX_AUX + 1];
        // a context group's other ranks (lg NULL) take part: a recomputed layer's forward (a
        // model.recompute block) passes states along the group
        int k = model_layer_aux_f32(m, l, aux);
        if (!lg) continue;
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
        // A figure named *_diverging counts where the mixer's own approximation does not hold
        // (dplr's Neumann series where rho >= 1): said once per evaluation, with the layer.
        for (int i = 0; i < k; i++) {
            size_t nl = strlen(aux[i].name), sl = strlen("_diverging");
            if (nl > sl && !strcmp(aux[i].name + nl - sl, "_diverging") && aux[i].value > 0)
                printf(
                    "warning: layer %d (%s): %s = %.0f: the layer's approximation diverges "
                    "there (docs/mixers.md)\n",
                    l, OPS_f32[m->cfg.mixer[l]]->name, aux[i].name, aux[i].value);
        }
    }
    fflush(stdout);
}
