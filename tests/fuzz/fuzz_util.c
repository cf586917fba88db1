#include "fuzz_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../data/h5util.h"

static char dir[512];
static char paths[8][640];

static void remove_dir(void) {
    for (int i = 0; i < 8; i++)
        if (paths[i][0]) remove(paths[i]);  // files, and slot 5 of fuzz_manifest: a folder
    rmdir(dir);
}

const char *fuzz_dir(void) {
    if (!dir[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof(dir), "%s/madtrain-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(dir)) {
            perror("fuzz: mkdtemp");
            abort();
        }
        atexit(remove_dir);
    }
    return dir;
}

const char *fuzz_path(int slot, const char *name) {
    snprintf(paths[slot], sizeof(paths[slot]), "%s/%s", fuzz_dir(), name);
    return paths[slot];
}

void fuzz_write(const char *path, const uint8_t *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f)) {
        perror(path);
        abort();
    }
}

void fuzz_quiet_hdf5(void) {
    static int done;
    if (!done) h5_setup(0), done = 1;
}

static uint64_t le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

// Walks each "GCOL" collection the way libhdf5 1.10.8 parses it (8-byte lengths, objects
// aligned to 8 bytes; index 0 is the free space, whose size is taken as is).
int fuzz_hdf5_known_hang(const uint8_t *data, size_t size) {
    for (size_t at = 0; at + 16 <= size; at++) {
        if (memcmp(data + at, "GCOL", 4)) continue;
        uint64_t len = le(data + at + 8, 8);
        size_t end = len < size - at ? at + (size_t)len : size;
        for (size_t p = at + 16; p + 16 <= end;) {
            uint64_t idx = le(data + p, 2), obj = le(data + p + 8, 8);
            uint64_t need = idx ? 16 + ((obj + 7) & ~(uint64_t)7) : obj;
            if (need == 0) return 1;
            if (need > end - p) break;
            p += (size_t)need;
        }
    }
    return 0;
}
