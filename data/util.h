// Small checked helpers so call sites stay one line (llm.c's fopenCheck/mallocCheck style).
// They live in data/, the lowest layer that needs them, so data/ includes nothing from src/;
// src/util.h adds the trainer's own on top.
#pragma once
#include <stddef.h>
#include <stdio.h>

#define MT_EXIT_USAGE 2  // bad config or command line
#define MT_EXIT_FAIL 1   // runtime failure

double now_seconds(void);
void *xmalloc(size_t n);
void *xrealloc(void *p, size_t n);
void *xcalloc(size_t n, size_t size);
int mkdir_p(const char *path);  // 0, or -1 with errno
// Writes a file through a temporary name + fsync + rename, so a crash never leaves a half
// file under the real name. writer returns 0 on success. Returns 0, or -1 with errno.
int write_file_atomic(const char *path, int (*writer)(FILE *f, void *ctx), void *ctx);
// CRC-32 (zlib's) of a whole file: 0, or -1 with errno.
int file_crc32(const char *path, unsigned *crc);
