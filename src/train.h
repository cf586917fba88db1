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
