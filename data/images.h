// Image classification data (madtrain prep images; docs/data-format.md "Image shards"): the
// Loader (loader.h) serves image shards when data.path holds them, so the trainer asks the
// same object for images as for tokens.
//
// An image shard holds `images` uint8 [N, H, W, C] and `labels` int32 [N] with the root
// attributes of every shard (format_version, split, checksum_crc32 over images then labels)
// plus num_classes, class_names, and the per-channel mean and std (of pixel / 255) of the
// training split. Every shard of a set has the same H, W, C and classes.
//
// The training stream is a keyed shuffle of the training images per epoch, as for token
// windows: position p is a pure function of (seed, p), so ranks, resumes and world sizes see
// the same global batches. Augmentation (data.crop_pad, data.hflip) is a pure function of
// (seed, p) too: a resume is bitwise exact.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "loader.h"

typedef struct {
    int height, width, channels;  // of every image of the set
    int num_classes;
} ImageGeom;

// 1 when the loader serves image shards (then loader_train/loader_eval refuse: use these).
int loader_is_images(const Loader *l);
ImageGeom loader_image_geom(const Loader *l);
// The class name of label c (0 <= c < num_classes).
const char *loader_class_name(const Loader *l, int c);
// Training positions [first, first + count): pixels [count, H, W, C] as float, normalised per
// channel ((x / 255 - mean_c) / std_c), augmented; labels [count]. 0, or -1 with err.
int loader_train_images(Loader *l, int64_t first, int64_t count, float *pixels_nhwc, int *labels,
                        char *err, size_t errlen);
// Held-out images [first, first + count) of a split, in stored order, normalised, never
// augmented.
int loader_eval_images(Loader *l, EvalSplit split, int64_t first, int64_t count, float *pixels_nhwc,
                       int *labels, char *err, size_t errlen);
