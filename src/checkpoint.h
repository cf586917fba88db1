// Checkpoints: one HDF5 file per checkpoint (readable by h5py without madtrain), written by
// rank 0 through a temporary name + fsync + rename, with a `latest` pointer updated the same
// way. Layout (docs/checkpoints.md): /params/<name> (fp32, the parameter table's names and
// shapes), /optimizer/adam_m and /optimizer/adam_v (flat, the parameter table's order), root
// attributes for the training state, the resolved config and versions; every dataset carries
// an FNV-1a 64 checksum attribute that is verified on read.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "model.h"

#define CHECKPOINT_FORMAT_VERSION 1

typedef struct {
    int64_t step;           // optimizer steps completed
    int64_t skipped_steps;  // non-finite steps skipped so far
    int64_t tokens;         // tokens trained on
    int64_t data_position;  // global count of training sequences consumed
    int64_t world;          // ranks that wrote it (informational: resume may change it)
} TrainState;

// Writes <run_dir>/ckpt-<step>.h5 and points <run_dir>/latest at it. 0, or -1 with err;
// on failure nothing is left under the real name and the previous checkpoints are untouched.
// params, adam_m, adam_v: host buffers in the layout of m's parameter table.
int checkpoint_write(const char *run_dir, const Model_f32 *m, const float *params,
                     const float *adam_m, const float *adam_v, const TrainState *st,
                     const Config *cfg, char *path_out, size_t path_len, char *err, size_t errlen);
// Deletes checkpoints beyond the newest `keep` (keeping every keep_every-th step); never the
// one `latest` names.
void checkpoint_prune(const char *run_dir, int64_t keep, int64_t keep_every);

// Reads a checkpoint into an already built model (shapes must match) and the moments
// (either may be NULL to skip them). stored_cfg receives the checkpoint's resolved config.
int checkpoint_read(const char *path, const Model_f32 *m, float *params, float *adam_m,
                    float *adam_v, TrainState *st, Config *stored_cfg, char *err, size_t errlen);
// Only the resolved config stored in a checkpoint (to check a resume before loading tensors).
int checkpoint_read_config(const char *path, Config *stored_cfg, char *err, size_t errlen);
// Parameters only, matched by name and shape (warm start); mismatches are listed in err.
int checkpoint_load_params(const char *path, const Model_f32 *m, float *params, char *err,
                           size_t errlen);

// The checkpoint files of a run directory, newest first (the one `latest` names leads).
// Returns the count (<= max); paths are malloc'ed.
int checkpoint_list(const char *run_dir, char **paths, int max);
// Removes temporary files a killed writer left behind (never a complete checkpoint).
void checkpoint_remove_partial(const char *run_dir);
// A run directory or a file: the file to resume from (the newest listed), or -1 with err.
int checkpoint_resolve(const char *dir_or_file, char *path, size_t n, char *err, size_t errlen);
