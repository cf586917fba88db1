// The data side of `madtrain prep` (the command line is src/prep_cli.c): the shard-splitting
// writer shared by the tools, `prep synthetic` (any in-process task written to shards) and
// `prep check` (verify a folder).
#include "prep.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5util.h"
#include "image_set.h"
#include "synthetic.h"
#include "util.h"

static double prep_t0, prep_last;

void prep_clock_start(void) {
    prep_t0 = prep_last = now_seconds();
}

double prep_elapsed(void) {
    return now_seconds() - prep_t0;
}

void prep_progress(const char *what, int64_t done, int64_t total, int64_t tokens) {
    double now = now_seconds();
    if (now - prep_last < 5) return;
    prep_last = now;
    printf("prep: %s: %.0f%% (%lld tokens, %.0fs)\n", what, total ? 100.0 * done / total : 100.0,
           (long long)tokens, now - prep_t0);
    fflush(stdout);
}

// ---- splitting a stream into shards -------------------------------------------------------
static void push_doc(SplitWriter *sw, int64_t offset) {
    if (sw->n_docs && sw->docs[sw->n_docs - 1] == offset) return;
    if (sw->n_docs == sw->cap_docs) {
        sw->cap_docs = sw->cap_docs ? 2 * sw->cap_docs : 1024;
        int64_t *grown = realloc(sw->docs, sizeof(int64_t) * (size_t)sw->cap_docs);
        if (!grown) {
            fprintf(stderr, "madtrain: error: out of memory for document offsets\n");
            exit(MT_EXIT_FAIL);
        }
        sw->docs = grown;
    }
    sw->docs[sw->n_docs++] = offset;
}

void split_doc_start(SplitWriter *sw) {
    if (sw->w) push_doc(sw, sw->in_shard);  // between shards, the next one starts at 0 anyway
}

static int open_next_shard(SplitWriter *sw, char *err, size_t errlen) {
    char name[128], path[1200];
    snprintf(name, sizeof(name), "%s-%05d.h5", sw->info.split, sw->shards);
    snprintf(path, sizeof(path), "%s/%s", sw->out_dir, name);
    ShardInfo info = sw->info;
    int64_t left = sw->total_rows - sw->written;
    info.rows = left < sw->rows_per_shard ? left : sw->rows_per_shard;
    sw->w = shard_create(path, &info, sw->gzip_level, err, errlen);
    if (!sw->w) return -1;
    int rc = shard_set_attr_int(sw->w, "split_offset", sw->written, err, errlen);
    for (int i = 0; i < sw->n_attrs && !rc; i++)
        rc = sw->attrs[i].is_float
                 ? shard_set_attr_float(sw->w, sw->attrs[i].name, sw->attrs[i].f, err, errlen)
                 : shard_set_attr_int(sw->w, sw->attrs[i].name, sw->attrs[i].i, err, errlen);
    if (rc) {
        shard_abandon(sw->w);
        sw->w = NULL;
        return -1;
    }
    sw->shard_rows = info.rows, sw->in_shard = 0, sw->n_docs = 0;
    push_doc(sw, 0);
    return 0;
}

static int close_shard(SplitWriter *sw, char *err, size_t errlen) {
    int lm = sw->info.kind == SHARD_LM;
    if (lm) push_doc(sw, sw->shard_rows);
    int rc = shard_finish(sw->w, lm ? sw->docs : NULL, lm ? sw->n_docs : 0, err, errlen);
    sw->w = NULL;
    if (rc) return -1;
    char name[128];
    snprintf(name, sizeof(name), "%s-%05d.h5", sw->info.split, sw->shards++);
    manifest_add(sw->manifest, sw->info.split, name, sw->shard_rows * sw->info.row_len);
    return 0;
}

int split_put(SplitWriter *sw, const int *tokens, const int *targets, int64_t rows, char *err,
              size_t errlen) {
    if (sw->written + rows > sw->total_rows) {
        snprintf(err, errlen, "split '%s' got more than the %lld rows counted (input changed?)",
                 sw->info.split, (long long)sw->total_rows);
        return -1;
    }
    int64_t T = sw->info.row_len;
    while (rows > 0) {
        if (!sw->w && open_next_shard(sw, err, errlen)) return -1;
        int64_t k = sw->shard_rows - sw->in_shard < rows ? sw->shard_rows - sw->in_shard : rows;
        if (shard_append(sw->w, tokens, targets, k, err, errlen)) return -1;
        tokens += k * T;
        if (targets) targets += k * T;
        rows -= k, sw->in_shard += k, sw->written += k;
        if (sw->in_shard == sw->shard_rows && close_shard(sw, err, errlen)) return -1;
    }
    return 0;
}

int split_end(SplitWriter *sw, char *err, size_t errlen) {
    int rc = 0;
    if (sw->written != sw->total_rows) {
        snprintf(err, errlen, "split '%s' got %lld of the %lld rows counted (input changed?)",
                 sw->info.split, (long long)sw->written, (long long)sw->total_rows);
        rc = -1;
    }
    if (sw->w) shard_abandon(sw->w);
    sw->w = NULL;
    free(sw->docs);
    sw->docs = NULL;
    return rc;
}

// ---- prep synthetic -----------------------------------------------------------------------
static int write_task_split(SplitWriter *sw, const Task *t, int split, int64_t n, char *err,
                            size_t errlen) {
    const int64_t block = 1024;
    int *ids = xmalloc(sizeof(int) * (size_t)(block * t->T));
    int *targets = xmalloc(sizeof(int) * (size_t)(block * t->T));
    int rc = 0;
    char what[96];
    snprintf(what, sizeof(what), "%s examples", sw->info.split);
    for (int64_t first = 0; first < n && !rc; first += block) {
        int64_t k = n - first < block ? n - first : block;
        for (int64_t j = 0; j < k; j++)
            task_example(t, split, first + j, ids + j * t->T, targets + j * t->T);
        rc = split_put(sw, ids, targets, k, err, errlen);
        prep_progress(what, first + k, n, (first + k) * t->T);
    }
    free(ids), free(targets);
    return rc || split_end(sw, err, errlen) ? -1 : 0;
}

static void add_attr(SplitWriter *sw, const char *name, int is_float, int64_t i, double f) {
    sw->attrs[sw->n_attrs].name = name, sw->attrs[sw->n_attrs].is_float = is_float;
    sw->attrs[sw->n_attrs].i = i, sw->attrs[sw->n_attrs++].f = f;
}

int prep_synthetic(const DataOptions *o, const char *out, int64_t per_shard, int gzip) {
    char err[1400];
    if (mkdir_p(out)) {
        fprintf(stderr, "madtrain: error: cannot create %s: %s\n", out, strerror(errno));
        return MT_EXIT_FAIL;
    }
    Task t = task_from_options(o);
    Manifest m = {0};
    SplitWriter sw = {
        .out_dir = out, .gzip_level = gzip, .rows_per_shard = per_shard, .manifest = &m};
    sw.info.kind = SHARD_SEQ, sw.info.vocab_size = t.vocab, sw.info.row_len = t.T;
    sw.info.token_bytes = t.vocab <= 65536 ? 2 : 4;
    snprintf(sw.info.tokenizer, sizeof(sw.info.tokenizer), "none");
    snprintf(sw.info.task, sizeof(sw.info.task), "%s", task_name(t.task));
    add_attr(&sw, "task.seq_len", 0, t.T, 0);
    add_attr(&sw, "task.num_kv_pairs", 0, t.num_kv_pairs, 0);
    add_attr(&sw, "task.seed", 0, (int64_t)t.seed, 0);
    if (t.task == DATA_TASK_MQAR) {
        add_attr(&sw, "task.vocab_size", 0, t.vocab, 0);
        add_attr(&sw, "task.power_a", 1, 0, t.power_a);
    } else if (t.task >= DATA_TASK_PARITY) {
        add_attr(&sw, "task.vocab_size", 0, t.vocab, 0);
        add_attr(&sw, "task.min_len", 0, t.min_len, 0);
        add_attr(&sw, "task.max_len", 0, t.max_len, 0);
        add_attr(&sw, "task.test_min_len", 0, t.test_min_len, 0);
        add_attr(&sw, "task.test_max_len", 0, t.test_max_len, 0);
        add_attr(&sw, "task.modulus", 0, t.modulus, 0);
        add_attr(&sw, "task.generators", 0, t.generators, 0);
    } else if (t.task >= DATA_TASK_IN_CONTEXT_RECALL) {  // MAD's parameters under MAD's names
        add_attr(&sw, "task.vocab_size", 0, t.vocab, 0);
        add_attr(&sw, "task.noise_vocab_size", 0, t.noise_vocab_size, 0);
        add_attr(&sw, "task.frac_noise", 1, 0, t.frac_noise);
        add_attr(&sw, "task.k_motif_size", 0, t.k_motif_size, 0);
        add_attr(&sw, "task.v_motif_size", 0, t.v_motif_size, 0);
        add_attr(&sw, "task.num_tokens_to_copy", 0, t.num_tokens_to_copy, 0);
    } else {
        add_attr(&sw, "task.ar_symbols", 0, t.ar_symbols, 0);
        if (t.task == DATA_TASK_AR) {
            add_attr(&sw, "task.ar_value0", 0, t.ar_value0, 0);
            add_attr(&sw, "task.ar_filler", 0, t.ar_filler, 0);
        }
    }
    printf("prep synthetic: %s, T %d, vocab %d, seed %llu: %lld train + %lld valid examples\n",
           task_name(t.task), t.T, t.vocab, (unsigned long long)t.seed, (long long)t.n_train,
           (long long)t.n_test);
    SplitWriter valid = sw;
    snprintf(sw.info.split, sizeof(sw.info.split), "train");
    sw.total_rows = t.n_train;
    snprintf(valid.info.split, sizeof(valid.info.split), "valid");
    valid.total_rows = t.n_test;
    int rc = write_task_split(&sw, &t, SPLIT_TRAIN, t.n_train, err, sizeof(err));
    if (!rc && t.n_test > 0)
        rc = write_task_split(&valid, &t, SPLIT_TEST, t.n_test, err, sizeof(err));
    if (!rc) rc = manifest_write(out, &m, err, sizeof(err));
    if (rc)
        fprintf(stderr, "madtrain: error: %s\n", err);
    else
        printf("prep synthetic: done in %.1fs: %lld sequences of %d tokens, %d shard(s) -> %s\n",
               prep_elapsed(), (long long)(t.n_train + t.n_test), t.T, m.n, out);
    manifest_free(&m);
    return rc ? MT_EXIT_FAIL : 0;
}

// ---- prep check -----------------------------------------------------------------------------
int prep_check(int argc, char **argv) {
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--hdf5-errors"))
            h5_errors(1);
        else if (argv[i][0] != '-' && !dir)
            dir = argv[i];
        else {
            fprintf(stderr, "madtrain: error: prep check: unexpected argument '%s'\n", argv[i]);
            return MT_EXIT_USAGE;
        }
    }
    if (!dir) {
        fprintf(stderr, "madtrain: error: prep check: which folder? (madtrain prep check DIR)\n");
        return MT_EXIT_USAGE;
    }
    char err[1400];
    Manifest m;
    if (manifest_read(dir, &m, err, sizeof(err))) {
        fprintf(stderr, "madtrain: error: %s\n", err);
        return MT_EXIT_FAIL;
    }
    int bad = 0, images = image_set_detect(dir);
    int64_t tokens = 0;
    for (int i = 0; i < m.n; i++) {
        const ManifestEntry *e = &m.entries[i];
        char path[1100];
        if (e->file[0] == '/')
            snprintf(path, sizeof(path), "%s", e->file);
        else
            snprintf(path, sizeof(path), "%s/%s", dir, e->file);
        if (images) {  // image shards (image_set.h): read whole, checksum and labels checked
            ImageArray a;
            ImageClasses cls;
            char split[64];
            if (image_shard_load(path, 1, &a, &cls, split, err, sizeof(err)) == 0) {
                if (strcmp(split, e->split) || a.n != e->tokens)
                    snprintf(err, sizeof(err),
                             "%s: split '%s' with %lld images, but %s says '%s' with %lld", path,
                             split, (long long)a.n, SHARDS_MANIFEST, e->split,
                             (long long)e->tokens);
                else
                    printf("ok  %-6s %-18s %12lld images   %dx%dx%d  %d classes\n", e->split,
                           e->file, (long long)a.n, a.H, a.W, a.C, cls.num_classes);
                int good = !strcmp(split, e->split) && a.n == e->tokens;
                image_array_free(&a), image_classes_free(&cls);
                if (good) {
                    tokens += e->tokens;
                    continue;
                }
            }
            fprintf(stderr, "madtrain: error: %s\n", err);
            bad++;
            continue;
        }
        ShardInfo in;
        Shard *s = shard_open(path, 1, &in, err, sizeof(err));
        if (s && (strcmp(in.split, e->split) || in.rows * in.row_len != e->tokens)) {
            snprintf(err, sizeof(err),
                     "%s: split '%s' with %lld tokens, but %s says '%s' with %lld", path, in.split,
                     (long long)(in.rows * in.row_len), SHARDS_MANIFEST, e->split,
                     (long long)e->tokens);
            shard_close(s);
            s = NULL;
        }
        if (!s) {
            fprintf(stderr, "madtrain: error: %s\n", err);
            bad++;
            continue;
        }
        // A subword tokenizer is named with its model file's CRC-32: the model beside the
        // shards must be that one, or text encoded with it would not match them.
        unsigned want, have;
        char model[1100];
        if ((sscanf(in.tokenizer, "bpe-%8x", &want) == 1 ||
             sscanf(in.tokenizer, "unigram-%8x", &want) == 1)) {
            snprintf(model, sizeof(model), "%s/tokenizer.model", dir);
            const char *why = NULL;
            char msg[64];
            if (file_crc32(model, &have))
                why = "is missing";
            else if (have != want)
                snprintf(msg, sizeof(msg), "has crc32 %08x", have), why = msg;
            if (why) {
                fprintf(stderr,
                        "madtrain: error: %s: written by tokenizer %s, but %s %s: not the model "
                        "that wrote the shards\n",
                        path, in.tokenizer, model, why);
                bad++;
                shard_close(s);
                continue;
            }
        }
        printf("ok  %-6s %-18s %12lld tokens  %s  uint%d  vocab %lld  %s/%s  crc32 %08x\n",
               e->split, e->file, (long long)e->tokens,
               in.kind == SHARD_LM ? "tokens   " : "sequences", 8 * in.token_bytes,
               (long long)in.vocab_size, in.task, in.tokenizer, (unsigned)in.checksum);
        tokens += e->tokens;
        shard_close(s);
    }
    printf("prep check: %d of %d shard(s) good, %lld %s, %.1fs\n", m.n - bad, m.n,
           (long long)tokens, images ? "images" : "tokens", prep_elapsed());
    manifest_free(&m);
    return bad ? MT_EXIT_FAIL : 0;
}
