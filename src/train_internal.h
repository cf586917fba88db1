// The trainer's parts and what they share. train.c sets a run up and runs its steps; each part
// knows one thing:
//   train_device.c  the device and the gradient all-reduce (cpu | cuda, mpi | nccl)
//   train_eval.c    evaluation on the held-out splits and the mixers' aux figures
//   train_log.c     the console log and metrics.jsonl
//   run_state.c     parameters and moments between device and host: checkpoints, resume,
//                   warm start, rollback, final state and status
//   debug_faults.c  the debug.* fault injections the tests use
#pragma once
#include <stdint.h>
#include <stdio.h>

#include "../comm/grad_reduce.h"
#include "../data/loader.h"
#include "checkpoint.h"
#include "model.h"
#include "optim.h"
#include "train.h"

// ---- evaluation results and batch buffers ------------------------------------------------
enum { MAX_EVAL_LEVELS = 8 };
typedef struct {
    double loss, acc;
    // Over the scored positions: the fraction right (micro) and the mean over classes of each
    // target class's fraction right (macro, as MAD reports it: torchmetrics' MulticlassAccuracy,
    // where a class never a target but predicted counts as 0 and one neither is left out).
    double acc_micro, acc_macro;
    int64_t scored, examples;
    int n_levels;  // hcopy: accuracy per hierarchy level 1..n_levels (0: the task has none)
    int images;    // image data: acc is top-1, acc_top5 the label among the 5 highest logits
    double acc_top5;
    double level_acc[MAX_EVAL_LEVELS];
} EvalResult;

// Batch buffers of one step: ids, targets, hierarchy levels (or length buckets) and, packed
// (data.pack), each token's position in its example, of grad_accum micro-batches.
typedef struct {
    int *ids, *targets, *levels, *pos;
    float *pixels;  // image data: [images, H, W, channels] (targets: their labels)
} Batch;

// ---- context.c: context parallelism in the trainer ------------------------------------------
// The group of this rank for parallel.context = size over sequences of T tokens.
ContextGroup context_group(Comm *comm, int size, int T);
// Rows [n, T] -> this rank's columns [n, T / size], in place (nothing when size is 1).
void context_slice_rows(int *buf, int64_t n, int T, const ContextGroup *g);
// Adds each row's (correct, scored) over this rank's slice, after a forward over those rows,
// to rows[2 (first + i)], [2 (first + i) + 1]: summed over the group, whole examples.
void context_row_counts(const Model_f32 *m, const int *targets, int n_rows, int64_t first,
                        double *rows);
// The sum of per-example accuracies and the examples with a scored position.
void context_example_acc(const double *rows, int64_t n, double *acc_sum, double *examples);

// ---- train_log.c --------------------------------------------------------------------------
typedef struct {
    FILE *metrics;  // rank 0 only
    double t_start;
} Logger;

// One line of metrics.jsonl (rank 0; a no-op elsewhere), flushed at once.
void jsonl(Logger *lg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// s with JSON string escapes, in out (n bytes); returns out.
const char *json_escape(const char *s, char *out, size_t n);
// metrics.jsonl in the run directory, continued (append) by a resumed run or an evaluation.
void log_open(Logger *lg, const Config *cfg, Comm *comm, int append);
void log_close(Logger *lg);
// What runs: ranks and threads, device, model and task (rank 0).
void log_header(const Config *cfg, const Comm *comm, int threads, const char *device,
                const ModelConfig *mc, size_t n_params, const char *task, int T, int mb,
                int64_t steps);

// Training figures summed since the last log line: loss, scored positions, example accuracy,
// examples, and (images) top-5 hits.
typedef struct {
    double sums[5];
    int images;
    double t_last;
    int64_t tokens_last;
} Interval;
void log_step(Logger *lg, Interval *iv, int64_t step, int64_t steps, int64_t first_step, double lr,
              double grad_norm, const TrainState *st);
void log_eval(Logger *lg, int64_t step, const char *name, int is_lm, const EvalResult *e);
void log_summary(Logger *lg, const Comm *comm, const TrainState *st, int64_t first_step,
                 double wall, int64_t tokens_per_step, double test_acc, double test_loss,
                 size_t n_params, const char *status);

// ---- train_eval.c -------------------------------------------------------------------------
// The evaluations of one step: the validation split when there is one, and the test split
// when there is no validation split or `final` (the end of training, or `madtrain eval`).
// The test split's result goes to *test when it was evaluated.
void run_evals(Model_f32 *m, Loader *data, const Config *cfg, Comm *comm, Logger *lg, int64_t step,
               int final, EvalResult *test, Batch *b);
// The mixers' own figures (feature-map time, non-finite values, state energies, ...) on one
// held-out batch after training, one "aux" metrics line per layer (rank 0).
void report_aux(Logger *lg, Model_f32 *m, Loader *data, Batch *b);

// ---- train_device.c -----------------------------------------------------------------------
typedef struct {
    const Backend_f32 *k;
    ReduceMode reduce;
    void *nccl;  // the NCCL communicator (REDUCE_NCCL)
    char describe[256];
} Device;

// The device and the reduction of every rank, agreed on by all of them: 0, or the exit code
// after one line on stderr (the same on every rank, so all stop together).
int device_open(const Config *cfg, Comm *comm, Device *d);
void device_close(Device *d);
// ZeRO-1 over NCCL: every rank's slice [at[q], at[q + 1]) of the device buffer to every rank.
void device_nccl_allgather(const Device *d, float *all, const size_t *at);

// ---- run_state.c --------------------------------------------------------------------------
typedef struct {
    const Config *cfg;
    Comm *comm;
    const Backend_f32 *k;  // the device: model, gradients and optimizer state live there
    Model_f32 model;
    float *adam_m, *adam_v;  // on the device: this rank's slice of the moments (optim.zero)
    Shards shards;           // the ranks' slices (all of it on every rank without ZeRO)
    // Host views of params and moments (checkpoints, final state, replica hashes): the device
    // buffers themselves on the CPU backend, copies synchronised on demand on a GPU. With ZeRO
    // the moments are whole on rank 0 only (gathered there for checkpoints); NULL elsewhere.
    float *host_params, *host_m, *host_v;
    TrainState st;
} Run;

// Builds and initialises the model and the optimizer state: 0, or the exit code.
int run_build(Run *r, const ModelConfig *mc);
void run_free(Run *r);
void params_to_host(Run *r);
// Copies the state down to the host views. Collective with ZeRO (the moments are gathered to
// rank 0): then every rank calls it.
void state_to_host(Run *r);
void state_to_device(Run *r);
// checkpoint.resume (*resumed = 1 when a checkpoint was loaded), then checkpoint.init_from
// when nothing was resumed: 0, or the exit code.
int run_restore(Run *r, int *resumed);
// The run directory (rank 0): created, a killed writer's temporary files removed, the
// resolved config written (unless only evaluating).
void run_dir_prepare(const Run *r, int eval_only);
// Rank 0 writes; a failed write is reported and training goes on. 0, or -1.
// Writes a checkpoint (rank 0) and returns its result on every rank; `then`: what the run
// does after a failed write, for the error line.
int save_checkpoint(Run *r, Logger *lg, const char *then);
// rank 0's rc and message on every rank (msg may be NULL).
int agree_on_rank0(Comm *comm, int rc, char *msg, size_t n);
// Back to the newest checkpoint's weights and moments, keeping the step, data position and
// counters (after too many non-finite steps).
void rollback(Run *r);
// final_state.bin (after a clean finish only) and status (rank 0).
void write_final_state(Run *r, int preempted, int exit_code);
uint64_t replica_hash(Run *r);

// ---- debug_faults.c -----------------------------------------------------------------------
// Each does nothing unless its debug.* key asks for it; step is the 0-based step about to run
// (or, for the ones after the update, step + 1 just finished).
void fault_file_size_limit(const Config *cfg);
void fault_fail_at_step(const Config *cfg, Comm *comm, int64_t step);
int fault_stop_at_step(const Config *cfg, int64_t step);
void fault_nan_gradient(const Config *cfg, Comm *comm, Run *r, int64_t step);
void fault_diverge(const Config *cfg, Comm *comm, Run *r, int64_t step);
