// The shared cuFFT plan cache of cufft_plans.cuh.
#include "cufft_plans.cuh"

enum { MT_CUFFT_PLANS = 128 };

cufftHandle mt_cufft_plan(int n, int batch, cufftType type) {
    static struct {
        int n, batch;
        cufftType type;
        cufftHandle h;
        unsigned long long used;
    } cache[MT_CUFFT_PLANS];
    static int count = 0;
    static unsigned long long clock = 0;
    for (int i = 0; i < count; i++)
        if (cache[i].n == n && cache[i].batch == batch && cache[i].type == type) {
            cache[i].used = ++clock;
            return cache[i].h;
        }
    int at = count;
    if (count < MT_CUFFT_PLANS) {
        count++;
    } else {
        at = 0;
        for (int i = 1; i < MT_CUFFT_PLANS; i++)
            if (cache[i].used < cache[at].used) at = i;
        CUDA_CHECK(cudaDeviceSynchronize());
        CUFFT_CHECK(cufftDestroy(cache[at].h));
    }
    cufftHandle h;
    CUFFT_CHECK(cufftPlan1d(&h, n, type, batch));
    CUFFT_CHECK(cufftSetStream(h, 0));
    cache[at].n = n, cache[at].batch = batch, cache[at].type = type, cache[at].h = h;
    cache[at].used = ++clock;
    return h;
}
