// Cyclic reduction against the Blelloch prefix scan for the dense linear recurrence
//
//     h_t = A_t h_{t-1} + b_t,   h_0 = 0,   t = 1..T,   A_t dense n x n, b_t an n-vector (float64)
//
// Why: the users' experiment E026 (design notes, shared/docs/mixers.md section 23) reports that
// cyclic reduction beat a prefix scan over the affine pairs (A_t, b_t) by 3.88x at T = 1024 on
// CPU, with 6x fewer GEMMs and error 8.5e-16, and proposes it wherever transitions compose into
// dense matrices (across chunks of the circulant-diagonal SSM, DeltaNet-style chunk composites).
// This program checks that claim on this machine before anything is built on it: for each
// (T, n) it reports the wall time of three methods, how many n x n by n x n matrix products
// (GEMMs) each does, and the error of the two parallel methods against the sequential loop.
//
//   sequential  the oracle: h_t = A_t h_{t-1} + b_t, T matrix-vector products in order, on one
//               thread (it is the serial baseline).
//   scan        work-efficient inclusive prefix scan, up-sweep then down-sweep (the Blelloch /
//               Brent-Kung tree, which needs no padding for T not a power of two), over the pairs
//               (A_t, b_t) with (A_j, b_j) o (A_i, b_i) = (A_j A_i, A_j b_i + b_j), j later. Each
//               combine is one GEMM and one GEMV; 2T - 2 - log2 T of them for T a power of 2. The b
//               part of prefix t is h_t because h_0 = 0. The scan is the generic one: it yields
//               every prefix map (A part too), as a scan over a monoid must. With h_0 = 0 the A
//               parts made in the down-sweep are never needed for h; dropping them turns the scan
//               into cr below.
//   cr          cyclic reduction. Eliminating the odd steps of a level of m equations,
//               A'_i = A_{2i} A_{2i-1}, b'_i = A_{2i} b_{2i-1} + b_{2i}, leaves floor(m/2)
//               equations in the even states (recurse); then back-substitute the odd states,
//               h_{2i+1} = A_{2i+1} h_{2i} + b_{2i+1}. An odd m leaves its last equation to the
//               back-substitution. The first equation of every level has no predecessor state
//               (h_0 = 0), so its A' is never formed: T - 1 - log2 T GEMMs for T a power of 2
//               (fewer than T always) in ceil(log2 T) levels, each one OpenMP loop of
//               independent products.
//
// The products are OpenBLAS CBLAS calls made from inside OpenMP loops. The OpenMP build of
// OpenBLAS runs single-threaded inside a parallel region, so the parallelism is across the
// independent products of one level, which is what a batched GEMM on a device would expose.
//
// The header line names the OpenBLAS kernel set. OpenBLAS 0.3.21 does not recognise some newer
// CPUs (Sapphire Rapids in a VM here) and falls back to its "Prescott" SSE3 kernels, about 3-4x
// slower GEMMs at n 64; like madtrain, the program then re-executes itself with the kernels the
// CPU supports (src/util.c, blas_pick_kernels).
//
// Output: a markdown table, one row per (T, n), times the best of --repeat runs after one
// warm-up. Error: max over t of ||h_t - h_t^seq||_inf / max(1, ||h_t^seq||_inf).
// --check runs small and odd sizes for the test suite and exits 1 if an error exceeds 1e-12.
//
// usage: bench_cyclic [--T 256,512,1024,2048,4096] [--n 16,32,64,128] [--repeat 3]
//                     [--threads N] [--check]
// build: the bench_cyclic target (CMakeLists.txt); run as build/bench_cyclic.
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

// madtrain's (src/util.c): re-exec with the OpenBLAS kernels the CPU supports
void blas_pick_kernels(char **argv);

#define CHECK_TOLERANCE 1e-12

static void die_usage(const char *msg, const char *detail) {
    fprintf(stderr, "bench_cyclic: error: %s%s\n", msg, detail);
    exit(2);
}

static void die_runtime(const char *msg) {
    fprintf(stderr, "bench_cyclic: error: %s\n", msg);
    exit(1);
}

static void *xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) die_runtime("out of memory");
    return p;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// ---- random problem ------------------------------------------------------------------------

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// Standard normal by Box-Muller; u1 is in (0, 1] so the log is finite.
static double gaussian(uint64_t *state) {
    double u1 = (double)((splitmix64(state) >> 11) + 1) * 0x1.0p-53;
    double u2 = (double)(splitmix64(state) >> 11) * 0x1.0p-53;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

// A_t: i.i.d. Gaussian entries / (1.1 sqrt(n)). Such a matrix shrinks a typical vector by about
// 1/1.1 (its spectral radius is near 1/1.1), so products of many A_t decay and the recurrence
// stays bounded: long chains neither overflow nor hide errors behind huge |h|. No orthogonal
// factor is needed, which keeps generation cheap at T 4096, n 128 (67M entries).
// b_t: standard Gaussian. The seed depends only on (T, n), so every run sees the same problem.
static void make_problem(long T, int n, double *A /* [T, n, n] row-major */,
                         double *b /* [T, n] */) {
    uint64_t state = 0x0e026c1c11cull ^ ((uint64_t)T << 20) ^ (uint64_t)n;
    double scale = 1.0 / (1.1 * sqrt((double)n));
    size_t nn = (size_t)n * n;
    for (size_t i = 0; i < (size_t)T * nn; i++) A[i] = scale * gaussian(&state);
    for (size_t i = 0; i < (size_t)T * n; i++) b[i] = gaussian(&state);
}

// ---- the three methods -----------------------------------------------------------------------
// Index t = 0..T-1 here is step t+1 of the header's recurrence; h_{-1} = 0, so h[0] = b[0] and
// A[0] only ever multiplies zero. Each method writes all T states into H ([T, n]) and returns
// the number of n x n by n x n GEMMs it did.

typedef struct {
    long T;
    int n;
    const double *A;  // [T, n, n] row-major: A[t*n*n + r*n + c], (A_t h)_r = sum_c A_t[r, c] h_c
    const double *b;  // [T, n]
    double *work;     // [T, n, n] scratch: scan's prefix maps, or cr's reduced A' of all levels
    double *tmp;      // [threads, n, n] scratch: one GEMM result per thread (scan)
} Problem;

static long method_sequential(const Problem *p, double *H) {
    long T = p->T;
    int n = p->n;
    size_t nn = (size_t)n * n;
    // One thread: this is the serial baseline, and OpenBLAS (OpenMP build) would otherwise fork
    // a team for every GEMV of more than 9216 entries (n >= 97), 2n^2 flops each.
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    memcpy(H, p->b, sizeof(double) * (size_t)T * n);
    for (long t = 1; t < T; t++)
        cblas_dgemv(CblasRowMajor, CblasNoTrans, n, n, 1.0, p->A + t * nn, n, H + (t - 1) * n, 1,
                    1.0, H + t * n, 1);
    omp_set_num_threads(saved);
    return 0;
}

// x[later] <- x[later] o x[earlier] on the pairs (P = prefix maps [T, n, n], H = b parts [T, n]).
// The GEMV reads the old P[later], so it goes first; the GEMM cannot write over its own input,
// so it lands in this thread's tmp and is copied back (n^2 moves against 2n^3 flops).
static void scan_combine(const Problem *p, double *P, double *H, long later, long earlier) {
    int n = p->n;
    size_t nn = (size_t)n * n;
    double *Pl = P + later * nn, *tmp = p->tmp + (size_t)omp_get_thread_num() * nn;
    cblas_dgemv(CblasRowMajor, CblasNoTrans, n, n, 1.0, Pl, n, H + earlier * n, 1, 1.0,
                H + later * n, 1);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, Pl, n, P + earlier * nn, n,
                0.0, tmp, n);
    memcpy(Pl, tmp, sizeof(double) * nn);
}

static long method_scan(const Problem *p, double *H) {
    long T = p->T, gemms = 0;
    size_t nn = (size_t)p->n * p->n;
    double *P = p->work;  // [T, n, n]: on return P[t] = A_t ... A_0, the A part of prefix t
    // The scan is in place, so it starts from a copy of the inputs; the copy is timed with it
    // (any scan that returns all T prefix maps has to write T matrices).
#pragma omp parallel for schedule(static)
    for (long t = 0; t < T; t++) memcpy(P + t * nn, p->A + t * nn, sizeof(double) * nn);
    memcpy(H, p->b, sizeof(double) * (size_t)T * p->n);
    // Up-sweep: at stride s, x[i] for i = 2s-1 mod 2s absorbs x[i-s]; afterwards x[i] holds the
    // composite of a block ending at i of length lowbit(i+1). A level writes i = -1 mod 2s and
    // reads i = s-1 mod 2s, so its combines are independent.
    long top = 1;
    for (long s = 1; s < T; s *= 2) {
        long first = 2 * s - 1, count = first < T ? (T - 1 - first) / (2 * s) + 1 : 0;
#pragma omp parallel for schedule(static)
        for (long k = 0; k < count; k++)
            scan_combine(p, P, H, first + 2 * s * k, first + 2 * s * k - s);
        gemms += count;
        top = s;
    }
    // Down-sweep: at stride s, x[i] for i = 3s-1 mod 2s (i >= 3s-1) absorbs the now complete
    // prefix x[i-s]; at s = 1 every index holds its inclusive prefix. Writes i = s-1 mod 2s,
    // reads i = -1 mod 2s: independent again.
    for (long s = top / 2; s >= 1; s /= 2) {
        long first = 3 * s - 1, count = first < T ? (T - 1 - first) / (2 * s) + 1 : 0;
#pragma omp parallel for schedule(static)
        for (long k = 0; k < count; k++)
            scan_combine(p, P, H, first + 2 * s * k, first + 2 * s * k - s);
        gemms += count;
    }
    return gemms;
}

// Level l of cyclic reduction has m_l equations h^l_k = A^l_k h^l_{k-1} + b^l_k (h^l_{-1} = 0),
// whose unknown h^l_k is the original state h[(k+1) 2^l - 1]. So H holds b^l_k at that position
// until the back-substitution turns it into h in place, and no per-level vectors are needed:
// b^{l+1}_i = A^l_{2i+1} b^l_{2i} + b^l_{2i+1} is accumulated at the position of b^l_{2i+1}.
static inline long cr_position(long k, int level) {
    return ((k + 1) << level) - 1;
}

static long method_cr(const Problem *p, double *H) {
    long T = p->T, gemms = 0;
    int n = p->n;
    size_t nn = (size_t)n * n;
    memcpy(H, p->b, sizeof(double) * (size_t)T * n);
    // A^0 is the input. A^l for l >= 1 ([m_l, n, n], entry 0 unused since it would multiply
    // h^l_{-1} = 0) lies in work at level_A[l]; the levels sum to under T matrices.
    enum { MAX_LEVELS = 64 };
    const double *level_A[MAX_LEVELS];
    long level_m[MAX_LEVELS];
    level_A[0] = p->A;
    level_m[0] = T;
    int levels = 1;
    double *next_free = p->work;
    // Reduction: pair (2i, 2i+1) of level l becomes equation i of level l+1.
    while (level_m[levels - 1] > 1) {
        int l = levels - 1;
        long half = level_m[l] / 2;
        const double *Al = level_A[l];
        double *Anext = next_free;
#pragma omp parallel for schedule(static)
        for (long i = 0; i < half; i++) {
            const double *A_odd = Al + (2 * i + 1) * nn;
            cblas_dgemv(CblasRowMajor, CblasNoTrans, n, n, 1.0, A_odd, n,
                        H + cr_position(2 * i, l) * n, 1, 1.0, H + cr_position(2 * i + 1, l) * n,
                        1);
            if (i > 0)
                cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, A_odd, n,
                            Al + 2 * i * nn, n, 0.0, Anext + i * nn, n);
        }
        gemms += half - 1;
        level_A[levels] = Anext;
        level_m[levels] = half;
        levels++;
        next_free += half * nn;
    }
    // Back-substitution, coarsest level first: the odd-k unknowns of level l are the unknowns of
    // level l+1, already solved; each even k > 0 then needs one GEMV (k = 0 is h = b already).
    for (int l = levels - 2; l >= 0; l--) {
        const double *Al = level_A[l];
        long evens = (level_m[l] + 1) / 2;
#pragma omp parallel for schedule(static)
        for (long i = 1; i < evens; i++)
            cblas_dgemv(CblasRowMajor, CblasNoTrans, n, n, 1.0, Al + 2 * i * nn, n,
                        H + cr_position(2 * i - 1, l) * n, 1, 1.0, H + cr_position(2 * i, l) * n,
                        1);
    }
    return gemms;
}

// Plain loops, no BLAS: --check holds the sequential oracle to this, so a wrong layout or
// transpose flag shared by all three BLAS-based methods cannot pass unnoticed.
static void reference_loop(const Problem *p, double *H) {
    int n = p->n;
    size_t nn = (size_t)n * n;
    for (long t = 0; t < p->T; t++)
        for (int r = 0; r < n; r++) {
            double sum = p->b[t * n + r];
            if (t > 0)
                for (int c = 0; c < n; c++)
                    sum += p->A[t * nn + (size_t)r * n + c] * H[(t - 1) * n + c];
            H[t * n + r] = sum;
        }
}

// max over t of ||H_t - ref_t||_inf / max(1, ||ref_t||_inf); NaN anywhere gives NaN.
static double max_error(long T, int n, const double *H, const double *ref) {
    double worst = 0;
    for (long t = 0; t < T; t++) {
        double diff = 0, norm = 1;
        for (int i = 0; i < n; i++) {
            double d = fabs(H[t * n + i] - ref[t * n + i]), r = fabs(ref[t * n + i]);
            if (!(d <= diff)) diff = d;
            if (!(r <= norm)) norm = r;
        }
        double e = diff / norm;
        if (!(e <= worst)) worst = e;
    }
    return worst;
}

typedef long (*Method)(const Problem *, double *);

// Best wall time in ms of `repeat` runs after one warm-up; *gemms from the last run.
static double time_method(Method method, const Problem *p, double *H, int repeat, long *gemms) {
    *gemms = method(p, H);
    double best = INFINITY;
    for (int r = 0; r < repeat; r++) {
        double t0 = now_seconds();
        *gemms = method(p, H);
        double ms = 1e3 * (now_seconds() - t0);
        if (ms < best) best = ms;
    }
    return best;
}

// ---- buffers for one (T, n) ------------------------------------------------------------------

typedef struct {
    Problem p;
    double *A, *b, *H_seq, *H_scan, *H_cr;
} Case;

static size_t mul_or_die(size_t a, size_t b) {
    if (b && a > SIZE_MAX / b) die_runtime("problem size overflows size_t");
    return a * b;
}

// Byte sizes of one case's buffers. A and the scan/cr work buffer are T n^2 each and dominate
// (512 MiB each at T 4096, n 128). A case that cannot fit is refused here, before any timing,
// rather than left to overcommit to turn into an OOM kill mid-run.
static void case_sizes(long T, int n, int threads, size_t *mats, size_t *vecs, size_t *scratch) {
    size_t nn = mul_or_die((size_t)n, (size_t)n);
    *mats = mul_or_die(mul_or_die((size_t)T, nn), sizeof(double));
    *vecs = mul_or_die(mul_or_die((size_t)T, (size_t)n), sizeof(double));
    *scratch = mul_or_die(mul_or_die((size_t)threads, nn), sizeof(double));
    double need = 2.0 * (double)*mats + 4.0 * (double)*vecs + (double)*scratch;
    double have = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGE_SIZE);
    if (have > 0 && need > 0.8 * have) {
        char msg[160];
        snprintf(msg, sizeof(msg), "T %ld, n %d needs %.1f GiB, more than this machine can give", T,
                 n, need / (1 << 30));
        die_runtime(msg);
    }
}

static void case_alloc(Case *c, long T, int n, int threads) {
    size_t mats, vecs, scratch;
    case_sizes(T, n, threads, &mats, &vecs, &scratch);
    c->A = xmalloc(mats);
    c->b = xmalloc(vecs);
    c->H_seq = xmalloc(vecs);
    c->H_scan = xmalloc(vecs);
    c->H_cr = xmalloc(vecs);
    c->p = (Problem){
        .T = T, .n = n, .A = c->A, .b = c->b, .work = xmalloc(mats), .tmp = xmalloc(scratch)};
    make_problem(T, n, c->A, c->b);
}

static void case_free(Case *c) {
    free(c->A), free(c->b), free(c->H_seq), free(c->H_scan), free(c->H_cr);
    free(c->p.work), free(c->p.tmp);
}

// ---- command line ----------------------------------------------------------------------------

// Digits only (no sign, space or suffix), 1 <= value <= max.
static long parse_count(const char *flag, const char *text, long max) {
    char detail[256];
    snprintf(detail, sizeof(detail), "%s: '%s' is not an integer in 1..%ld", flag, text, max);
    if (text[0] < '0' || text[0] > '9') die_usage(detail, "");
    errno = 0;
    char *end;
    long v = strtol(text, &end, 10);
    if (errno || *end || v < 1 || v > max) die_usage(detail, "");
    return v;
}

// Comma-separated counts, e.g. "256,512"; empty items are errors.
static long *parse_list(const char *flag, const char *text, long max, int *count) {
    int items = 1;
    for (const char *s = text; *s; s++) items += *s == ',';
    long *values = xmalloc(sizeof(long) * (size_t)items);
    char *copy = xmalloc(strlen(text) + 1);
    strcpy(copy, text);
    char *item = copy;
    for (int i = 0; i < items; i++) {
        char *comma = strchr(item, ',');
        if (comma) *comma = '\0';
        values[i] = parse_count(flag, item, max);
        item = comma + 1;
    }
    free(copy);
    *count = items;
    return values;
}

static void cpu_model(char *out, size_t size) {
    snprintf(out, size, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof(line), f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) || !colon) continue;
        colon += 1 + (colon[1] == ' ');
        colon[strcspn(colon, "\n")] = '\0';
        snprintf(out, size, "%s", colon);
        break;
    }
    fclose(f);
}

// --check: tiny, odd and non-power-of-two T (odd counts at several cr levels, incomplete scan
// trees), n = 1 included. Returns the number of failing cases.
static int run_check(int threads) {
    static const long Ts[] = {1, 2, 3, 7, 64, 129};
    static const int ns[] = {1, 3, 8};
    int failures = 0, cases = 0;
    for (size_t i = 0; i < sizeof(Ts) / sizeof(Ts[0]); i++)
        for (size_t j = 0; j < sizeof(ns) / sizeof(ns[0]); j++) {
            Case c;
            case_alloc(&c, Ts[i], ns[j], threads);
            double *H_loop = xmalloc(sizeof(double) * (size_t)Ts[i] * ns[j]);
            reference_loop(&c.p, H_loop);
            method_sequential(&c.p, c.H_seq);
            long gemms_scan = method_scan(&c.p, c.H_scan);
            long gemms_cr = method_cr(&c.p, c.H_cr);
            double e_seq = max_error(Ts[i], ns[j], c.H_seq, H_loop);
            double e_scan = max_error(Ts[i], ns[j], c.H_scan, c.H_seq);
            double e_cr = max_error(Ts[i], ns[j], c.H_cr, c.H_seq);
            int ok =
                e_seq <= CHECK_TOLERANCE && e_scan <= CHECK_TOLERANCE && e_cr <= CHECK_TOLERANCE;
            printf(
                "T %4ld  n %d  error sequential-vs-loops %.1e  scan %.1e  cr %.1e  "
                "GEMMs scan %ld cr %ld  %s\n",
                Ts[i], ns[j], e_seq, e_scan, e_cr, gemms_scan, gemms_cr, ok ? "ok" : "FAIL");
            failures += !ok;
            cases++;
            free(H_loop);
            case_free(&c);
        }
    printf("check: %d of %d cases failed (tolerance %.0e)\n", failures, cases, CHECK_TOLERANCE);
    return failures;
}

int main(int argc, char **argv) {
    blas_pick_kernels(argv);
    long default_T[] = {256, 512, 1024, 2048, 4096}, default_n[] = {16, 32, 64, 128};
    long *Ts = NULL, *ns = NULL;
    int count_T = 5, count_n = 4, repeat = 3, threads = omp_get_num_procs(), check = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int is_value_flag = !strcmp(a, "--T") || !strcmp(a, "--n") || !strcmp(a, "--repeat") ||
                            !strcmp(a, "--threads");
        if (!strcmp(a, "--check")) {
            check = 1;
            continue;
        }
        if (!is_value_flag) die_usage("unknown argument ", a);
        if (i + 1 >= argc) die_usage("missing value after ", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--T")) {
            free(Ts);
            Ts = parse_list(a, v, 1L << 30, &count_T);
        } else if (!strcmp(a, "--n")) {
            free(ns);
            ns = parse_list(a, v, 1L << 16, &count_n);
        } else if (!strcmp(a, "--repeat")) {
            repeat = (int)parse_count(a, v, 1000000);
        } else {
            threads = (int)parse_count(a, v, 4096);
        }
    }
    omp_set_num_threads(threads);

    if (check) {
        free(Ts), free(ns);
        return run_check(threads) ? 1 : 0;
    }

    // Refuse a case too big for this machine before anything is printed or timed.
    const long *T_list = Ts ? Ts : default_T, *n_list = ns ? ns : default_n;
    for (int i = 0; i < count_T; i++)
        for (int j = 0; j < count_n; j++) {
            size_t mats, vecs, scratch;
            case_sizes(T_list[i], (int)n_list[j], threads, &mats, &vecs, &scratch);
        }
    char cpu[256];
    cpu_model(cpu, sizeof(cpu));
    printf("machine: %s, %d threads, OpenBLAS core %s\n", cpu, threads, openblas_get_corename());
    printf("command:");
    for (int i = 0; i < argc; i++) printf(" %s", argv[i]);
    printf("\n\n");
    printf(
        "| T | n | sequential ms | scan ms | cr ms | cr vs scan | GEMMs scan | GEMMs cr | "
        "error scan | error cr |\n");
    printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    fflush(stdout);
    for (int i = 0; i < count_T; i++)
        for (int j = 0; j < count_n; j++) {
            Case c;
            case_alloc(&c, T_list[i], (int)n_list[j], threads);
            long g_seq, g_scan, g_cr;
            double ms_seq = time_method(method_sequential, &c.p, c.H_seq, repeat, &g_seq);
            double ms_scan = time_method(method_scan, &c.p, c.H_scan, repeat, &g_scan);
            double ms_cr = time_method(method_cr, &c.p, c.H_cr, repeat, &g_cr);
            printf("| %ld | %ld | %.3f | %.3f | %.3f | %.2fx | %ld | %ld | %.1e | %.1e |\n",
                   T_list[i], n_list[j], ms_seq, ms_scan, ms_cr, ms_scan / ms_cr, g_scan, g_cr,
                   max_error(T_list[i], (int)n_list[j], c.H_scan, c.H_seq),
                   max_error(T_list[i], (int)n_list[j], c.H_cr, c.H_seq));
            fflush(stdout);
            case_free(&c);
        }
    free(Ts), free(ns);
    return 0;
}
