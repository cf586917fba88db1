// The loader: the in-process synthetic tasks (examples generated from (seed, split, index)),
// or HDF5 shards through the reader thread when data.path is set.
#include "loader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image_set.h"
#include "images.h"
#include "reader.h"
#include "synthetic.h"
#include "util.h"

// data.pack: where each packed row of one split's stream starts. Row r holds the examples at
// stream positions [first(r), first(r + 1)); first() follows from the examples' lengths alone
// (one draw each), walked forward from the nearest mark (first of every PACK_MARK-th row).
enum { PACK_MARK = 256 };
typedef struct {
    int split;       // SPLIT_*
    int64_t n;       // the stream's examples (0: endless: training positions run on)
    int64_t *marks;  // marks[j] = first(j * PACK_MARK)
    int64_t n_marks, cap;
    int64_t rows;  // rows holding positions [0, n) (training: one epoch)
} Packer;

struct Loader {
    Reader *shards;     // NULL: in-process task
    ImageData *images;  // image shards (images.h): served instead of shards
    Task task;
    Sampler sampler;
    int pack;
    Packer packer[3];                         // by SPLIT_*
    int *row_ids, *row_targets, *row_levels;  // one example, [T] each
    char describe[64];
    char eval_split[64];  // shards: the split evaluated
};

// The example at position p of a split's stream: the shuffled training order, else p.
static int64_t stream_example(Loader *l, int split, int64_t p) {
    return split == SPLIT_TRAIN ? sampler_example(&l->sampler, p) : p;
}

// One past the last position row `first`'s examples take (each example fits a row alone).
static int64_t pack_row_end(Loader *l, const Packer *pk, int64_t first) {
    int T = l->task.T, used = 0;
    int64_t p = first;
    while (pk->n == 0 || p < pk->n) {
        int len = task_example_length(&l->task, pk->split, stream_example(l, pk->split, p));
        if (used + len > T) break;
        used += len, p++;
    }
    return p;
}

static int64_t pack_row_first(Loader *l, Packer *pk, int64_t row) {
    int64_t j = row / PACK_MARK;
    while (pk->n_marks <= j) {
        if (pk->n_marks == pk->cap) {
            pk->cap = pk->cap ? 2 * pk->cap : 64;
            pk->marks = xrealloc(pk->marks, sizeof(int64_t) * (size_t)pk->cap);
        }
        int64_t p = 0;
        if (pk->n_marks) {
            p = pk->marks[pk->n_marks - 1];
            for (int i = 0; i < PACK_MARK; i++) p = pack_row_end(l, pk, p);
        }
        pk->marks[pk->n_marks++] = p;
    }
    int64_t p = pk->marks[j];
    for (int64_t i = j * PACK_MARK; i < row; i++) p = pack_row_end(l, pk, p);
    return p;
}

static void packer_init(Loader *l, Packer *pk, int split, int64_t n) {
    memset(pk, 0, sizeof(*pk));
    pk->split = split, pk->n = n;
    // Rows that hold positions [0, n): walked once (a draw per example).
    for (int64_t p = 0; p < n; pk->rows++) p = pack_row_end(l, pk, p);
    if (split == SPLIT_TRAIN) pk->n = 0;  // training positions run on across epochs
}

// Rows [first, first + count) of a packed split.
static void pack_rows(Loader *l, int split, int64_t first, int64_t count, int *ids, int *targets,
                      int *levels, int *pos) {
    Packer *pk = &l->packer[split];
    int T = l->task.T;
    int64_t p = pack_row_first(l, pk, first);
    for (int64_t r = 0; r < count; r++) {
        int64_t end = pk->n && first + r >= pk->rows ? p : pack_row_end(l, pk, p);
        size_t row = (size_t)r * T;
        int at = 0;
        for (; p < end; p++) {
            int64_t e = stream_example(l, split, p);
            int len = task_example_length(&l->task, split, e);
            task_example_levels(&l->task, split, e, l->row_ids, l->row_targets, l->row_levels);
            for (int t = 0; t < len; t++, at++) {
                ids[row + at] = l->row_ids[t], targets[row + at] = l->row_targets[t];
                if (levels) levels[row + at] = l->row_levels[t];
                if (pos) pos[row + at] = t;
            }
        }
        for (int t = 0; at < T; t++, at++) {  // padding: a segment of its own
            ids[row + at] = 0, targets[row + at] = -1;
            if (levels) levels[row + at] = 0;
            if (pos) pos[row + at] = t;
        }
    }
}

Loader *loader_open(const DataOptions *o, int rank, int world, char *err, size_t errlen) {
    Loader *l = xcalloc(1, sizeof(Loader));
    snprintf(l->eval_split, sizeof(l->eval_split), "%s", o->eval_split);
    if (o->path[0] && image_set_detect(o->path)) {
        l->images = image_data_open(o, err, errlen);
        if (!l->images) {
            free(l);
            return NULL;
        }
        return l;
    }
    if (o->path[0] && (o->crop_pad > 0 || o->hflip)) {
        snprintf(err, errlen,
                 "data.crop_pad and data.hflip augment image shards, but %s holds token shards",
                 o->path);
        free(l);
        return NULL;
    }
    if (o->path[0]) {
        l->shards = reader_open(o, rank, world, err, errlen);
        if (!l->shards) {
            free(l);
            return NULL;
        }
        return l;
    }
    l->task = task_from_options(o);
    sampler_init(&l->sampler, &l->task);
    l->pack = o->pack;
    if (l->pack) {
        int T = l->task.T;
        l->row_ids = xmalloc(sizeof(int) * 3 * (size_t)T);
        l->row_targets = l->row_ids + T, l->row_levels = l->row_ids + 2 * T;
        packer_init(l, &l->packer[SPLIT_TRAIN], SPLIT_TRAIN, l->task.n_train);
        packer_init(l, &l->packer[SPLIT_TEST], SPLIT_TEST, l->task.n_test);
        packer_init(l, &l->packer[SPLIT_VALID], SPLIT_VALID, l->task.n_valid);
    }
    snprintf(l->describe, sizeof(l->describe), "%s (in-process)", task_name(o->task));
    return l;
}

void loader_close(Loader *l) {
    if (!l) return;
    if (l->images)
        image_data_close(l->images);
    else if (l->shards)
        reader_close(l->shards);
    else
        sampler_free(&l->sampler);
    for (int i = 0; i < 3; i++) free(l->packer[i].marks);
    free(l->row_ids);
    free(l);
}

int loader_vocab(const Loader *l) {
    if (l->images) return image_data_classes(l->images)->num_classes;
    return l->shards ? reader_vocab(l->shards) : l->task.vocab;
}
int loader_seq_len(const Loader *l) {
    if (l->images) return 0;  // images have no sequence length: loader_image_geom
    return l->shards ? reader_seq_len(l->shards) : l->task.T;
}
int loader_packed(const Loader *l) {
    return l->pack;
}
int64_t loader_train_size(const Loader *l) {
    if (l->images) return image_data_split(l->images, 0)->n;
    if (l->pack) return l->packer[SPLIT_TRAIN].rows;
    return l->shards ? reader_train_size(l->shards) : l->task.n_train;
}
int64_t loader_eval_size(const Loader *l, EvalSplit split) {
    if (l->images) return split == EVAL_TEST ? image_data_split(l->images, 1)->n : 0;
    if (l->shards) return split == EVAL_TEST ? reader_eval_size(l->shards) : 0;
    if (l->pack) return l->packer[split == EVAL_TEST ? SPLIT_TEST : SPLIT_VALID].rows;
    return split == EVAL_TEST ? l->task.n_test : l->task.n_valid;
}
const char *loader_eval_name(const Loader *l, EvalSplit split) {
    if (l->shards || l->images) return l->eval_split;
    return split == EVAL_TEST ? "test" : "valid";
}
int loader_is_lm(const Loader *l) {
    return l->shards && reader_is_lm(l->shards);
}
const char *loader_describe(const Loader *l) {
    if (l->images) return image_data_describe(l->images);
    return l->shards ? reader_describe(l->shards) : l->describe;
}

static int refuse_images(char *err, size_t errlen) {
    snprintf(err, errlen,
             "data.path holds image shards: they are read as images (loader_train_images), not "
             "as token sequences");
    return -1;
}

int loader_train(Loader *l, int64_t first, int64_t count, int *ids, int *targets, int *pos,
                 char *err, size_t errlen) {
    if (l->images) return refuse_images(err, errlen);
    if (l->shards) return reader_train(l->shards, first, count, ids, targets, err, errlen);
    if (l->pack) {
        pack_rows(l, SPLIT_TRAIN, first, count, ids, targets, NULL, pos);
        return 0;
    }
    int T = l->task.T;
    for (int64_t j = 0; j < count; j++)
        task_example(&l->task, SPLIT_TRAIN, sampler_example(&l->sampler, first + j), ids + j * T,
                     targets + j * T);
    return 0;
}

int loader_eval(Loader *l, EvalSplit split, int64_t first, int64_t count, int *ids, int *targets,
                int *levels, int *pos, char *err, size_t errlen) {
    if (l->images) return refuse_images(err, errlen);
    int T = loader_seq_len(l);
    if (l->shards) {
        if (levels)
            for (int64_t i = 0; i < count * T; i++) levels[i] = 0;
        return reader_eval(l->shards, first, count, ids, targets, err, errlen);
    }
    int split_id = split == EVAL_TEST ? SPLIT_TEST : SPLIT_VALID;
    if (l->pack) {
        pack_rows(l, split_id, first, count, ids, targets, levels, pos);
        return 0;
    }
    for (int64_t j = 0; j < count; j++) {
        if (levels)
            task_example_levels(&l->task, split_id, first + j, ids + j * T, targets + j * T,
                                levels + j * T);
        else
            task_example(&l->task, split_id, first + j, ids + j * T, targets + j * T);
    }
    return 0;
}

// ---- images (images.h) --------------------------------------------------------------------
int loader_is_images(const Loader *l) {
    return l->images != NULL;
}

ImageGeom loader_image_geom(const Loader *l) {
    ImageGeom g = {0, 0, 0, 0};
    if (!l->images) return g;
    const ImageArray *a = image_data_split(l->images, 0);
    g.height = a->H, g.width = a->W, g.channels = a->C;
    g.num_classes = image_data_classes(l->images)->num_classes;
    return g;
}

const char *loader_class_name(const Loader *l, int c) {
    const ImageClasses *k = l->images ? image_data_classes(l->images) : NULL;
    return k && c >= 0 && c < k->num_classes ? k->class_names[c] : "";
}

static int not_images(char *err, size_t errlen) {
    snprintf(err, errlen,
             "the data is not image shards (data.path names no `madtrain prep images` "
             "folder)");
    return -1;
}

int loader_train_images(Loader *l, int64_t first, int64_t count, float *pixels_nhwc, int *labels,
                        char *err, size_t errlen) {
    if (!l->images) return not_images(err, errlen);
    if (first < 0 || count < 0) {
        snprintf(err, errlen, "training positions [%lld, +%lld) are invalid", (long long)first,
                 (long long)count);
        return -1;
    }
    image_data_train(l->images, first, count, pixels_nhwc, labels);
    return 0;
}

int loader_eval_images(Loader *l, EvalSplit split, int64_t first, int64_t count, float *pixels_nhwc,
                       int *labels, char *err, size_t errlen) {
    if (!l->images) return not_images(err, errlen);
    if (split != EVAL_TEST) {
        snprintf(err, errlen, "image shards hold no valid split besides data.eval_split");
        return -1;
    }
    return image_data_eval(l->images, first, count, pixels_nhwc, labels, err, errlen);
}
