// Shard open and verify (data/shards.c). Input: the bytes of one .h5 shard. It is opened with
// verify (attributes, datasets, checksum, every id and target in range, doc_offsets), and
// without; an open shard's first and last rows are read through shard_read_tokens/_targets.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../data/shards.h"
#include "fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_quiet_hdf5();
    return 0;
}

static void read_rows(Shard *s, const ShardInfo *info) {
    enum { MAX_ROWS = 4, MAX_ROW_LEN = 4096 };
    if (info->rows <= 0 || info->row_len <= 0 || info->row_len > MAX_ROW_LEN) return;
    int64_t n = info->rows < MAX_ROWS ? info->rows : MAX_ROWS;
    int *out = malloc(sizeof(int) * (size_t)(n * info->row_len));
    char err[1024];
    int64_t firsts[2] = {0, info->rows - n};
    for (int i = 0; i < 2; i++) {
        shard_read_tokens(s, firsts[i], n, out, err, sizeof(err));
        if (info->kind == SHARD_SEQ) shard_read_targets(s, firsts[i], n, out, err, sizeof(err));
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (fuzz_hdf5_known_hang(data, size)) return 0;
    const char *path = fuzz_path(0, "shard.h5");
    fuzz_write(path, data, size);
    char err[1024];
    for (int verify = 1; verify >= 0; verify--) {
        ShardInfo info;
        Shard *s = shard_open(path, verify, &info, err, sizeof(err));
        if (!s) break;  // refused with verify: refused without too, or not worth reopening
        read_rows(s, &info);
        shard_close(s);
    }
    return 0;
}
