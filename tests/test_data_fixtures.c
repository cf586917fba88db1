// Writes the bad-input fixtures of test_data_errors.sh, one shard folder per case under
// WORK_DIR (each has a good `valid` split unless the case is about splits):
//   good, missing-shard, no-dataset, float-tokens, int64-tokens, future-version, bad-token,
//   unwritten (chunks never stored),
//   truncated, corrupted, missing-attr, not-hdf5, future-manifest, manifest-count, no-valid,
//   corrupted-second (two train shards, the second corrupted), seq-T32, bad-target.
//
// usage: test_data_fixtures WORK_DIR
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "../data/shards.h"
#include "../data/util.h"
#include "../kernels/rng.h"

enum { N_TOKENS = 1000, VOCAB = 64 };
static const char *work;

static void die(const char *what, const char *err) {
    fprintf(stderr, "test_data_fixtures: %s: %s\n", what, err);
    exit(2);
}

static void tokens_of(int seed, int *tok) {
    for (int i = 0; i < N_TOKENS; i++) tok[i] = (int)(rng_u64((uint64_t)seed, (uint64_t)i) % VOCAB);
}

static void folder(const char *name, char *dir, size_t n) {
    snprintf(dir, n, "%s/%s", work, name);
    mkdir_p(dir);
}

static void good_shard(const char *dir, const char *split, int index, int kind) {
    char path[1200], err[1400];
    snprintf(path, sizeof(path), "%s/%s-%05d.h5", dir, split, index);
    ShardInfo in = {.kind = kind, .vocab_size = VOCAB, .token_bytes = 2};
    in.rows = kind == SHARD_LM ? N_TOKENS : N_TOKENS / 32;
    in.row_len = kind == SHARD_LM ? 1 : 32;
    snprintf(in.tokenizer, sizeof(in.tokenizer), "none");
    snprintf(in.task, sizeof(in.task), kind == SHARD_LM ? "lm" : "mqar");
    snprintf(in.split, sizeof(in.split), "%s", split);
    int tok[N_TOKENS], *targets = NULL;
    tokens_of(index, tok);
    if (kind == SHARD_SEQ) {
        targets = xmalloc(sizeof(tok));
        for (int i = 0; i < N_TOKENS; i++) targets[i] = i % 3 ? -1 : tok[(i + 1) % N_TOKENS];
    }
    ShardWriter *w = shard_create(path, &in, 0, err, sizeof(err));
    if (!w || shard_append(w, tok, targets, in.rows, err, sizeof(err)) ||
        shard_finish(w, NULL, 0, err, sizeof(err)))
        die(path, err);
    free(targets);
}

static void manifest(const char *dir, const char *text) {
    char path[1200];
    snprintf(path, sizeof(path), "%s/manifest.tsv", dir);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static const char *GOOD_MANIFEST =
    "madtrain-shards\t1\ntrain\ttrain-00000.h5\t1000\nvalid\tvalid-00000.h5\t1000\n";
// Sequence shards hold 31 rows of 32 tokens.
static const char *SEQ_MANIFEST =
    "madtrain-shards\t1\ntrain\ttrain-00000.h5\t992\nvalid\tvalid-00000.h5\t992\n";

// A language-modelling shard written with raw HDF5 calls, so each field can be wrong.
typedef struct {
    hid_t type;           // file type of the token dataset
    const char *dataset;  // its name
    int64_t version;
    int with_vocab;
    int bad_token_at;  // -1: none; else that token becomes VOCAB + 6
    int written;       // 0: all tokens; else chunks of 100 and only the first `written` stored
} Raw;

static void raw_shard(const char *dir, const Raw *r) {
    char path[1200];
    snprintf(path, sizeof(path), "%s/train-00000.h5", dir);
    int tok[N_TOKENS];
    tokens_of(0, tok);
    if (r->bad_token_at >= 0) tok[r->bad_token_at] = VOCAB + 6;
    uint16_t le[N_TOKENS];
    for (int i = 0; i < N_TOKENS; i++) le[i] = (uint16_t)tok[i];
    uint32_t crc = (uint32_t)crc32(0, (const Bytef *)le, sizeof(le));
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t n = N_TOKENS;
    hid_t sp = H5Screate_simple(1, &n, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hsize_t chunk = 100, first = 0, count = (hsize_t)r->written;
    if (r->written) H5Pset_chunk(dcpl, 1, &chunk);
    hid_t d = H5Dcreate2(f, r->dataset, r->type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    hid_t ms = H5Screate_simple(1, r->written ? &count : &n, NULL);
    if (r->written) H5Sselect_hyperslab(sp, H5S_SELECT_SET, &first, NULL, &count, NULL);
    H5Dwrite(d, H5T_NATIVE_INT, ms, sp, H5P_DEFAULT, tok);
    H5Dclose(d), H5Sclose(ms), H5Sclose(sp), H5Pclose(dcpl);
    hid_t scalar = H5Screate(H5S_SCALAR), str = H5Tcopy(H5T_C_S1);
    H5Tset_size(str, 8);
    int64_t vocab = VOCAB, checksum = crc;
    const char *names[3] = {"format_version", "vocab_size", "checksum_crc32"};
    const int64_t *values[3] = {&r->version, &vocab, &checksum};
    for (int i = 0; i < 3; i++) {
        if (i == 1 && !r->with_vocab) continue;
        hid_t a = H5Acreate2(f, names[i], H5T_STD_I64LE, scalar, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, H5T_NATIVE_INT64, values[i]);
        H5Aclose(a);
    }
    const char *strs[3][2] = {{"tokenizer", "none"}, {"task", "lm"}, {"split", "train"}};
    for (int i = 0; i < 3; i++) {
        char buf[8] = {0};
        snprintf(buf, sizeof(buf), "%s", strs[i][1]);
        hid_t a = H5Acreate2(f, strs[i][0], str, scalar, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, str, buf);
        H5Aclose(a);
    }
    H5Tclose(str), H5Sclose(scalar), H5Fclose(f);
}

static void flip_token_byte(const char *path) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "tokens", H5P_DEFAULT);
    haddr_t addr = H5Dget_offset(d);
    H5Dclose(d), H5Fclose(f);
    int fd = open(path, O_RDWR);
    unsigned char b;
    if (fd < 0 || pread(fd, &b, 1, (off_t)addr + 100) != 1) die(path, "cannot open to corrupt");
    b ^= 0x01;  // token 50 changes by one: still < vocab, so only the checksum can tell
    if (pwrite(fd, &b, 1, (off_t)addr + 100) != 1) die(path, "cannot corrupt");
    close(fd);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_data_fixtures WORK_DIR\n");
        return 2;
    }
    work = argv[1];
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    char dir[1100], path[1200];

    folder("good", dir, sizeof(dir));
    good_shard(dir, "train", 0, SHARD_LM), good_shard(dir, "valid", 0, SHARD_LM);
    manifest(dir, GOOD_MANIFEST);

    folder("missing-shard", dir, sizeof(dir));
    good_shard(dir, "valid", 0, SHARD_LM);
    manifest(dir, GOOD_MANIFEST);

    const struct {
        const char *name;
        Raw raw;
    } raws[] = {
        {"no-dataset", {H5T_STD_U16LE, "tokenz", 1, 1, -1, 0}},
        {"float-tokens", {H5T_IEEE_F64LE, "tokens", 1, 1, -1, 0}},
        {"int64-tokens", {H5T_STD_I64LE, "tokens", 1, 1, -1, 0}},
        {"future-version", {H5T_STD_U16LE, "tokens", 2, 1, -1, 0}},
        {"missing-attr", {H5T_STD_U16LE, "tokens", 1, 0, -1, 0}},
        {"bad-token", {H5T_STD_U16LE, "tokens", 1, 1, 5, 0}},
        {"unwritten", {H5T_STD_U16LE, "tokens", 1, 1, -1, 300}},  // a writer that stopped
    };
    for (size_t i = 0; i < sizeof(raws) / sizeof(raws[0]); i++) {
        folder(raws[i].name, dir, sizeof(dir));
        raw_shard(dir, &raws[i].raw);
        good_shard(dir, "valid", 0, SHARD_LM);
        manifest(dir, GOOD_MANIFEST);
    }

    folder("truncated", dir, sizeof(dir));
    good_shard(dir, "train", 0, SHARD_LM), good_shard(dir, "valid", 0, SHARD_LM);
    manifest(dir, GOOD_MANIFEST);
    snprintf(path, sizeof(path), "%s/train-00000.h5", dir);
    if (truncate(path, 1500)) die(path, "cannot truncate");

    folder("corrupted", dir, sizeof(dir));
    good_shard(dir, "train", 0, SHARD_LM), good_shard(dir, "valid", 0, SHARD_LM);
    manifest(dir, GOOD_MANIFEST);
    snprintf(path, sizeof(path), "%s/train-00000.h5", dir);
    flip_token_byte(path);

    folder("corrupted-second", dir, sizeof(dir));
    good_shard(dir, "train", 0, SHARD_LM), good_shard(dir, "train", 1, SHARD_LM);
    good_shard(dir, "valid", 0, SHARD_LM);
    manifest(dir,
             "madtrain-shards\t1\ntrain\ttrain-00000.h5\t1000\ntrain\ttrain-00001.h5\t1000\n"
             "valid\tvalid-00000.h5\t1000\n");
    snprintf(path, sizeof(path), "%s/train-00001.h5", dir);
    flip_token_byte(path);

    folder("not-hdf5", dir, sizeof(dir));
    good_shard(dir, "valid", 0, SHARD_LM);
    manifest(dir, GOOD_MANIFEST);
    snprintf(path, sizeof(path), "%s/train-00000.h5", dir);
    FILE *f = fopen(path, "w");
    fputs("these are not the tokens you are looking for\n", f);
    fclose(f);

    folder("future-manifest", dir, sizeof(dir));
    good_shard(dir, "train", 0, SHARD_LM), good_shard(dir, "valid", 0, SHARD_LM);
    manifest(dir, "madtrain-shards\t2\ntrain\ttrain-00000.h5\t1000\n");

    folder("manifest-count", dir, sizeof(dir));
    good_shard(dir, "train", 0, SHARD_LM), good_shard(dir, "valid", 0, SHARD_LM);
    manifest(dir, "madtrain-shards\t1\ntrain\ttrain-00000.h5\t999\nvalid\tvalid-00000.h5\t1000\n");

    folder("no-valid", dir, sizeof(dir));
    good_shard(dir, "train", 0, SHARD_LM);
    manifest(dir, "madtrain-shards\t1\ntrain\ttrain-00000.h5\t1000\n");

    folder("seq-T32", dir, sizeof(dir));
    good_shard(dir, "train", 0, SHARD_SEQ), good_shard(dir, "valid", 0, SHARD_SEQ);
    manifest(dir, SEQ_MANIFEST);

    // A target outside the vocabulary, with a checksum that matches it (h5py-style writer bug).
    folder("bad-target", dir, sizeof(dir));
    good_shard(dir, "train", 0, SHARD_SEQ), good_shard(dir, "valid", 0, SHARD_SEQ);
    manifest(dir, SEQ_MANIFEST);
    snprintf(path, sizeof(path), "%s/train-00000.h5", dir);
    hid_t h = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t d = H5Dopen2(h, "targets", H5P_DEFAULT);
    hsize_t start[2] = {3, 7}, count[2] = {1, 1};
    hid_t fs = H5Dget_space(d), ms = H5Screate_simple(2, count, NULL);
    int target = VOCAB + 35;
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
    H5Dwrite(d, H5T_NATIVE_INT, ms, fs, H5P_DEFAULT, &target);
    H5Sclose(ms), H5Sclose(fs), H5Dclose(d), H5Fclose(h);
    // Recompute the checksum over inputs then targets, as the format defines it.
    h = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    uint16_t inputs[N_TOKENS];
    int32_t targets[N_TOKENS];
    d = H5Dopen2(h, "inputs", H5P_DEFAULT);
    H5Dread(d, H5T_STD_U16LE, H5S_ALL, H5S_ALL, H5P_DEFAULT, inputs);
    H5Dclose(d);
    d = H5Dopen2(h, "targets", H5P_DEFAULT);
    H5Dread(d, H5T_STD_I32LE, H5S_ALL, H5S_ALL, H5P_DEFAULT, targets);
    H5Dclose(d);
    int64_t rows = N_TOKENS / 32;
    uLong crc = crc32(0, (const Bytef *)inputs, (uInt)(rows * 32 * 2));
    crc = crc32(crc, (const Bytef *)targets, (uInt)(rows * 32 * 4));
    uint32_t crc32_value = (uint32_t)crc;
    hid_t a = H5Aopen(h, "checksum_crc32", H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_UINT32, &crc32_value);
    H5Aclose(a), H5Fclose(h);
    printf("fixtures written under %s\n", work);
    return 0;
}
