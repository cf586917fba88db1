// Reader throughput: tokens per second the shard loader delivers to the trainer on one rank,
// on a WikiText-103-sized file (default 100M tokens, vocab 267,735 so uint32 ids), for a few
// window lengths, asked for exactly as train.c asks (this rank's slice of each global batch,
// through loader_train, the prefetch thread reading ahead). The trainer does no work here,
// so the figure is the ceiling the data path puts on a training step.
//
// Token i of the file is i mod vocab, so the delivered windows can be checked: a fresh loader
// re-reads the timed positions (up to 4096 batches), every window must be consecutive ids
// with targets shifted by one, and the first batches must equal the timed run's.
//
// usage: bench_reader [--tokens N] [--vocab V] [--dir DIR] [--batch B] [--seconds S]
//                     [--gzip-tokens N] [--keep]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../data/h5util.h"
#include "../data/loader.h"
#include "../data/shards.h"
#include "../data/util.h"
#include "../src/data_config.h"

static void die(const char *msg) {
    fprintf(stderr, "bench_reader: %s\n", msg);
    exit(1);
}

// One shard of `tokens` tokens (token i = i mod vocab) plus a small valid shard.
static double write_set(const char *dir, int64_t tokens, int64_t vocab, int gzip) {
    double t0 = now_seconds();
    char err[1400], path[1200];
    mkdir_p(dir);
    Manifest m = {0};
    const char *splits[2] = {"train", "valid"};
    int64_t sizes[2] = {tokens, 4096};
    const int64_t block = 1 << 20;
    int *buf = xmalloc(sizeof(int) * (size_t)block);
    for (int s = 0; s < 2; s++) {
        ShardInfo in = {.kind = SHARD_LM,
                        .vocab_size = vocab,
                        .row_len = 1,
                        .rows = sizes[s],
                        .token_bytes = vocab <= 65536 ? 2 : 4};
        snprintf(in.tokenizer, sizeof(in.tokenizer), "none");
        snprintf(in.task, sizeof(in.task), "lm");
        snprintf(in.split, sizeof(in.split), "%s", splits[s]);
        snprintf(path, sizeof(path), "%s/%s-00000.h5", dir, splits[s]);
        ShardWriter *w = shard_create(path, &in, gzip, err, sizeof(err));
        for (int64_t first = 0; w && first < sizes[s]; first += block) {
            int64_t k = sizes[s] - first < block ? sizes[s] - first : block;
            for (int64_t i = 0; i < k; i++) buf[i] = (int)((first + i) % vocab);
            if (shard_append(w, buf, NULL, k, err, sizeof(err))) die(err);
        }
        if (!w || shard_finish(w, NULL, 0, err, sizeof(err))) die(err);
        char name[64];
        snprintf(name, sizeof(name), "%s-00000.h5", splits[s]);
        manifest_add(&m, splits[s], name, sizes[s]);
    }
    if (manifest_write(dir, &m, err, sizeof(err))) die(err);
    manifest_free(&m);
    free(buf);
    return now_seconds() - t0;
}

static uint64_t hash_ints(const int *x, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint32_t)x[i]) * 0x100000001b3ull;
    return h;
}

typedef struct {
    double seconds, open_s;
    int64_t batches;
    int correct;
} Result;

static Result run(const char *dir, int T, int batch, double seconds, int64_t vocab) {
    Config c;
    config_defaults(&c);
    char err[1400], value[32];
    snprintf(value, sizeof(value), "%d", T);
    int rc = config_set(&c, "data.path", dir, "bench", err, sizeof(err)) ||
             config_set(&c, "data.seq_len", value, "bench", err, sizeof(err));
    snprintf(value, sizeof(value), "%d", batch);
    if (rc || config_set(&c, "train.batch_size", value, "bench", err, sizeof(err))) die(err);
    Result r = {0};
    r.correct = 1;
    double t0 = now_seconds();
    DataOptions o = data_options_from_config(&c);
    Loader *l = loader_open(&o, 0, 1, err, sizeof(err));
    if (!l) die(err);
    r.open_s = now_seconds() - t0;
    size_t n = (size_t)batch * T;
    int *ids = xmalloc(sizeof(int) * n), *targets = xmalloc(sizeof(int) * n);
    enum { SAMPLES = 16 };
    uint64_t sample_hash[SAMPLES];
    // Timed: back-to-back calls, so the figure is the rate the reader thread sustains.
    t0 = now_seconds();
    double elapsed = 0;
    for (int64_t step = 0; elapsed < seconds || step < SAMPLES; step++) {
        if (loader_train(l, step * batch, batch, ids, targets, NULL, err, sizeof(err))) die(err);
        if (step < SAMPLES) sample_hash[step] = hash_ints(ids, n);
        r.batches++;
        elapsed = now_seconds() - t0;
    }
    r.seconds = elapsed;
    loader_close(l);
    // Checked, by a fresh loader over the same positions (up to 4096 batches): every window a
    // run of consecutive ids with targets shifted by one, and the sampled batches identical.
    l = loader_open(&o, 0, 1, err, sizeof(err));
    if (!l) die(err);
    for (int64_t step = 0; step < r.batches && step < 4096; step++) {
        if (loader_train(l, step * batch, batch, ids, targets, NULL, err, sizeof(err))) die(err);
        if (step < SAMPLES) r.correct &= hash_ints(ids, n) == sample_hash[step];
        for (size_t i = 0; i < n; i++) {  // token i of the file is i mod vocab
            int next = (int)((ids[i] + 1) % vocab);
            r.correct &=
                targets[i] == next && (i % (size_t)T == (size_t)T - 1 || ids[i + 1] == next);
        }
    }
    loader_close(l);
    free(ids), free(targets);
    return r;
}

int main(int argc, char **argv) {
    int64_t tokens = 100000000, vocab = 267735, gzip_tokens = 10000000;
    int batch = 32, keep = 0;
    double seconds = 3;
    const char *dir = "/tmp/madtrain-bench-reader";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--keep"))
            keep = 1;
        else if (!strcmp(a, "--tokens"))
            tokens = atoll(v), i++;
        else if (!strcmp(a, "--vocab"))
            vocab = atoll(v), i++;
        else if (!strcmp(a, "--dir"))
            dir = v, i++;
        else if (!strcmp(a, "--batch"))
            batch = atoi(v), i++;
        else if (!strcmp(a, "--seconds"))
            seconds = atof(v), i++;
        else if (!strcmp(a, "--gzip-tokens"))
            gzip_tokens = atoll(v), i++;
        else {
            fprintf(stderr,
                    "usage: bench_reader [--tokens N] [--vocab V] [--dir DIR] [--batch B] "
                    "[--seconds S] [--gzip-tokens N] [--keep]\n");
            return 2;
        }
    }
    h5_errors(0);
    char plain[1100], gz[1100];
    snprintf(plain, sizeof(plain), "%s/plain", dir);
    snprintf(gz, sizeof(gz), "%s/gzip", dir);
    double w_plain = write_set(plain, tokens, vocab, 0);
    double w_gz = gzip_tokens > 0 ? write_set(gz, gzip_tokens, vocab, 1) : 0;
    printf(
        "# bench_reader: one rank, loader_train as train.c calls it (batch %d windows per "
        "call, prefetch 4), no compute between calls\n",
        batch);
    printf(
        "# plain: %lld tokens, %s, one contiguous shard (written in %.1fs); gzip: %lld tokens, "
        "deflate level 1 + shuffle, chunks of 16K tokens (written in %.1fs)\n",
        (long long)tokens, vocab <= 65536 ? "uint16" : "uint32", w_plain, (long long)gzip_tokens,
        w_gz);
    printf("# open = manifest, attributes and the checksum/id pass over the whole shard\n");
    printf("%-7s %6s %9s %9s %9s %12s %11s %8s\n", "layout", "T", "open_s", "batches", "time_s",
           "tokens/s", "us/window", "correct");
    int all_ok = 1;
    const int Ts[3] = {64, 256, 1024};
    for (int g = 0; g < 2; g++) {
        if (g && gzip_tokens <= 0) break;
        for (int k = 0; k < 3; k++) {
            Result r = run(g ? gz : plain, Ts[k], batch, seconds, vocab);
            double tps = (double)r.batches * batch * Ts[k] / r.seconds;
            printf("%-7s %6d %9.3f %9lld %9.2f %12.4g %11.2f %8s\n", g ? "gzip" : "plain", Ts[k],
                   r.open_s, (long long)r.batches, r.seconds, tps,
                   1e6 * r.seconds / ((double)r.batches * batch), r.correct ? "yes" : "NO");
            all_ok &= r.correct;
        }
    }
    if (!keep) {
        char path[1300];
        const char *sets[2] = {plain, gz};
        for (int g = 0; g < 2; g++) {
            const char *files[3] = {"train-00000.h5", "valid-00000.h5", "manifest.tsv"};
            for (int f = 0; f < 3; f++) {
                snprintf(path, sizeof(path), "%s/%s", sets[g], files[f]);
                unlink(path);
            }
            rmdir(sets[g]);
        }
        rmdir(dir);
    }
    return all_ok ? 0 : 1;
}
