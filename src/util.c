#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

void format_duration(double s, char *out, size_t n) {
    if (s < 0 || s != s) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(out, n, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else if (t >= 60)
        snprintf(out, n, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(out, n, "%.1fs", s);
}

// OpenBLAS picks its kernels once, when it loads, from the CPU models it knows. 0.3.21 (Debian
// 12) does not know CPUs released after it (Sapphire Rapids, for one) and falls back to its SSE3
// "Prescott" kernels, whose sgemm is several times slower than the AVX-512 ones on the same core
// (measured on such a VM: the E008 linear-attention step 88.8 -> 46.8 ms). OPENBLAS_CORETYPE
// overrides the choice but is read only at load, so when OpenBLAS fell back on a CPU that has
// AVX2 or AVX-512 we name the newest kernel set the CPU can run and re-exec once, before anything
// else starts (MPI included). A user's own OPENBLAS_CORETYPE is left alone; the weak reference
// keeps a build against another BLAS working (it then does nothing).
__attribute__((weak)) char *openblas_get_corename(void);

const char *blas_kernels(void) {
    return openblas_get_corename ? openblas_get_corename() : "not OpenBLAS";
}

void blas_pick_kernels(char **argv) {
    if (!openblas_get_corename || getenv("OPENBLAS_CORETYPE")) return;
    const char *now = openblas_get_corename();
    if (!now || strcasecmp(now, "prescott")) return;
    const char *want = NULL;
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        want = __builtin_cpu_supports("avx512bf16") ? "Cooperlake" : "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        want = "Haswell";
#endif
    if (!want) return;
    // The binary's own path, not /proc/self/exe: the process name (comm) comes from the path
    // exec'd, and tools find madtrain's ranks by it.
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0 || n >= (ssize_t)sizeof(self) - 1) return;
    self[n] = '\0';
    setenv("OPENBLAS_CORETYPE", want, 1);
    execv(self, argv);  // if that fails we carry on with the slow kernels
    unsetenv("OPENBLAS_CORETYPE");
}

int run_status_is(const char *run_dir, const char *status) {
    char path[1200], got[64] = "";
    snprintf(path, sizeof(path), "%s/status", run_dir);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int ok = fgets(got, sizeof(got), f) && !strncmp(got, status, strlen(status));
    fclose(f);
    return ok;
}
