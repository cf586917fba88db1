// The shard data path through the loader interface: LM windows and their epoch shuffles,
// evaluation windows that score every token once, the same global batches for 1, 2 and 4
// ranks, resuming at any position, synthetic shards equal to in-process generation, text
// round trips through `prep wikitext` (word and byte tokenisers, uint16/uint32, gzip), a
// shard over 4 GiB of tokens, and the reader thread owning the HDF5 calls.
//
// usage: test_data WORK_DIR
#include <errno.h>
#include <hdf5.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../data/h5util.h"
#include "../data/loader.h"
#include "../data/prep.h"
#include "../data/reader.h"
#include "../data/shards.h"
#include "../data/util.h"
#include "../kernels/rng.h"
#include "../src/data_config.h"
#include "../src/prep_cli.h"

static int failures = 0;
#define CHECK(cond, ...)                                \
    do {                                                \
        if (!(cond)) {                                  \
            printf("FAIL %s:%d: ", __FILE__, __LINE__); \
            printf(__VA_ARGS__);                        \
            printf("\n");                               \
            failures++;                                 \
        }                                               \
    } while (0)

static const char *work;

static void make_config(Config *c, const char *overrides) {
    config_defaults(c);
    char buf[2048], err[512];
    snprintf(buf, sizeof(buf), "%s", overrides);
    for (char *save = NULL, *kv = strtok_r(buf, " ", &save); kv; kv = strtok_r(NULL, " ", &save))
        if (config_override(c, kv, err, sizeof(err))) {
            printf("bad test config: %s\n", err);
            exit(2);
        }
}

static Loader *open_or_die(const Config *c, int rank, int world) {
    char err[1400];
    DataOptions o = data_options_from_config(c);
    Loader *l = loader_open(&o, rank, world, err, sizeof(err));
    if (!l) {
        printf("FAIL: loader_open: %s\n", err);
        exit(1);
    }
    return l;
}

// ---- a language-modelling shard set with known tokens -------------------------------------
static int token_at(int split, int shard, int64_t i, int vocab) {
    return (int)(rng_u64((uint64_t)(split * 100 + shard), (uint64_t)i) % (uint64_t)vocab);
}

typedef struct {
    int n_train, n_valid;
    int64_t train[8], valid[8];  // tokens per shard
} Layout;

static void write_lm_set(const char *dir, const Layout *lay, int vocab, int token_bytes, int gzip) {
    char err[1400], path[1200];
    mkdir_p(dir);
    Manifest m = {0};
    for (int split = 0; split < 2; split++) {
        int n = split ? lay->n_valid : lay->n_train;
        for (int k = 0; k < n; k++) {
            ShardInfo in = {
                .kind = SHARD_LM, .vocab_size = vocab, .row_len = 1, .token_bytes = token_bytes};
            in.rows = split ? lay->valid[k] : lay->train[k];
            snprintf(in.tokenizer, sizeof(in.tokenizer), "none");
            snprintf(in.task, sizeof(in.task), "lm");
            snprintf(in.split, sizeof(in.split), "%s", split ? "valid" : "train");
            char name[96];
            snprintf(name, sizeof(name), "%s-%05d.h5", in.split, k);
            snprintf(path, sizeof(path), "%s/%s", dir, name);
            int *tok = xmalloc(sizeof(int) * (size_t)(in.rows + 1));
            for (int64_t i = 0; i < in.rows; i++) tok[i] = token_at(split, k, i, vocab);
            ShardWriter *w = shard_create(path, &in, gzip, err, sizeof(err));
            if (!w || shard_append(w, tok, NULL, in.rows, err, sizeof(err)) ||
                shard_finish(w, NULL, 0, err, sizeof(err))) {
                printf("FAIL: writing %s: %s\n", path, err);
                exit(1);
            }
            free(tok);
            manifest_add(&m, in.split, name, in.rows);
        }
    }
    if (manifest_write(dir, &m, err, sizeof(err))) {
        printf("FAIL: %s\n", err);
        exit(1);
    }
    manifest_free(&m);
}

// Every training window of the layout, as (shard, first token).
static int64_t list_windows(const Layout *lay, int T, int *shard, int64_t *start) {
    int64_t n = 0;
    for (int k = 0; k < lay->n_train; k++)
        for (int64_t s = 0; s + T + 1 <= lay->train[k]; s += T) {
            if (shard) shard[n] = k, start[n] = s;
            n++;
        }
    return n;
}

static void test_shuffle(void) {
    const uint64_t sizes[] = {1, 2, 3, 7, 64, 1000, 4097, 100003};
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        uint64_t n = sizes[s];
        char *seen = xcalloc(n, 1);
        int moved = 0;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t j = shuffle_index(i, n, 42);
            CHECK(j < n && !seen[j], "shuffle_index is not a bijection of [0, %llu)",
                  (unsigned long long)n);
            if (j < n) seen[j] = 1;
            moved += j != i;
        }
        CHECK(n < 8 || moved > (int)(n / 2), "shuffle of %llu leaves most indices in place",
              (unsigned long long)n);
        free(seen);
    }
    int same = 0;
    for (uint64_t i = 0; i < 1000; i++)
        same += shuffle_index(i, 1000, 1) == shuffle_index(i, 1000, 2);
    CHECK(same < 50, "two keys give nearly the same order (%d of 1000 equal)", same);
}

// Training windows: each epoch visits every window exactly once, in a different order per
// epoch; ids are a window's first T tokens, targets its last T.
static void test_lm_train(const char *dir, const Layout *lay, int vocab) {
    const int T = 16, GB = 8;
    Config c;
    char ov[600];
    snprintf(ov, sizeof(ov), "data.path=%s data.seq_len=16 train.batch_size=8 seed=7", dir);
    make_config(&c, ov);
    Loader *l = open_or_die(&c, 0, 1);
    int64_t n = list_windows(lay, T, NULL, NULL);
    int *shard = xmalloc(sizeof(int) * (size_t)n);
    int64_t *start = xmalloc(sizeof(int64_t) * (size_t)n);
    list_windows(lay, T, shard, start);
    CHECK(loader_train_size(l) == n, "train size %lld, expected %lld windows",
          (long long)loader_train_size(l), (long long)n);
    CHECK(loader_seq_len(l) == T && loader_vocab(l) == vocab && loader_is_lm(l), "shape");
    int64_t epochs = 3, batches = (epochs * n + GB - 1) / GB;
    int64_t *order = xmalloc(sizeof(int64_t) * (size_t)(batches * GB));
    int ids[GB * 16], targets[GB * 16];
    char err[1400];
    for (int64_t b = 0; b < batches; b++) {
        if (loader_train(l, b * GB, GB, ids, targets, NULL, err, sizeof(err))) {
            CHECK(0, "loader_train: %s", err);
            break;
        }
        for (int j = 0; j < GB; j++) {
            int64_t found = -1;
            for (int64_t w = 0; w < n && found < 0; w++) {
                int match = 1;
                for (int t = 0; t <= T && match; t++) {
                    int want = token_at(0, shard[w], start[w] + t, vocab);
                    match = (t < T ? ids[j * T + t] == want : 1) &&
                            (t > 0 ? targets[j * T + t - 1] == want : 1);
                }
                if (match) found = w;
            }
            CHECK(found >= 0, "position %lld is not a window of the data", (long long)(b * GB + j));
            order[b * GB + j] = found;
        }
    }
    char *seen = xmalloc((size_t)n);
    for (int64_t e = 0; e < epochs && (e + 1) * n <= batches * GB; e++) {
        memset(seen, 0, (size_t)n);
        for (int64_t p = e * n; p < (e + 1) * n; p++)
            if (order[p] >= 0) seen[order[p]]++;
        int ok = 1;
        for (int64_t w = 0; w < n; w++) ok &= seen[w] == 1;
        CHECK(ok, "epoch %lld does not visit every window exactly once", (long long)e);
    }
    CHECK(memcmp(order, order + n, sizeof(int64_t) * (size_t)n), "epochs 0 and 1 share an order");
    free(seen), free(order), free(shard), free(start);
    loader_close(l);
}

// Evaluation with stride S: the scored targets, in order, are every token of the eval split
// but each shard's first, once; each scored position sees the tokens just before its target.
static void test_lm_eval(const char *dir, const Layout *lay, int vocab, int S) {
    const int T = 16;
    Config c;
    char ov[600], err[1400];
    snprintf(ov, sizeof(ov), "data.path=%s data.seq_len=16 train.batch_size=8 data.eval_stride=%d",
             dir, S);
    make_config(&c, ov);
    Loader *l = open_or_die(&c, 0, 1);
    int64_t n = loader_eval_size(l, EVAL_TEST), expected_scored = 0;
    for (int k = 0; k < lay->n_valid; k++)
        expected_scored += lay->valid[k] > 0 ? lay->valid[k] - 1 : 0;
    int k = 0, bad = 0;
    int64_t i = 1, scored = 0;  // cursor: shard k, token i is the next target expected
    int ids[16], targets[16];
    for (int64_t e = 0; e < n; e++) {
        if (loader_eval(l, EVAL_TEST, e, 1, ids, targets, NULL, NULL, err, sizeof(err))) {
            CHECK(0, "loader_eval: %s", err);
            break;
        }
        for (int t = 0; t < T; t++) {
            if (targets[t] < 0) continue;
            while (k < lay->n_valid && i >= lay->valid[k]) k++, i = 1;
            if (k >= lay->n_valid) {
                bad++;
                break;
            }
            bad += targets[t] != token_at(1, k, i, vocab);
            for (int u = 0; u <= t; u++) bad += ids[u] != token_at(1, k, i - 1 - t + u, vocab);
            // at least T - S tokens of context unless the window opens its shard
            bad += t + 1 < T - S + 1 && i - 1 - t > 0;
            i++, scored++;
        }
    }
    CHECK(!bad && scored == expected_scored, "stride %d: %lld of %lld tokens scored, %d mismatches",
          S, (long long)scored, (long long)expected_scored, bad);
    loader_close(l);
}

// Global batches of 1, 2 and 4 ranks; then resuming mid-stream (past an epoch boundary) on
// another world size returns exactly the next batches.
static void test_world_and_resume(const char *dir, const char *extra) {
    enum { GB = 8, STEPS = 40, MAXT = 32 };
    static int global[3][STEPS][GB * MAXT], global_t[3][STEPS][GB * MAXT];
    const int worlds[3] = {1, 2, 4};
    char ov[700], err[1400];
    snprintf(ov, sizeof(ov), "data.path=%s train.batch_size=8 seed=3 %s", dir, extra);
    Config c;
    make_config(&c, ov);
    int T = 0;
    for (int wi = 0; wi < 3; wi++) {
        int W = worlds[wi], slice = GB / W;
        for (int r = 0; r < W; r++) {
            Loader *l = open_or_die(&c, r, W);
            T = loader_seq_len(l);
            for (int s = 0; s < STEPS; s++)
                if (loader_train(l, (int64_t)s * GB + r * slice, slice,
                                 global[wi][s] + r * slice * T, global_t[wi][s] + r * slice * T,
                                 NULL, err, sizeof(err)))
                    CHECK(0, "loader_train: %s", err);
            loader_close(l);
        }
    }
    for (int wi = 1; wi < 3; wi++)
        CHECK(!memcmp(global[0], global[wi], sizeof(global[0])) &&
                  !memcmp(global_t[0], global_t[wi], sizeof(global_t[0])),
              "%s: the global batches of %d ranks differ from 1 rank's", dir, worlds[wi]);
    Loader *l = open_or_die(&c, 0, 1);
    CHECK(loader_train_size(l) < STEPS * GB, "%s: the test should cross an epoch boundary", dir);
    loader_close(l);
    // Resume at step 23 on 2 ranks (rank 1) and on 4 ranks (rank 3).
    for (int wi = 1; wi < 3; wi++) {
        int W = worlds[wi], r = W - 1, slice = GB / W;
        l = open_or_die(&c, r, W);
        int ids[GB * MAXT], targets[GB * MAXT];
        for (int s = 23; s < STEPS; s++) {
            loader_train(l, (int64_t)s * GB + r * slice, slice, ids, targets, NULL, err,
                         sizeof(err));
            CHECK(!memcmp(ids, global[0][s] + r * slice * T, sizeof(int) * (size_t)(slice * T)) &&
                      !memcmp(targets, global_t[0][s] + r * slice * T,
                              sizeof(int) * (size_t)(slice * T)),
                  "%s: resumed on %d ranks, step %d differs", dir, W, s);
        }
        loader_close(l);
    }
}

static int run_prep(const char *args) {
    char buf[2048];
    snprintf(buf, sizeof(buf), "prep %s", args);
    char *argv[64];
    int argc = 0;
    for (char *save = NULL, *a = strtok_r(buf, " ", &save); a && argc < 63;
         a = strtok_r(NULL, " ", &save))
        argv[argc++] = a;
    argv[argc] = NULL;
    return prep_main(argc, argv);
}

// `prep synthetic` shards train and evaluate on exactly the in-process examples and order.
static void test_synthetic_shards(const char *task_keys) {
    char dir[600], args[1200], ov[1200], err[1400];
    snprintf(dir, sizeof(dir), "%s/synthetic", work);
    const char *sizes = "data.train_examples=200 data.test_examples=40 seed=99";
    snprintf(args, sizeof(args), "synthetic --out %s --shard-examples 64 %s %s", dir, task_keys,
             sizes);
    CHECK(run_prep(args) == 0, "prep %s failed", args);
    snprintf(ov, sizeof(ov), "%s %s train.batch_size=8", task_keys, sizes);
    Config in_process, sharded;
    make_config(&in_process, ov);
    snprintf(ov + strlen(ov), sizeof(ov) - strlen(ov), " data.path=%s", dir);
    make_config(&sharded, ov);
    Loader *a = open_or_die(&in_process, 0, 1), *b = open_or_die(&sharded, 0, 1);
    int T = loader_seq_len(a);
    CHECK(loader_seq_len(b) == T && loader_vocab(a) == loader_vocab(b) &&
              loader_train_size(b) == 200 && loader_eval_size(b, EVAL_TEST) == 40 &&
              !loader_is_lm(b),
          "synthetic shards: shape or sizes differ from the in-process task");
    int *x = xmalloc(sizeof(int) * 8 * (size_t)T), *y = xmalloc(sizeof(int) * 8 * (size_t)T);
    int *u = xmalloc(sizeof(int) * 8 * (size_t)T), *v = xmalloc(sizeof(int) * 8 * (size_t)T);
    int diff = 0;
    for (int64_t p = 0; p < 600; p += 8) {  // three epochs
        loader_train(a, p, 8, x, y, NULL, err, sizeof(err));
        if (loader_train(b, p, 8, u, v, NULL, err, sizeof(err))) CHECK(0, "%s", err);
        diff +=
            memcmp(x, u, sizeof(int) * 8 * (size_t)T) || memcmp(y, v, sizeof(int) * 8 * (size_t)T);
    }
    for (int64_t e = 0; e < 40; e += 8) {
        loader_eval(a, EVAL_TEST, e, 8, x, y, NULL, NULL, err, sizeof(err));
        loader_eval(b, EVAL_TEST, e, 8, u, v, NULL, NULL, err, sizeof(err));
        diff +=
            memcmp(x, u, sizeof(int) * 8 * (size_t)T) || memcmp(y, v, sizeof(int) * 8 * (size_t)T);
    }
    CHECK(!diff, "synthetic shards (%s): %d batches differ from in-process generation", task_keys,
          diff);
    free(x), free(y), free(u), free(v);
    loader_close(a), loader_close(b);
}

// ---- text round trips through prep wikitext -----------------------------------------------
static const char TEXT_TRAIN[] =
    " \n"
    " = Alpha = \n"
    " \n"
    " the cat  sat\ton the <unk> mat . \n"
    " = = Section = = \n"
    " caf\xc3\xa9 na\xc3\xafve the the cat \r\n"
    "\n"
    " = Beta = \n"
    " the dog , the cat . \n"
    "last line without newline";
static const char TEXT_VALID[] = " the zebra sat . \n = Gamma = \n the cat \n";

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    fputs(text, f);
    fclose(f);
}

// The tokens a split must hold, by the documented rule (Python: line.split() + [b"<eos>"]).
static int expected_words(const char *text, char words[][32], int max) {
    int n = 0;
    const char *p = text;
    while (*p) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        for (size_t i = 0; i < len;) {
            while (i < len && strchr(" \t\r\v\f", p[i])) i++;
            size_t s = i;
            while (i < len && !strchr(" \t\r\v\f", p[i])) i++;
            if (i > s && n < max) snprintf(words[n++], 32, "%.*s", (int)(i - s), p + s);
        }
        if (n < max) snprintf(words[n++], 32, "<eos>");
        p += len + (end ? 1 : 0);
    }
    return n;
}

// All tokens of one split of a shard folder, in manifest order.
static int64_t read_split(const char *dir, const char *split, int *out, int64_t max,
                          ShardInfo *info) {
    Manifest m;
    char err[1400], path[1200];
    if (manifest_read(dir, &m, err, sizeof(err))) {
        CHECK(0, "%s", err);
        return 0;
    }
    int64_t n = 0;
    for (int i = 0; i < m.n; i++) {
        if (strcmp(m.entries[i].split, split)) continue;
        snprintf(path, sizeof(path), "%s/%s", dir, m.entries[i].file);
        Shard *s = shard_open(path, 1, info, err, sizeof(err));
        if (!s) {
            CHECK(0, "%s", err);
            continue;
        }
        if (n + info->rows <= max && shard_read_tokens(s, 0, info->rows, out + n, err, sizeof(err)))
            CHECK(0, "%s", err);
        n += info->rows;
        shard_close(s);
    }
    manifest_free(&m);
    return n;
}

static int load_vocab(const char *dir, char words[][32], int max) {
    char path[1200], line[256];
    snprintf(path, sizeof(path), "%s/vocab.txt", dir);
    FILE *f = fopen(path, "rb");
    int n = 0;
    while (f && fgets(line, sizeof(line), f) && n < max) {
        line[strcspn(line, "\n")] = 0;
        snprintf(words[n++], 32, "%.31s", line);
    }
    if (f) fclose(f);
    return n;
}

static void test_word_round_trip(const char *options) {
    char dir[600], args[1800], train[700], valid[700];
    snprintf(dir, sizeof(dir), "%s/text-word", work);
    snprintf(train, sizeof(train), "%s/train.txt", work);
    snprintf(valid, sizeof(valid), "%s/valid.txt", work);
    write_text(train, TEXT_TRAIN);
    write_text(valid, TEXT_VALID);
    snprintf(args, sizeof(args), "wikitext --in %s --out %s %s", work, dir, options);
    CHECK(run_prep(args) == 0, "prep %s failed", args);
    static char vocab[64][32], want[128][32];
    int V = load_vocab(dir, vocab, 64);
    const char *splits[2] = {"train", "valid"}, *texts[2] = {TEXT_TRAIN, TEXT_VALID};
    for (int s = 0; s < 2; s++) {
        int n = expected_words(texts[s], want, 128), got[256];
        ShardInfo info;
        int64_t m = read_split(dir, splits[s], got, 256, &info);
        int bad = m != n || info.vocab_size != V;
        for (int i = 0; i < n && !bad; i++) {
            int known = 0;
            for (int v = 0; v < V; v++) known |= !strcmp(vocab[v], want[i]);
            const char *w = known ? want[i] : "<unk>";
            bad |= got[i] < 0 || got[i] >= V || strcmp(vocab[got[i]], w);
        }
        CHECK(!bad, "word round trip (%s), split %s: %lld tokens read, %d expected", options,
              splits[s], (long long)m, n);
    }
    // Vocabulary: the training words by decreasing count, <unk> included.
    int n = expected_words(TEXT_TRAIN, want, 128), last = 1 << 30, ordered = 1;
    for (int v = 0; v < V; v++) {
        int count = 0;
        for (int i = 0; i < n; i++) count += !strcmp(want[i], vocab[v]);
        ordered &= count <= last && (count > 0 || !strcmp(vocab[v], "<unk>"));
        last = count;
    }
    CHECK(ordered && !strcmp(vocab[0], "<eos>"), "vocab.txt is not the training words by count");
}

static void test_byte_round_trip(const char *options) {
    char dir[600], args[1800];
    snprintf(dir, sizeof(dir), "%s/text-byte", work);
    snprintf(args, sizeof(args), "wikitext --in %s --out %s --tokenizer byte %s", work, dir,
             options);
    CHECK(run_prep(args) == 0, "prep %s failed", args);
    int got[512];
    ShardInfo info;
    int64_t m = read_split(dir, "train", got, 512, &info);
    int bad = m != (int64_t)strlen(TEXT_TRAIN) || info.vocab_size != 256 ||
              strcmp(info.tokenizer, "byte");
    for (int64_t i = 0; i < m && !bad; i++) bad |= got[i] != (unsigned char)TEXT_TRAIN[i];
    CHECK(!bad, "byte round trip (%s): %lld bytes read, %zu in the file", options, (long long)m,
          strlen(TEXT_TRAIN));
}

// Documents open at article titles (" = Alpha = "), not at section headings.
static void test_doc_offsets(void) {
    char path[700];
    snprintf(path, sizeof(path), "%s/text-word/train-00000.h5", work);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = f < 0 ? -1 : H5Dopen2(f, "doc_offsets", H5P_DEFAULT);
    int64_t off[8] = {0};
    hid_t sp = d < 0 ? -1 : H5Dget_space(d);
    int n = sp < 0 ? 0 : (int)H5Sget_simple_extent_npoints(sp);
    if (n > 0 && n <= 8) H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, off);
    // Alpha opens at 0 (only a blank line before it); Beta at token 27.
    static char want[128][32];
    int total = expected_words(TEXT_TRAIN, want, 128), beta = 0;
    while (beta < total && strcmp(want[beta], "Beta")) beta++;
    CHECK(n == 3 && off[0] == 0 && off[1] == beta - 1 && off[2] == total,
          "doc_offsets: %d entries [%lld, %lld, %lld], expected [0, %d, %d]", n, (long long)off[0],
          (long long)off[1], (long long)off[2], beta - 1, total);
    if (sp >= 0) H5Sclose(sp);
    if (d >= 0) H5Dclose(d);
    if (f >= 0) H5Fclose(f);
}

// ---- a shard over 4 GiB ------------------------------------------------------------------
// 2^32 + 2^21 uint16 tokens (8 GiB of data), written sparse: only the last 2^21 tokens hold
// data. Windows past token 2^32 (byte offsets past 2^33) must read back exactly.
static void test_huge_shard(void) {
    const int64_t n = ((int64_t)1 << 32) + ((int64_t)1 << 21), tail = (int64_t)1 << 21;
    const int T = 1024, vocab = 50000;
    char dir[600], path[700], err[1400];
    snprintf(dir, sizeof(dir), "%s/huge", work);
    mkdir_p(dir);
    snprintf(path, sizeof(path), "%s/train-00000.h5", dir);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dims = (hsize_t)n, start = (hsize_t)(n - tail), count = (hsize_t)tail;
    hid_t sp = H5Screate_simple(1, &dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
    hid_t d = H5Dcreate2(f, "tokens", H5T_STD_U16LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    uint16_t *tok = xmalloc(sizeof(uint16_t) * (size_t)tail);
    for (int64_t i = 0; i < tail; i++) tok[i] = (uint16_t)token_at(5, 0, n - tail + i, vocab);
    hid_t ms = H5Screate_simple(1, &count, NULL);
    H5Sselect_hyperslab(sp, H5S_SELECT_SET, &start, NULL, &count, NULL);
    herr_t wrc = H5Dwrite(d, H5T_NATIVE_UINT16, ms, sp, H5P_DEFAULT, tok);
    int64_t one = 1, checksum = 0, v = vocab;
    const char *strs[3][2] = {{"tokenizer", "none"}, {"task", "lm"}, {"split", "train"}};
    hid_t scalar = H5Screate(H5S_SCALAR), str = H5Tcopy(H5T_C_S1);
    H5Tset_size(str, 16);
    struct {
        const char *name;
        int64_t *value;
    } ints[3] = {{"format_version", &one}, {"vocab_size", &v}, {"checksum_crc32", &checksum}};
    for (int i = 0; i < 3; i++) {
        hid_t a = H5Acreate2(f, ints[i].name, H5T_STD_I64LE, scalar, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, H5T_NATIVE_INT64, ints[i].value);
        H5Aclose(a);
        char buf[16] = {0};
        snprintf(buf, sizeof(buf), "%s", strs[i][1]);
        a = H5Acreate2(f, strs[i][0], str, scalar, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, str, buf);
        H5Aclose(a);
    }
    H5Tclose(str), H5Sclose(scalar), H5Sclose(ms), H5Sclose(sp), H5Pclose(dcpl), H5Dclose(d);
    H5Fclose(f);
    CHECK(wrc >= 0, "writing the sparse shard failed");
    Manifest m = {0};
    manifest_add(&m, "train", "train-00000.h5", n);
    manifest_write(dir, &m, err, sizeof(err));
    manifest_free(&m);
    struct stat st;
    stat(path, &st);
    printf("huge shard: %lld tokens, %lld bytes apparent, %lld MiB on disk\n", (long long)n,
           (long long)st.st_size, (long long)st.st_blocks * 512 / (1 << 20));

    Config c;
    char ov[800];
    snprintf(ov, sizeof(ov),
             "data.path=%s data.seq_len=1024 train.batch_size=1 data.eval_split= data.verify=false "
             "seed=7",
             dir);
    make_config(&c, ov);
    Loader *l = open_or_die(&c, 0, 1);
    CHECK(loader_train_size(l) == (n - 1) / T, "huge shard: %lld windows, expected %lld",
          (long long)loader_train_size(l), (long long)((n - 1) / T));
    // Positions of epoch 0 whose window lies in the written tail, found from the same order.
    uint64_t key = shuffle_key(7, 0);
    int found = 0, ids[1024], targets[1024];
    int64_t N = (n - 1) / T;
    for (int64_t p = 0; p < 200000 && found < 3; p++) {
        int64_t w = (int64_t)shuffle_index((uint64_t)p, (uint64_t)N, key);
        if (w * T < n - tail) continue;
        found++;
        if (loader_train(l, p, 1, ids, targets, NULL, err, sizeof(err))) {
            CHECK(0, "huge shard: %s", err);
            break;
        }
        int bad = 0;
        for (int t = 0; t < T; t++)
            bad += ids[t] != token_at(5, 0, w * T + t, vocab) ||
                   targets[t] != token_at(5, 0, w * T + t + 1, vocab);
        CHECK(!bad, "huge shard: window %lld (token %lld, byte %lld) read back wrong", (long long)w,
              (long long)(w * T), (long long)(2 * w * T));
    }
    CHECK(found == 3, "huge shard: no position maps past 2^32 tokens");
    loader_close(l);
    free(tok);
    unlink(path);
}

// ---- the HDF5 lock --------------------------------------------------------------------------
static void *take_h5_lock(void *flag) {
    h5_lock();
    *(volatile int *)flag = 1;
    h5_unlock();
    return NULL;
}

// One reader per process; the HDF5 lock is recursive on its holder's thread and keeps every
// other thread out until the holder has released it as often as it took it.
static void test_hdf5_thread(const char *dir) {
    Config c;
    char ov[700];
    snprintf(ov, sizeof(ov), "data.path=%s data.seq_len=16 train.batch_size=8", dir);
    make_config(&c, ov);
    Loader *l = open_or_die(&c, 0, 1);
    char err[1400];
    DataOptions o = data_options_from_config(&c);
    Loader *second = loader_open(&o, 0, 1, err, sizeof(err));
    CHECK(!second && strstr(err, "already open"), "a second shard reader opened in one process");
    loader_close(l);

    volatile int taken = 0;
    pthread_t other;
    h5_lock();
    h5_lock();
    pthread_create(&other, NULL, take_h5_lock, (void *)&taken);
    struct timespec nap = {0, 50 * 1000 * 1000};
    nanosleep(&nap, NULL);
    CHECK(!taken, "another thread took the HDF5 lock while this one held it");
    h5_unlock();
    nanosleep(&nap, NULL);
    CHECK(!taken, "another thread took the HDF5 lock while this one still held it once");
    h5_unlock();
    pthread_join(other, NULL);
    CHECK(taken, "the HDF5 lock was not free after its holder released it");
}

int main(int argc, char **argv) {
    char tmpl[] = "/tmp/madtrain-test-data.XXXXXX";
    work = argc > 1 ? argv[1] : mkdtemp(tmpl);
    if (!work || mkdir_p(work)) {
        printf("cannot create the work folder: %s\n", strerror(errno));
        return 2;
    }
    h5_errors(0);
    test_shuffle();

    Layout lay = {.n_train = 4, .n_valid = 3, .train = {1000, 37, 5, 777}, .valid = {300, 1, 17}};
    char lm16[600], lm32[600], lmgz[600];
    snprintf(lm16, sizeof(lm16), "%s/lm-u16", work);
    snprintf(lm32, sizeof(lm32), "%s/lm-u32", work);
    snprintf(lmgz, sizeof(lmgz), "%s/lm-gzip", work);
    write_lm_set(lm16, &lay, 1000, 2, 0);
    write_lm_set(lm32, &lay, 100000, 4, 0);  // ids past 65535
    write_lm_set(lmgz, &lay, 1000, 2, 6);    // chunked + compressed: reads through H5Dread
    test_lm_train(lm16, &lay, 1000);
    test_lm_train(lm32, &lay, 100000);
    test_lm_train(lmgz, &lay, 1000);
    for (int S = 1; S <= 16; S *= 4) test_lm_eval(lm16, &lay, 1000, S);
    test_lm_eval(lmgz, &lay, 1000, 16);

    test_world_and_resume(lm16, "data.seq_len=16");
    test_synthetic_shards("data.task=mqar data.seq_len=32 data.vocab_size=32 data.num_kv_pairs=4");
    test_synthetic_shards(
        "data.task=ar data.ar_layout=shared data.seq_len=24 data.ar_symbols=8 data.num_kv_pairs=4");
    test_synthetic_shards("data.task=ar data.seq_len=24 data.ar_symbols=8 data.num_kv_pairs=4");
    char syn[600];
    snprintf(syn, sizeof(syn), "%s/synthetic", work);  // the ar shards just written
    test_world_and_resume(syn, "data.seq_len=24");

    test_word_round_trip("");
    test_doc_offsets();
    test_word_round_trip("--shard-tokens 7 --dtype uint32");
    test_word_round_trip("--gzip 4 --shard-tokens 10");
    test_byte_round_trip("");
    test_byte_round_trip("--shard-tokens 13 --gzip 1");
    test_hdf5_thread(lm16);
    test_huge_shard();
    printf("%s: %d failure(s)\n", failures ? "FAILED" : "PASSED", failures);
    return failures != 0;
}
