// The CPU backend: host memory, the kernels of kernels/cpu, and the CPU op table.
#include "../backend.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../real.h"

// Bytes held through this table (each block's size in a 64-byte header before it, so the
// alignment malloc gives is kept), for the benchmark's peak-memory column.
enum { ALLOC_HEADER = 64 };
static size_t bytes_in_use = 0, bytes_peak = 0;

static void *cpu_alloc(size_t bytes) {
    char *p = calloc(bytes + ALLOC_HEADER, 1);
    if (!p) return NULL;
    memcpy(p, &bytes, sizeof(bytes));
    bytes_in_use += bytes;
    if (bytes_in_use > bytes_peak) bytes_peak = bytes_in_use;
    return p + ALLOC_HEADER;
}
static void cpu_release(void *p) {
    if (!p) return;
    char *base = (char *)p - ALLOC_HEADER;
    size_t bytes;
    memcpy(&bytes, base, sizeof(bytes));
    bytes_in_use -= bytes;
    free(base);
}
static void cpu_copy(void *dst, const void *src, size_t bytes) {
    if (bytes) memmove(dst, src, bytes);
}
static void cpu_synchronize(void) {}

static void zero(real *x, size_t n) {
    memset(x, 0, sizeof(real) * n);
}

static void add(real *out, const real *a, const real *b, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

static void scale(real *x, real s, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

static void positions_forward(real *x, const real *wpe, int N, int T, int C) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int i = 0; i < C; i++) x[(size_t)n * C + i] += wpe[(size_t)(n % T) * C + i];
}

// Parallel over positions t (each owns its row of dwpe), so no two threads add to one row.
static void positions_backward(real *dwpe, const real *dx, int N, int T, int C) {
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++)
        for (int n = t; n < N; n += T)
            for (int i = 0; i < C; i++) dwpe[(size_t)t * C + i] += dx[(size_t)n * C + i];
}

static void loss_seed(real *dlosses, const int *targets, real s, int N) {
    for (int n = 0; n < N; n++) dlosses[n] = targets[n] >= 0 ? s : 0;
}

static void argmax(int *pred, const real *logits, const int *targets, int N, int V) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        if (targets[n] < 0) {
            pred[n] = -1;
            continue;
        }
        const real *z = logits + (size_t)n * V;
        int best = 0;
        for (int v = 1; v < V; v++) best = z[v] > z[best] ? v : best;
        pred[n] = best;
    }
}

// A serial double sum: the same on every rank, whatever the thread count.
static double norm_sq(const real *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

static void adamw(real *params, const real *grads, real *m, real *v, size_t n, float step_size,
                  float b1, float b2, float eps, float decay, float inv_c2) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float g = (float)grads[i];
        m[i] = b1 * m[i] + (1 - b1) * g;
        v[i] = b2 * v[i] + (1 - b2) * g * g;
        params[i] -= step_size * m[i] / (sqrtf((float)v[i] * inv_c2) + eps) + decay * params[i];
    }
}

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// Single-precision GEMM through the same BLAS the kernels use, 1024^3, best of 5 after a warm-up.
static double gemm_peak(void) {
    enum { G = 1024 };
    float *a = malloc(sizeof(float) * G * G), *b = malloc(sizeof(float) * G * G);
    float *c = malloc(sizeof(float) * G * G);
    for (size_t i = 0; i < (size_t)G * G; i++) a[i] = b[i] = (float)(i % 7) * 0.1f;
    double best = 0;
    for (int rep = 0; rep < 6; rep++) {
        double t0 = seconds();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, G, G, G, 1, a, G, b, G, 0, c, G);
        double rate = 2.0 * G * G * G / (seconds() - t0);
        if (rep && rate > best) best = rate;
    }
    free(a), free(b), free(c);
    return best;
}

// The CPU's kernels return when their work is done, so a mark is the wall clock at the call.
static double mark_at[BACKEND_MARKS];
static void mark(int i) {
    mark_at[i] = seconds();
}
static double mark_ms(int a, int b) {
    return 1e3 * (mark_at[b] - mark_at[a]);
}

static size_t memory_peak(int reset) {
    size_t peak = bytes_peak;
    if (reset) bytes_peak = bytes_in_use;
    return peak;
}

static size_t memory_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    unsigned long long kb = 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
    fclose(f);
    return (size_t)kb * 1024;
}

static const F(OpDef) * op_row(int index) {
    return F(OPS)[index];
}

const F(Backend) F(BACKEND_CPU) = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .release = cpu_release,
    .upload = cpu_copy,
    .download = cpu_copy,
    .copy = cpu_copy,
    .synchronize = cpu_synchronize,
    .zero = zero,
    .add = add,
    .scale = scale,
    .positions_forward = positions_forward,
    .positions_backward = positions_backward,
    .loss_seed = loss_seed,
    .argmax = argmax,
    .norm_sq = norm_sq,
    .adamw = adamw,
    .matmul_forward = F(matmul_forward),
    .matmul_backward = F(matmul_backward),
    .rmsnorm_forward = F(rmsnorm_forward),
    .rmsnorm_backward = F(rmsnorm_backward),
    .layernorm_forward = F(layernorm_forward),
    .layernorm_backward = F(layernorm_backward),
    .bias_forward = F(bias_forward),
    .bias_backward = F(bias_backward),
    .embedding_forward = F(embedding_forward),
    .embedding_backward = F(embedding_backward),
    .gelu_forward = F(gelu_forward),
    .gelu_backward = F(gelu_backward),
    .gelu_erf_forward = F(gelu_erf_forward),
    .gelu_erf_backward = F(gelu_erf_backward),
    .swiglu_forward = F(swiglu_forward),
    .swiglu_backward = F(swiglu_backward),
    .gate_forward = F(gate_forward),
    .gate_backward = F(gate_backward),
    .rope_forward = F(rope_forward),
    .rope_backward = F(rope_backward),
    .conv_causal_forward = F(conv_causal_forward),
    .conv_causal_backward = F(conv_causal_backward),
    .crossentropy_forward = F(crossentropy_forward),
    .crossentropy_backward = F(crossentropy_backward),
    .dropout_forward = F(dropout_forward),
    .dropout_backward = F(dropout_backward),
    .mean_pool_forward = F(mean_pool_forward),
    .mean_pool_backward = F(mean_pool_backward),
    .crossentropy_smooth_forward = F(crossentropy_smooth_forward),
    .crossentropy_smooth_backward = F(crossentropy_smooth_backward),
    .gemm_peak = gemm_peak,
    .mark = mark,
    .mark_ms = mark_ms,
    .memory_peak = memory_peak,
    .memory_available = memory_available,
    .op_row = op_row,
};
