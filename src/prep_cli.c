// `madtrain prep`: the command line of the data tools (data/prep.h). prep synthetic takes
// config keys (a --config file and key=value arguments, as training does), which is why the
// command line lives here and not in data/: the tools there get a DataOptions.
#include "prep_cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../data/h5util.h"
#include "../data/prep.h"
#include "config.h"
#include "data_config.h"
#include "util.h"

static void prep_usage(FILE *f) {
    fprintf(
        f,
        "usage: madtrain prep wikitext --out DIR (--in DIR | --train FILE) [--valid FILE]\n"
        "                              [--test FILE] [options]\n"
        "       madtrain prep synthetic --out DIR [--config FILE] [--task mqar|ar]\n"
        "                              [key=value ...] [options]\n"
        "       madtrain prep images --out DIR (--npz FILE | --cifar PATH | --folder DIR)\n"
        "                              [--test-fraction F] [--seed N] [options]\n"
        "       madtrain prep check DIR\n\n"
        "wikitext   word-level tokenisation as WikiText is distributed (whitespace-separated\n"
        "           tokens, <unk> kept, <eos> at every line end), vocabulary from the training\n"
        "           split only (vocab.txt; ids by decreasing frequency); other splits map\n"
        "           unknown words to <unk>. --in DIR finds <split>.txt, wiki.<split>.tokens\n"
        "           or wiki.<split>.raw. Two streaming passes: memory does not grow with the\n"
        "           corpus (WikiText-103 prepares in bounded memory).\n"
        "  --tokenizer word|byte|bpe|unigram\n"
        "                          byte: token = byte value (vocab 256), the text exactly;\n"
        "                          bpe, unigram: a SentencePiece model trained on the\n"
        "                          training split (DIR/tokenizer.model), then its pieces\n"
        "  --vocab-size N          bpe, unigram: pieces (default 32000)\n"
        "  --shard-tokens N        tokens per shard (default 268435456)\n"
        "  --dtype auto|uint16|uint32   token type (auto: uint16 when the vocab fits)\n"
        "synthetic  the in-process task of the config keys (data.task, data.seq_len, ...,\n"
        "           seed) as sequence shards: train (data.train_examples, must be > 0) and\n"
        "           valid (the data.test_examples held-out examples). Training on them with\n"
        "           the same keys and data.path=DIR gives exactly the in-process batches.\n"
        "  --shard-examples N      sequences per shard (default 1048576)\n"
        "images     labelled images into image shards (uint8 [N, H, W, C], int32 labels, class\n"
        "           names, the training split's per-channel mean and std; docs/data-format.md)\n"
        "  --npz FILE              images [N,H,W(,C)] (uint8, or float in [0,1]) + labels, or\n"
        "                          train_images/train_labels/test_images/test_labels;\n"
        "                          class_names optional (np.savez or np.savez_compressed)\n"
        "  --cifar PATH            CIFAR-10/100 as distributed: the python pickle or the\n"
        "                          binary folder (or one batch file); --coarse: CIFAR-100's\n"
        "                          20 superclasses\n"
        "  --folder DIR            DIR/<class>/*.png|jpg (DIR/train + DIR/test or DIR/val\n"
        "                          when present; Tiny ImageNet's layout too)\n"
        "  --test-fraction F       hold out this fraction when the source has no test split\n"
        "                          (required then; chosen by --seed, default 0)\n"
        "  --shard-images N        images per shard (default 1048576)\n"
        "check      opens every shard of DIR's manifest and verifies it (checksum, ids, and\n"
        "           that DIR/tokenizer.model is the subword model that wrote them)\n\n"
        "common options:\n"
        "  --gzip LEVEL            compress (1-9; default 0: contiguous, fastest to read)\n"
        "  --hdf5-errors           also print HDF5's own error stack\n");
}

static int synthetic_cli(int argc, char **argv) {
    Config cfg;
    config_defaults(&cfg);
    const char *out = NULL;
    int64_t per_shard = 1 << 20;
    int gzip = 0;
    char err[1400];
    for (int i = 1; i < argc; i++)  // the config file first: other arguments override it
        if (!strcmp(argv[i], "--config") && i + 1 < argc &&
            config_load_file(&cfg, argv[i + 1], err, sizeof(err))) {
            fprintf(stderr, "madtrain: error: %s\n", err);
            return MT_EXIT_USAGE;
        }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (!strcmp(a, "--hdf5-errors"))
            h5_errors(1);
        else if (!v && a[0] == '-')
            rc = -1, snprintf(err, sizeof(err), "%s needs a value", a);
        else if (!strcmp(a, "--config"))
            i++;
        else if (!strcmp(a, "--out"))
            out = v, i++;
        else if (!strcmp(a, "--task"))
            rc = config_set(&cfg, "data.task", v, a, err, sizeof(err)), i++;
        else if (!strcmp(a, "--shard-examples"))
            per_shard = atoll(v), i++;
        else if (!strcmp(a, "--gzip"))
            gzip = atoi(v), i++;
        else if (a[0] == '-')
            rc = -1, snprintf(err, sizeof(err), "unknown option '%s'", a);
        else
            rc = config_override(&cfg, a, err, sizeof(err));
        if (rc) {
            fprintf(stderr, "madtrain: error: prep synthetic: %s\n", err);
            return MT_EXIT_USAGE;
        }
    }
    if (!out || per_shard < 1 || gzip < 0 || gzip > 9 || cfg.train_examples <= 0 ||
        cfg.data_path[0] || cfg.valid_examples > 0) {
        fprintf(stderr, "madtrain: error: prep synthetic: %s\n",
                !out                   ? "--out DIR is required"
                : per_shard < 1        ? "--shard-examples must be >= 1"
                : gzip < 0 || gzip > 9 ? "--gzip takes a level from 0 to 9"
                : cfg.data_path[0]     ? "data.path is for training; give the folder as --out"
                : cfg.valid_examples > 0
                    ? "data.valid_examples is not written to shards: the held-out split prep "
                      "writes ('valid') is data.test_examples"
                    : "data.train_examples must be > 0 (a finite training set)");
        return MT_EXIT_USAGE;
    }
    if (config_validate(&cfg, 1, err, sizeof(err))) {
        fprintf(stderr, "madtrain: error: prep synthetic: %s\n", err);
        return MT_EXIT_USAGE;
    }
    DataOptions o = data_options_from_config(&cfg);
    return prep_synthetic(&o, out, per_shard, gzip);
}

int prep_main(int argc, char **argv) {
    prep_clock_start();
    h5_errors(0);
    const char *tool = argc > 1 ? argv[1] : "";
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            prep_usage(stdout);
            return 0;
        }
    if (!strcmp(tool, "wikitext")) return prep_wikitext(argc - 1, argv + 1);
    if (!strcmp(tool, "synthetic")) return synthetic_cli(argc - 1, argv + 1);
    if (!strcmp(tool, "check")) return prep_check(argc - 1, argv + 1);
    if (!strcmp(tool, "images")) return prep_images(argc - 1, argv + 1);
    if (tool[0])
        fprintf(stderr,
                "madtrain: error: prep: unknown tool '%s' (tools: wikitext, synthetic, images, "
                "check)\n",
                tool);
    else
        fprintf(stderr,
                "madtrain: error: prep: which tool? (wikitext, synthetic, images, check)\n");
    prep_usage(stderr);
    return MT_EXIT_USAGE;
}
