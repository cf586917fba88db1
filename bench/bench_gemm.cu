// bench_gemm: the matrix products of one GPT-2-small training step (forward, input gradient and
// weight gradient of every dense layer and the LM head, at N = batch x T tokens), each timed
// four ways on random data on one GPU:
//   fp32      madtrain's matmul with precision: fp32 (cublasSgemm, pedantic: no TF32)
//   wrapper   madtrain's matmul with precision: bf16 (mt_gemm: fp32 buffers in and out, bf16
//             tensor-core products with fp32 accumulation, CUBLAS_COMPUTE_32F_FAST_16BF)
//   bf16      true bf16 inputs and output (cublasGemmEx, fp32 accumulation): what bf16 activation
//             storage would give, half the bytes of the wrapper's
//   lt        cuBLASLt, bf16 in and out, with the layer's bias (and GELU for the MLP's first
//             layer) fused into the product's epilogue; forward products only
// Each product is timed with CUDA events, the median of --reps after 3 warm-ups, its inputs
// rotated among 3 copies so the 60 MB L2 does not serve repeats. The error of each bf16 form
// is ||x - ref|| / ||ref|| against the fp32 product on the same inputs. The last table adds the
// products up the way one training step calls them (12 layers) per form. The peak is an
// 8192^3 bf16 product, as `madtrain bench` measures it. Needs a GPU; prints one line and exits
// 77 without one (as the GPU tests do).
//
//     bench_gemm [--tokens 8192] [--d-model 768] [--layers 12] [--vocab 50257] [--reps 20]
//                [--out FILE.jsonl]
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <initializer_list>
#include <vector>

#include "../kernels/cuda/cuda_common.cuh"

#define LT_CHECK(call) CUBLAS_CHECK(call)

enum { SETS = 3, WARMUP = 3 };

// Uniform in [-1, 1) from a hash of (seed, index): random data without cuRAND, the same on
// every run.
__global__ void fill_uniform(float *x, size_t n, uint64_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        uint64_t z = seed * 0x9E3779B97F4A7C15ull + i;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        x[i] = (float)((double)(z >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0);
    }
}
__global__ void to_bf16(__nv_bfloat16 *y, const float *x, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] = __float2bfloat16(x[i]);
}
__global__ void from_bf16(float *y, const __nv_bfloat16 *x, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] = __bfloat162float(x[i]);
}
__global__ void fill_nan(float *x, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        x[i] = __int_as_float(0x7fc00000);
}
// sums[0] += (x - ref)^2, sums[1] += ref^2; x is fp32 or bf16
template <typename T>
__global__ void err_sums(double *sums, const T *x, const float *ref, size_t n) {
    double d = 0, r = 0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        double a = (double)(float)x[i], b = ref[i];
        d += (a - b) * (a - b), r += b * b;
    }
    atomicAdd(&sums[0], d);
    atomicAdd(&sums[1], r);
}
__global__ void gelu_tanh_inplace(float *x, size_t n) {  // the reference for the lt epilogue
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float v = x[i];
        x[i] = 0.5f * v * (1.0f + tanhf(0.7978845608f * (v + 0.044715f * v * v * v)));
    }
}
__global__ void add_bias_cols(float *c, const float *bias, int m, size_t n) {  // col-major m x n
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (size_t)m * n;
         i += (size_t)gridDim.x * blockDim.x)
        c[i] += bias[i % m];
}

static const int GRID = 1024, BLOCK = 256;

// One product in cuBLAS's column-major terms, as madtrain's matmul calls it (kernels/cuda/
// matmul.cu): out[N,OC] = inp[N,C] w[OC,C]^T is op(A) = w^T (OC x C), B = inp (C x N).
struct Product {
    char name[48];
    cublasOperation_t ta, tb;
    int m, n, k, lda, ldb, ldc;
    int per_step;    // calls in one training step
    int epilogue;    // forward products: 0 none, 1 bias, 2 bias + GELU (lt only)
    int accumulate;  // the gradient products add into their output (beta 1), as madtrain's do
    size_t a_elems() const { return (size_t)lda * (ta == CUBLAS_OP_N ? k : m); }
    size_t b_elems() const { return (size_t)ldb * (tb == CUBLAS_OP_N ? n : k); }
    size_t c_elems() const { return (size_t)ldc * n; }
    double flops() const { return 2.0 * m * n * k; }
};

static void add_layer(std::vector<Product> &ps, const char *name, int N, int C, int OC, int count,
                      int epilogue) {
    Product f = {}, di = {}, dw = {};
    snprintf(f.name, sizeof(f.name), "%s forward", name);
    f.ta = CUBLAS_OP_T, f.tb = CUBLAS_OP_N, f.m = OC, f.n = N, f.k = C;
    f.lda = C, f.ldb = C, f.ldc = OC, f.per_step = count, f.epilogue = epilogue;
    snprintf(di.name, sizeof(di.name), "%s d input", name);
    di.ta = CUBLAS_OP_N, di.tb = CUBLAS_OP_N, di.m = C, di.n = N, di.k = OC;
    di.lda = C, di.ldb = OC, di.ldc = C, di.per_step = count, di.accumulate = 1;
    snprintf(dw.name, sizeof(dw.name), "%s d weight", name);
    dw.ta = CUBLAS_OP_N, dw.tb = CUBLAS_OP_T, dw.m = C, dw.n = OC, dw.k = N;
    dw.lda = C, dw.ldb = OC, dw.ldc = C, dw.per_step = count, dw.accumulate = 1;
    ps.push_back(f), ps.push_back(di), ps.push_back(dw);
}

struct Timing {
    double ms = NAN, err = NAN;
};

static double median(std::vector<float> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? NAN : (v[(v.size() - 1) / 2] + v[v.size() / 2]) / 2;
}

template <typename T>
static double rel_err(const T *x, const float *ref, size_t n) {
    double *sums, host[2];
    CUDA_CHECK(cudaMalloc(&sums, 2 * sizeof(double)));
    CUDA_CHECK(cudaMemset(sums, 0, 2 * sizeof(double)));
    err_sums<T><<<GRID, BLOCK>>>(sums, x, ref, n);
    CUDA_LAUNCH_CHECK();
    CUDA_CHECK(cudaMemcpy(host, sums, sizeof(host), cudaMemcpyDeviceToHost));
    CUDA_CHECK(cudaFree(sums));
    return sqrt(host[0] / host[1]);  // NaN anywhere (an unwritten output) stays NaN
}

// Times run(set) over the rotating input sets: warm-ups, then the median of reps.
template <typename F>
static double time_ms(F run, int reps) {
    cudaEvent_t a, b;
    CUDA_CHECK(cudaEventCreate(&a));
    CUDA_CHECK(cudaEventCreate(&b));
    for (int i = 0; i < WARMUP; i++) run(i % SETS);
    std::vector<float> ms;
    for (int i = 0; i < reps; i++) {
        float t;
        CUDA_CHECK(cudaEventRecord(a, 0));
        run(i % SETS);
        CUDA_CHECK(cudaEventRecord(b, 0));
        CUDA_CHECK(cudaEventSynchronize(b));
        CUDA_CHECK(cudaEventElapsedTime(&t, a, b));
        ms.push_back(t);
    }
    CUDA_CHECK(cudaEventDestroy(a));
    CUDA_CHECK(cudaEventDestroy(b));
    return median(ms);
}

static float *dalloc(size_t n) {
    float *p;
    CUDA_CHECK(cudaMalloc(&p, sizeof(float) * (n ? n : 1)));
    return p;
}
static __nv_bfloat16 *dalloc_bf16(size_t n) {
    __nv_bfloat16 *p;
    CUDA_CHECK(cudaMalloc(&p, sizeof(__nv_bfloat16) * (n ? n : 1)));
    return p;
}

// cuBLASLt: D (bf16, m x n) = op(A) op(B) (+ bias per row of the column-major output, then
// GELU), fp32 accumulation, with the heuristic's first algorithm.
struct LtProduct {
    cublasLtMatmulDesc_t desc = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, lc = NULL;
    cublasLtMatmulAlgo_t algo;
    void *work = NULL;
    size_t work_bytes = 32u << 20;
    int ok = 0;
};

static void lt_setup(cublasLtHandle_t lt, const Product &p, const __nv_bfloat16 *bias,
                     LtProduct *o) {
    LT_CHECK(cublasLtMatmulDescCreate(&o->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    LT_CHECK(
        cublasLtMatmulDescSetAttribute(o->desc, CUBLASLT_MATMUL_DESC_TRANSA, &p.ta, sizeof(p.ta)));
    LT_CHECK(
        cublasLtMatmulDescSetAttribute(o->desc, CUBLASLT_MATMUL_DESC_TRANSB, &p.tb, sizeof(p.tb)));
    cublasLtEpilogue_t epi = p.epilogue == 2   ? CUBLASLT_EPILOGUE_GELU_BIAS
                             : p.epilogue == 1 ? CUBLASLT_EPILOGUE_BIAS
                                               : CUBLASLT_EPILOGUE_DEFAULT;
    LT_CHECK(
        cublasLtMatmulDescSetAttribute(o->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
    if (p.epilogue) {
        cudaDataType_t bt = CUDA_R_16BF;  // the output's type (cublasLt.h: BIAS_DATA_TYPE)
        LT_CHECK(cublasLtMatmulDescSetAttribute(o->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt,
                                                sizeof(bt)));
        LT_CHECK(cublasLtMatmulDescSetAttribute(o->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                sizeof(bias)));
    }
    int ar = p.ta == CUBLAS_OP_N ? p.m : p.k, ac = p.ta == CUBLAS_OP_N ? p.k : p.m;
    int br = p.tb == CUBLAS_OP_N ? p.k : p.n, bc = p.tb == CUBLAS_OP_N ? p.n : p.k;
    LT_CHECK(cublasLtMatrixLayoutCreate(&o->la, CUDA_R_16BF, ar, ac, p.lda));
    LT_CHECK(cublasLtMatrixLayoutCreate(&o->lb, CUDA_R_16BF, br, bc, p.ldb));
    LT_CHECK(cublasLtMatrixLayoutCreate(&o->lc, CUDA_R_16BF, p.m, p.n, p.ldc));
    cublasLtMatmulPreference_t pref;
    LT_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                  &o->work_bytes, sizeof(o->work_bytes)));
    cublasLtMatmulHeuristicResult_t h;
    int found = 0;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt, o->desc, o->la, o->lb, o->lc, o->lc,
                                                       pref, 1, &h, &found);
    LT_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    if (st != CUBLAS_STATUS_SUCCESS || !found) return;  // reported as "-" in the table
    o->algo = h.algo;
    CUDA_CHECK(cudaMalloc(&o->work, o->work_bytes));
    o->ok = 1;
}

static void lt_free(LtProduct *o) {
    if (o->work) CUDA_CHECK(cudaFree(o->work));
    if (o->la) cublasLtMatrixLayoutDestroy(o->la);
    if (o->lb) cublasLtMatrixLayoutDestroy(o->lb);
    if (o->lc) cublasLtMatrixLayoutDestroy(o->lc);
    if (o->desc) cublasLtMatmulDescDestroy(o->desc);
}

static int arg_int(const char *s, const char *flag) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < 1 || v > (1L << 24)) {
        fprintf(stderr, "bench_gemm: error: %s takes an integer in [1, 16777216], not '%s'\n", flag,
                s);
        exit(2);
    }
    return (int)v;
}

int main(int argc, char **argv) {
    int N = 8192, C = 768, L = 12, V = 50257, reps = 20;
    const char *out_path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) {
            fprintf(stderr,
                    "bench_gemm: error: '%s' needs a value (see the top of "
                    "bench/bench_gemm.cu)\n",
                    a);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--tokens"))
            N = arg_int(v, a);
        else if (!strcmp(a, "--d-model"))
            C = arg_int(v, a);
        else if (!strcmp(a, "--layers"))
            L = arg_int(v, a);
        else if (!strcmp(a, "--vocab"))
            V = arg_int(v, a);
        else if (!strcmp(a, "--reps"))
            reps = arg_int(v, a);
        else if (!strcmp(a, "--out"))
            out_path = v;
        else {
            fprintf(stderr, "bench_gemm: error: unknown option '%s'\n", a);
            return 2;
        }
    }
    int gpus = 0;
    if (cudaGetDeviceCount(&gpus) != cudaSuccess || gpus < 1) {
        printf("bench_gemm: no CUDA device visible; skipped\n");
        return 77;
    }
    FILE *out = out_path ? fopen(out_path, "w") : NULL;
    if (out_path && !out) {
        fprintf(stderr, "bench_gemm: error: cannot write '%s'\n", out_path);
        return 1;
    }
    char dev[128];
    mt_cuda_device_name(0, dev, sizeof(dev));
    int Vp = (V + 127) / 128 * 128;
    std::vector<Product> ps;
    add_layer(ps, "attn qkv", N, C, 3 * C, L, 1);
    add_layer(ps, "attn out", N, C, C, L, 1);
    add_layer(ps, "mlp fc", N, C, 4 * C, L, 2);
    add_layer(ps, "mlp proj", N, 4 * C, C, L, 1);
    char head[48], head_pad[48];
    snprintf(head, sizeof(head), "lm head V=%d", V);
    snprintf(head_pad, sizeof(head_pad), "lm head V=%d", Vp);
    add_layer(ps, head, N, C, V, 1, 0);
    if (Vp != V) add_layer(ps, head_pad, N, C, Vp, 0, 0);  // per_step 0: shown, not summed

    cublasHandle_t bf16_handle;
    CUBLAS_CHECK(cublasCreate(&bf16_handle));
    cublasLtHandle_t lt;
    LT_CHECK(cublasLtCreate(&lt));

    // the peak, as madtrain bench measures it (kernels/cuda/backend.cu: gemm_peak)
    double peak;
    {
        int G = 8192;
        size_t n = (size_t)G * G;
        float *tmp = dalloc(n);
        __nv_bfloat16 *a = dalloc_bf16(n), *b = dalloc_bf16(n), *c = dalloc_bf16(n);
        fill_uniform<<<GRID, BLOCK>>>(tmp, n, 1);
        to_bf16<<<GRID, BLOCK>>>(a, tmp, n);
        fill_uniform<<<GRID, BLOCK>>>(tmp, n, 2);
        to_bf16<<<GRID, BLOCK>>>(b, tmp, n);
        CUDA_LAUNCH_CHECK();
        float one = 1, zero = 0;
        double ms = time_ms(
            [&](int) {
                CUBLAS_CHECK(cublasGemmEx(bf16_handle, CUBLAS_OP_N, CUBLAS_OP_N, G, G, G, &one, a,
                                          CUDA_R_16BF, G, b, CUDA_R_16BF, G, &zero, c, CUDA_R_16BF,
                                          G, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
            },
            10);
        peak = 2.0 * G * G * G / (ms * 1e-3);
        for (void *q : {(void *)tmp, (void *)a, (void *)b, (void *)c}) CUDA_CHECK(cudaFree(q));
    }
    printf(
        "bench_gemm | %s | N %d tokens, d %d, %d layers, vocab %d | bf16 peak %.1f TFLOP/s "
        "(8192^3, random) | median of %d after %d warm-ups\n\n",
        dev, N, C, L, V, peak / 1e12, reps, WARMUP);
    printf(
        "| product | m x n x k | fp32 ms | TFLOP/s | wrapper ms | TFLOP/s | err | bf16 ms | "
        "TFLOP/s | err | lt+epilogue ms | TFLOP/s | err |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    fflush(stdout);
    double step_ms[4] = {0, 0, 0, 0}, step_flops = 0;
    int lt_missing = 0;
    for (const Product &p : ps) {
        size_t na = p.a_elems(), nb = p.b_elems(), nc = p.c_elems();
        float *A[SETS], *B[SETS], *Cf = dalloc(nc), *ref = dalloc(nc), *bias = dalloc(p.m);
        __nv_bfloat16 *Ah[SETS], *Bh[SETS], *Ch = dalloc_bf16(nc);
        for (int s = 0; s < SETS; s++) {
            A[s] = dalloc(na), B[s] = dalloc(nb), Ah[s] = dalloc_bf16(na), Bh[s] = dalloc_bf16(nb);
            fill_uniform<<<GRID, BLOCK>>>(A[s], na, 10 + 2 * s);
            fill_uniform<<<GRID, BLOCK>>>(B[s], nb, 11 + 2 * s);
            to_bf16<<<GRID, BLOCK>>>(Ah[s], A[s], na);
            to_bf16<<<GRID, BLOCK>>>(Bh[s], B[s], nb);
        }
        // the bias in bf16 (the epilogue's type), and the reference's copy of the same values
        __nv_bfloat16 *bias_h = dalloc_bf16(p.m);
        fill_uniform<<<GRID, BLOCK>>>(bias, p.m, 99);
        to_bf16<<<GRID, BLOCK>>>(bias_h, bias, p.m);
        from_bf16<<<GRID, BLOCK>>>(bias, bias_h, p.m);
        CUDA_LAUNCH_CHECK();
        float one = 1, zero = 0;
        // beta 0 for the error checks; the timed gradient products add into their output with
        // beta 1 (one more read of it), as matmul_backward's do
        const float *beta = &zero;
        Timing t[4];
        // fp32 on set 0 is the reference of every form's error
        mt_cuda_set_precision(MT_FP32);
        auto fp32 = [&](int s) {
            CUBLAS_CHECK(mt_gemm(mt_cublas(), p.ta, p.tb, p.m, p.n, p.k, &one, A[s], p.lda, B[s],
                                 p.ldb, beta, Cf, p.ldc));
        };
        fp32(0);
        CUDA_CHECK(cudaMemcpy(ref, Cf, sizeof(float) * nc, cudaMemcpyDeviceToDevice));
        beta = p.accumulate ? &one : &zero;
        t[0].ms = time_ms(fp32, reps);
        beta = &zero;
        mt_cuda_set_precision(MT_BF16);
        auto wrapper = [&](int s) {
            CUBLAS_CHECK(mt_gemm(mt_cublas(), p.ta, p.tb, p.m, p.n, p.k, &one, A[s], p.lda, B[s],
                                 p.ldb, beta, Cf, p.ldc));
        };
        fill_nan<<<GRID, BLOCK>>>(Cf, nc);
        wrapper(0);
        t[1].err = rel_err(Cf, ref, nc);
        beta = p.accumulate ? &one : &zero;
        t[1].ms = time_ms(wrapper, reps);
        beta = &zero;
        mt_cuda_set_precision(MT_FP32);
        auto bf16 = [&](int s) {
            CUBLAS_CHECK(cublasGemmEx(bf16_handle, p.ta, p.tb, p.m, p.n, p.k, &one, Ah[s],
                                      CUDA_R_16BF, p.lda, Bh[s], CUDA_R_16BF, p.ldb, beta, Ch,
                                      CUDA_R_16BF, p.ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        };
        bf16(0);
        t[2].err = rel_err(Ch, ref, nc);
        beta = p.accumulate ? &one : &zero;
        t[2].ms = time_ms(bf16, reps);
        beta = &zero;
        if (p.ta == CUBLAS_OP_T && p.tb == CUBLAS_OP_N && p.ldc == p.m) {  // forward products
            LtProduct o;
            lt_setup(lt, p, bias_h, &o);
            if (o.ok) {
                auto ltrun = [&](int s) {
                    LT_CHECK(cublasLtMatmul(lt, o.desc, &one, Ah[s], o.la, Bh[s], o.lb, &zero, Ch,
                                            o.lc, Ch, o.lc, &o.algo, o.work, o.work_bytes, 0));
                };
                ltrun(0);
                // the reference with the epilogue applied: ref + bias, then GELU
                if (p.epilogue) add_bias_cols<<<GRID, BLOCK>>>(ref, bias, p.m, p.n);
                if (p.epilogue == 2) gelu_tanh_inplace<<<GRID, BLOCK>>>(ref, nc);
                CUDA_LAUNCH_CHECK();
                t[3].err = rel_err(Ch, ref, nc);
                t[3].ms = time_ms(ltrun, reps);
            } else {
                lt_missing++;
            }
            lt_free(&o);
        }
        CUDA_CHECK(cudaDeviceSynchronize());
        for (int s = 0; s < SETS; s++)
            for (void *q : {(void *)A[s], (void *)B[s], (void *)Ah[s], (void *)Bh[s]})
                CUDA_CHECK(cudaFree(q));
        for (void *q : {(void *)Cf, (void *)ref, (void *)bias, (void *)Ch, (void *)bias_h})
            CUDA_CHECK(cudaFree(q));

        char cells[4][96];
        for (int v = 0; v < 4; v++) {
            if (isnan(t[v].ms))
                snprintf(cells[v], sizeof(cells[v]), v ? "- | - | -" : "- | -");
            else if (v == 0)
                snprintf(cells[v], sizeof(cells[v]), "%.3f | %.1f", t[v].ms,
                         p.flops() / (t[v].ms * 1e-3) / 1e12);
            else
                snprintf(cells[v], sizeof(cells[v]), "%.3f | %.1f | %.1e", t[v].ms,
                         p.flops() / (t[v].ms * 1e-3) / 1e12, t[v].err);
        }
        printf("| %s | %d x %d x %d | %s | %s | %s | %s |\n", p.name, p.m, p.n, p.k, cells[0],
               cells[1], cells[2], cells[3]);
        fflush(stdout);
        const char *forms[4] = {"fp32", "wrapper_bf16", "bf16", "lt_bf16_epilogue"};
        for (int v = 0; v < 4 && out; v++)
            if (!isnan(t[v].ms))
                fprintf(out,
                        "{\"bench\":\"gemm\",\"device\":\"%s\",\"product\":\"%s\",\"form\":\"%s\","
                        "\"m\":%d,\"n\":%d,\"k\":%d,\"ms\":%.6g,\"tflops\":%.6g,\"rel_err\":%.6g,"
                        "\"per_step\":%d,\"peak_tflops\":%.6g}\n",
                        dev, p.name, forms[v], p.m, p.n, p.k, t[v].ms,
                        p.flops() / (t[v].ms * 1e-3) / 1e12, v ? t[v].err : 0.0, p.per_step,
                        peak / 1e12);
        if (out) fflush(out);  // a run stopped at its time limit keeps the rows it has
        step_flops += p.per_step * p.flops();
        for (int v = 0; v < 3; v++) step_ms[v] += p.per_step * t[v].ms;
        // lt has forward products only: its step sum takes the bf16 time of the others
        step_ms[3] += p.per_step * (isnan(t[3].ms) ? t[2].ms : t[3].ms);
    }
    printf(
        "\nOne training step's products (%d layers, forward + both gradients, the LM head at "
        "V=%d), summed:\n\n| form | ms | TFLOP/s | of the bf16 peak |\n|---|---|---|---|\n",
        L, V);
    const char *names[4] = {"fp32", "wrapper (fp32 buffers, bf16 products)", "bf16 in and out",
                            "bf16, forward through cuBLASLt epilogues"};
    for (int v = 0; v < 4; v++)
        printf("| %s | %.2f | %.1f | %.1f%% |\n", names[v], step_ms[v],
               step_flops / (step_ms[v] * 1e-3) / 1e12,
               100 * step_flops / (step_ms[v] * 1e-3) / peak);
    if (lt_missing) printf("\n%d forward products had no cuBLASLt algorithm (\"-\")\n", lt_missing);
    if (out) fclose(out);
    cublasDestroy(bf16_handle);
    cublasLtDestroy(lt);
    return 0;
}
