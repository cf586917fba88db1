// The debug.* fault injections: a failing rank, non-finite gradients, diverged replicas, a stop
// request at a given step and a file-size limit, so tests can drive every recovery path
// (tests/test_checkpoint.sh, docs/checkpoints.md "Faults") without real hardware faults.
#include <math.h>
#include <string.h>
#include <sys/resource.h>

#include "train_internal.h"
#include "util.h"

void fault_file_size_limit(const Config *cfg) {
    // Called after MPI start-up, whose shared files need room.
    if (cfg->debug_file_size_limit <= 0) return;
    struct rlimit lim = {(rlim_t)cfg->debug_file_size_limit, (rlim_t)cfg->debug_file_size_limit};
    setrlimit(RLIMIT_FSIZE, &lim);
}

void fault_fail_at_step(const Config *cfg, Comm *comm, int64_t step) {
    if (cfg->debug_fail_at_step == step + 1 && cfg->debug_fail_rank == comm->rank)
        comm_fatal(comm, MT_EXIT_FAIL, "injected failure at step %lld (debug.fail_at_step)",
                   (long long)step + 1);
}

int fault_stop_at_step(const Config *cfg, int64_t step) {
    return cfg->debug_stop_at_step > 0 && cfg->debug_stop_at_step == step;
}

void fault_nan_gradient(const Config *cfg, Comm *comm, Run *r, int64_t step) {
    if (cfg->debug_inf_param[0]) {
        // An overflowing layer, not a poisoned gradient: the named tensor's first element goes to
        // +Inf on every rank from debug.nan_at_step on, so every later forward is non-finite
        // from that layer's mixer onwards (the step-skip message must name it).
        if (cfg->debug_nan_at_step > 0 && step + 1 == cfg->debug_nan_at_step) {
            const ParamInfo *p = NULL;
            for (int i = 0; i < r->model.n_tensors && !p; i++)
                if (!strcmp(r->model.info[i].name, cfg->debug_inf_param)) p = &r->model.info[i];
            if (!p)
                comm_fatal(comm, MT_EXIT_USAGE, "debug.inf_param: no parameter '%s'",
                           cfg->debug_inf_param);
            float inf = INFINITY;
            r->k->upload(r->model.params + p->offset, &inf, sizeof(inf));
        }
        return;
    }
    if (cfg->debug_nan_at_step > 0 && step + 1 >= cfg->debug_nan_at_step &&
        step + 1 < cfg->debug_nan_at_step + cfg->debug_nan_count && comm->rank == 0) {
        float nan = NAN;  // backward adds into it: the reduced gradient is NaN everywhere
        r->k->upload(r->model.grads, &nan, sizeof(nan));
    }
}

void fault_diverge(const Config *cfg, Comm *comm, Run *r, int64_t step) {
    if (cfg->debug_diverge_at_step == step + 1 && comm->rank == comm->world - 1) {
        float p0;
        r->k->download(&p0, r->model.params, sizeof(p0));
        p0 += 1e-3f;
        r->k->upload(r->model.params, &p0, sizeof(p0));
    }
}
