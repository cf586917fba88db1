#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fprintf(stderr, "madtrain: error: out of memory allocating %zu bytes\n", n);
        exit(MT_EXIT_FAIL);
    }
    return q;
}

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "madtrain: error: out of memory allocating %zu bytes\n", n);
        exit(MT_EXIT_FAIL);
    }
    return p;
}

void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) {
        fprintf(stderr, "madtrain: error: out of memory allocating %zu bytes\n", n * size);
        exit(MT_EXIT_FAIL);
    }
    return p;
}

int mkdir_p(const char *path) {
    char buf[1024];
    if (strlen(path) >= sizeof(buf)) return errno = ENAMETOOLONG, -1;
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0755) && errno != EEXIST) return -1;
            *p = '/';
        }
    if (mkdir(buf, 0755) && errno != EEXIST) return -1;
    return 0;
}

int write_file_atomic(const char *path, int (*writer)(FILE *f, void *ctx), void *ctx) {
    char tmp[1100];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return -1;
    int rc = writer(f, ctx);
    if (fflush(f) || fsync(fileno(f))) rc = -1;
    int saved = errno;
    if (fclose(f)) rc = -1, saved = errno;
    if (rc || rename(tmp, path)) {
        if (!rc) saved = errno;
        unlink(tmp);
        errno = saved;
        return -1;
    }
    return 0;
}

int file_crc32(const char *path, unsigned *crc) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    unsigned char buf[1 << 16];
    uLong c = crc32_z(0, Z_NULL, 0);
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) c = crc32_z(c, buf, n);
    int bad = ferror(f);
    fclose(f);
    *crc = (unsigned)c;
    return bad ? -1 : 0;
}
