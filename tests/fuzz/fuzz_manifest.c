// The shard manifest (data/manifest.c) and what the reader does with it. Input: the bytes of
// manifest.tsv, in a folder that also holds two small valid shards (train-00000.h5 and
// valid-00000.h5, 40 tokens each, written once at start-up). A manifest that parses must
// write back and parse to the same entries; then the reader opens the folder (each listed
// shard opened and verified against its line) and reads a batch.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../data/reader.h"
#include "../../data/shards.h"
#include "../../data/util.h"
#include "fuzz_util.h"

enum { SHARD_TOKENS = 40, VOCAB = 50 };

static void write_shard(const char *name, const char *split) {
    ShardInfo info = {.kind = SHARD_LM,
                      .vocab_size = VOCAB,
                      .rows = SHARD_TOKENS,
                      .row_len = 1,
                      .token_bytes = 2};
    snprintf(info.tokenizer, sizeof(info.tokenizer), "none");
    snprintf(info.task, sizeof(info.task), "lm");
    snprintf(info.split, sizeof(info.split), "%s", split);
    int tokens[SHARD_TOKENS];
    for (int i = 0; i < SHARD_TOKENS; i++) tokens[i] = (i * 7) % VOCAB;
    char err[512];
    ShardWriter *w =
        shard_create(fuzz_path(2 + (split[0] == 'v'), name), &info, 0, err, sizeof(err));
    if (!w || shard_append(w, tokens, NULL, SHARD_TOKENS, err, sizeof(err)) ||
        shard_finish(w, NULL, 0, err, sizeof(err))) {
        fprintf(stderr, "fuzz_manifest: cannot write a shard: %s\n", err);
        abort();
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_quiet_hdf5();
    write_shard("train-00000.h5", "train");
    write_shard("valid-00000.h5", "valid");
    return 0;
}

// Only files inside the folder: an absolute or ../ name could reach a device or FIFO that
// blocks (a real user's manifest may name them; the fuzzer must not).
static int inside_folder(const Manifest *m) {
    for (int i = 0; i < m->n; i++)
        if (m->entries[i].file[0] == '/' || strstr(m->entries[i].file, "..")) return 0;
    return 1;
}

static void same_entries(const Manifest *a, const Manifest *b) {
    int same = a->version == b->version && a->n == b->n;
    for (int i = 0; same && i < a->n; i++)
        same = !strcmp(a->entries[i].split, b->entries[i].split) &&
               !strcmp(a->entries[i].file, b->entries[i].file) &&
               a->entries[i].tokens == b->entries[i].tokens;
    if (!same) {
        fprintf(stderr, "fuzz_manifest: written -> read differs (%d vs %d entries)\n", a->n, b->n);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *dir = fuzz_dir();
    fuzz_write(fuzz_path(0, SHARDS_MANIFEST), data, size);
    Manifest m, back;
    char err[2048];
    if (manifest_read(dir, &m, err, sizeof(err))) return 0;

    // Written into a second folder and read back.
    static char dir2[700];
    snprintf(dir2, sizeof(dir2), "%s/w", dir);
    fuzz_path(4, "w/" SHARDS_MANIFEST);
    fuzz_path(5, "w");
    mkdir_p(dir2);
    if (manifest_write(dir2, &m, err, sizeof(err)) ||
        manifest_read(dir2, &back, err, sizeof(err))) {
        fprintf(stderr, "fuzz_manifest: a parsed manifest does not write back: %s\n", err);
        abort();
    }
    same_entries(&m, &back);
    manifest_free(&back);

    if (inside_folder(&m)) {
        DataOptions o = {.seed = 1, .batch_size = 2, .seq_len = 8, .prefetch = 1, .verify = 1};
        snprintf(o.path, sizeof(o.path), "%s", dir);
        snprintf(o.eval_split, sizeof(o.eval_split), "valid");
        Reader *r = reader_open(&o, 0, 1, err, sizeof(err));
        if (r) {
            int ids[2 * 8], targets[2 * 8];
            reader_train(r, 0, 2, ids, targets, err, sizeof(err));
            if (reader_eval_size(r) > 0) reader_eval(r, 0, 1, ids, targets, err, sizeof(err));
            reader_close(r);
        }
    }
    manifest_free(&m);
    return 0;
}
