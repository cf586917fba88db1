// madtrain command line: `madtrain [train] [--config FILE] [key=value ...]`.
#include <stdio.h>
#include <string.h>

#include "../comm/comm.h"
#include "../data/h5util.h"
#include "bench.h"
#include "config.h"
#include "ladder.h"
#include "model.h"
#include "prep_cli.h"
#include "report.h"
#include "train.h"
#include "util.h"

static void usage(FILE *f) {
    fprintf(
        f,
        "madtrain %s: data-parallel trainer for sequence mixers\n\n"
        "usage: madtrain [train] [--config FILE] [--resume RUN_DIR|FILE] [key=value ...]\n"
        "       madtrain eval --config FILE --resume CHECKPOINT [--dump FILE.h5] [key=value ...]\n"
        "       madtrain train --help | madtrain --help | madtrain --version\n\n"
        "  train      train a model (the default command); under mpirun, one rank per process\n"
        "  eval       evaluate a checkpoint on the held-out split\n"
        "  prep       write data shards: prep wikitext|synthetic|check (madtrain prep --help)\n"
        "  report     results table (Markdown, CSV, plots) of run directories\n"
        "  bench      training-step throughput and MFU per mixer (madtrain bench --help)\n"
        "  ladder     compute-matched scaling ladder against baselines (madtrain ladder --help)\n"
        "  mixers     the mixers, one per line, with the options of their first test shape\n"
        "  --config   YAML file of config keys; key=value arguments override it\n"
        "  --resume   continue from a checkpoint (= checkpoint.resume; 'auto': this run's latest)\n"
        "  --print-config  print the resolved config (every key, YAML) and exit\n"
        "  --dump     (eval) write every evaluated position's id, target, prediction, loss and\n"
        "             level to FILE.h5, one group per split (h5py-readable; docs/tasks.md)\n\n"
        "Exit codes: 0 finished, or stopped by SIGTERM/SIGINT/SIGUSR1 after writing a checkpoint\n"
        "(run_dir/status then says 'preempted': requeue it); 1 runtime failure; 2 bad config or\n"
        "command line; 130 a second SIGINT (no checkpoint).\n\n"
        "Mixers:",
        MADTRAIN_VERSION);
    for (int i = 0; i < N_OPS_f32; i++)
        if (OPS_f32[i]->mixer) fprintf(f, "\n  %-15s %s", OPS_f32[i]->name, OPS_f32[i]->help);
    fprintf(f, "\n\n");
    config_print_help(f);
}

// Usage errors are found identically on every rank (same argv, same files), so each rank can
// stop on its own without a collective; only rank 0 prints.
static int usage_error(Comm *comm, const char *msg) {
    if (!comm->rank) fprintf(stderr, "madtrain: error: %s\n", msg);
    comm_finalize(comm);
    return MT_EXIT_USAGE;
}

int main(int argc, char **argv) {
    blas_pick_kernels(argv);
    h5_process_init();
    Comm comm;
    comm_init(&comm, &argc, &argv);
    int first = 1, eval_only = 0;
    if (argc > 1 && !strcmp(argv[1], "train"))
        first = 2;
    else if (argc > 1 && !strcmp(argv[1], "eval"))
        first = 2, eval_only = 1;
    else if (argc > 1 && !strcmp(argv[1], "report")) {
        int rc = comm.rank ? 0 : report_main(argc - 1, argv + 1);
        comm_finalize(&comm);
        return rc;
    } else if (argc > 1 && !strcmp(argv[1], "bench")) {
        if (comm.world > 1)
            return usage_error(&comm, "bench runs as one process, not under mpirun");
        int rc = bench_main(argc - 1, argv + 1, &comm);
        comm_finalize(&comm);
        return rc;
    } else if (argc > 1 && !strcmp(argv[1], "ladder")) {
        int rc = ladder_main(argc - 1, argv + 1, &comm);
        comm_finalize(&comm);
        return rc;
    } else if (argc > 1 && !strcmp(argv[1], "mixers")) {
        // One line per mixer row: its name and the options of its first test shape as
        // mixer.* keys (the GPU training test runs every mixer from this list).
        for (int i = 0; !comm.rank && i < N_OPS_f32; i++) {
            const OpDef_f32 *op = OPS_f32[i];
            if (!op->mixer) continue;
            printf("%s", op->name);
            for (const char *p = op->tests[0].opts; p && *p;) {
                while (*p == ' ') p++;
                size_t k = strcspn(p, " ");
                if (k) printf(" mixer.%.*s", (int)k, p);
                p += k;
            }
            printf("\n");
        }
        comm_finalize(&comm);
        return 0;
    } else if (argc > 1 && !strcmp(argv[1], "prep")) {
        if (comm.world > 1) return usage_error(&comm, "prep runs as one process, not under mpirun");
        int rc = prep_main(argc - 1, argv + 1);
        comm_finalize(&comm);
        return rc;
    } else if (argc > 1 && argv[1][0] != '-' && !strchr(argv[1], '=')) {
        char msg[300];
        snprintf(msg, sizeof(msg),
                 "unknown command '%.200s' (commands: train, eval, prep, report, bench, ladder, "
                 "mixers)",
                 argv[1]);
        return usage_error(&comm, msg);
    }
    Config cfg;
    config_defaults(&cfg);
    char err[1024];
    const char *config_path = NULL;
    for (int i = first; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            if (!comm.rank) usage(stdout);
            comm_finalize(&comm);
            return 0;
        }
        if (!strcmp(argv[i], "--version")) {
            if (!comm.rank)
                printf("madtrain %s (OpenBLAS kernels %s)\n", MADTRAIN_VERSION, blas_kernels());
            comm_finalize(&comm);
            return 0;
        }
        if (!strcmp(argv[i], "--config")) {
            if (i + 1 >= argc) return usage_error(&comm, "--config needs a file name");
            config_path = argv[++i];
        }
    }
    if (config_path && config_load_file(&cfg, config_path, err, sizeof(err)))
        return usage_error(&comm, err);
    int print_config = 0;
    for (int i = first; i < argc; i++) {
        if (!strcmp(argv[i], "--print-config")) {
            print_config = 1;
            continue;
        }
        if (!strcmp(argv[i], "--config")) {
            i++;
            continue;
        }
        if (!strcmp(argv[i], "--dump")) {
            if (!eval_only) return usage_error(&comm, "--dump is an option of madtrain eval");
            if (i + 1 >= argc || !argv[i + 1][0])
                return usage_error(&comm, "--dump needs a file name (FILE.h5)");
            if (strlen(argv[i + 1]) >= sizeof(cfg.eval_dump))
                return usage_error(&comm, "--dump: the file name is too long");
            snprintf(cfg.eval_dump, sizeof(cfg.eval_dump), "%s", argv[++i]);
            continue;
        }
        if (!strcmp(argv[i], "--resume")) {
            if (i + 1 >= argc) return usage_error(&comm, "--resume needs a run directory or file");
            if (config_set(&cfg, "checkpoint.resume", argv[++i], "command line", err, sizeof(err)))
                return usage_error(&comm, err);
            continue;
        }
        if (argv[i][0] == '-' && !strchr(argv[i], '=')) {
            char msg[300];
            snprintf(msg, sizeof(msg), "unknown option '%.200s' (see madtrain --help)", argv[i]);
            return usage_error(&comm, msg);
        }
        // A key given twice on the command line is refused, naming both (last-one-wins would
        // hide a typo); --resume is checkpoint.resume.
        size_t klen = strcspn(argv[i], "=");
        for (int j = first; j < i; j++) {
            const char *prev = !strcmp(argv[j], "--resume") ? "checkpoint.resume=" : argv[j];
            if (j > first && !strcmp(argv[j - 1], "--config")) continue;
            if (strchr(prev, '=') && strcspn(prev, "=") == klen && !strncmp(prev, argv[i], klen)) {
                char msg[600];
                snprintf(msg, sizeof(msg),
                         "command line: key '%.*s' is given twice ('%.200s' and '%.200s')",
                         (int)klen, argv[i], argv[j], argv[i]);
                return usage_error(&comm, msg);
            }
        }
        if (config_override(&cfg, argv[i], err, sizeof(err))) return usage_error(&comm, err);
    }
    if (config_validate(&cfg, comm.world, err, sizeof(err))) return usage_error(&comm, err);
    if (print_config) {  // the resolved config, as the run directory's config.yaml would hold it
        if (!comm.rank) config_write_yaml(&cfg, stdout);
        comm_finalize(&comm);
        return 0;
    }
    int rc = train_run(&cfg, &comm, eval_only);
    comm_finalize(&comm);
    return rc;
}
