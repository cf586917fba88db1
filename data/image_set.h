// Image shards inside data/ (docs/data-format.md "Image shards"): the arrays prep builds and
// the loader serves, their writer and their reader. The loader's interface is images.h; this
// is what prep (prep_images.c), the loader (loader.c) and the tests share below it.
//
// An image set is held in memory once open: uint8 pixels are 3 KB an image at 32x32x3, so
// CIFAR's 60,000 take 184 MB and Tiny ImageNet's 110,000 (64x64x3) 1.35 GB; a random
// training batch then costs no I/O at all.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "data_options.h"
#include "shards.h"

#define IMAGE_MAX_CHANNELS 4

typedef struct {
    int64_t n;
    int H, W, C;
    uint8_t *pixels;  // [n, H, W, C]
    int32_t *labels;  // [n]
} ImageArray;

// What every shard of a set says about the set.
typedef struct {
    int num_classes;
    char **class_names;                                        // [num_classes], malloc'ed
    double mean[IMAGE_MAX_CHANNELS], std[IMAGE_MAX_CHANNELS];  // of pixel / 255, training split
} ImageClasses;

void image_array_free(ImageArray *a);
void image_classes_free(ImageClasses *c);
// Per-channel mean and (population) standard deviation of pixel / 255 over a, from exact
// integer sums, so the same pixels give the same bits on every machine.
void image_stats(const ImageArray *a, double *mean, double *std);

// Writes images [first, first + count) of a as <out_dir>/<split>-NNNNN.h5 shards of at most
// per_shard images, each through a .partial name renamed into place once complete, and lists
// them in m. gzip 1-9 stores the data chunked and compressed. 0, or -1 with err.
int image_shards_write(const char *out_dir, const char *split, const ImageArray *a,
                       const ImageClasses *cls, int64_t per_shard, int gzip, Manifest *m, char *err,
                       size_t errlen);

// 1 when the first shard listed in dir's manifest holds an `images` dataset (0 otherwise,
// also when the folder cannot be read: the token reader then says why).
int image_set_detect(const char *dir);
// Every shard of `split` in dir's manifest, checked (attributes, shapes, the same geometry and
// classes in every shard, labels in range, and with verify the CRC-32) and read into a.
// cls (may be NULL) receives the set's classes. 0, or -1 with one line in err naming the file.
int image_set_load(const char *dir, const char *split, int verify, ImageArray *a, ImageClasses *cls,
                   char *err, size_t errlen);
// One shard file, opened, checked and read whole (prep check, tests).
int image_shard_load(const char *path, int verify, ImageArray *a, ImageClasses *cls, char split[64],
                     char *err, size_t errlen);

// ---- the loader's image side (loader.c wraps it as images.h) ----------------------------
typedef struct ImageData ImageData;
ImageData *image_data_open(const DataOptions *o, char *err, size_t errlen);
void image_data_close(ImageData *d);
const ImageArray *image_data_split(const ImageData *d, int eval);  // training or eval split
const ImageClasses *image_data_classes(const ImageData *d);
const char *image_data_describe(const ImageData *d);
// Training positions [first, first + count), normalised and augmented (images.h).
void image_data_train(const ImageData *d, int64_t first, int64_t count, float *pixels_nhwc,
                      int *labels);
// Eval images [first, first + count) in stored order; 0, or -1 with err when out of range.
int image_data_eval(const ImageData *d, int64_t first, int64_t count, float *pixels_nhwc,
                    int *labels, char *err, size_t errlen);
// The augmentation of training position p (exposed for the tests): the crop's offset into the
// zero-padded image, each in [0, 2 * crop_pad], and whether the crop is then flipped.
void image_augment_draw(uint64_t seed, int64_t p, int crop_pad, int hflip, int *oy, int *ox,
                        int *flip);
