// The checked helpers of data/util.h (xmalloc, write_file_atomic, ...) and the trainer's own.
#pragma once
#include <stddef.h>

#include "../data/util.h"

// 1 when the run directory's status file (finished, preempted, failed) says `status`.
int run_status_is(const char *run_dir, const char *status);

void format_duration(double seconds, char *out, size_t n);

// The kernel set OpenBLAS runs ("Cooperlake", "Haswell", ...), for logs and benchmarks.
const char *blas_kernels(void);
// Re-executes the program once with OPENBLAS_CORETYPE set when OpenBLAS did not recognise the
// CPU and fell back to its SSE3 kernels (see util.c); call first thing in main.
void blas_pick_kernels(char **argv);
