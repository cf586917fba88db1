#pragma once
#include "../comm/comm.h"
#include "config.h"
#include "model.h"

// Runs a whole training job on every rank; returns the process exit code.
// eval_only: load the checkpoint (checkpoint.resume or init_from) and evaluate it.
int train_run(const Config *cfg, Comm *comm, int eval_only);
// The model shape a config asks for (shared by train and the tools). 0, or -1 with err.
int model_config_from(const Config *cfg, int task_vocab, int task_seq_len, ModelConfig *mc,
                      char *err, size_t n);
// device: auto|cpu|cuda, resolved the same way on every rank: the backend, the GPUs on this
// node and a description for the log ("device cuda:0 (NVIDIA H100 ...)"). Rank r takes GPU
// local_rank mod GPUs. 0, or -1 with err.
int select_backend(const Config *cfg, Comm *comm, const Backend_f32 **k, int *gpus_on_node,
                   char *describe, size_t dn, char *err, size_t errlen);
