// The input formats of `madtrain prep images` (docs/data-format.md "Image shards"): each
// reader turns one distribution format into labelled uint8 arrays, refusing anything it does
// not recognise with one line naming the file. prep_images.c splits, normalises and writes.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "image_set.h"

typedef struct {
    ImageArray train, test;
    int has_test;        // the source has its own held-out split (kept as 'test')
    int num_classes;     // 0: the largest label + 1
    char **class_names;  // [num_classes] or NULL (then "0", "1", ...)
} ImageSource;

void image_source_free(ImageSource *s);

// An .npz of images [N, H, W] or [N, H, W, C] (uint8, or float in [0, 1]) and integer labels
// [N]: arrays images + labels, or train_images + train_labels + test_images + test_labels,
// and optionally class_names (strings). np.savez (stored) and np.savez_compressed (deflate).
int image_source_npz(const char *path, ImageSource *s, char *err, size_t errlen);
// CIFAR-10 / CIFAR-100 as distributed, python pickles or binary: a folder (or one batch file).
// coarse: CIFAR-100's 20 superclasses instead of its 100 classes.
int image_source_cifar(const char *path, int coarse, ImageSource *s, char *err, size_t errlen);
// A folder of class folders of PNG / JPEG files (DIR/<class>/*.png); DIR/train and DIR/test
// (or DIR/val) as the splits when present; Tiny ImageNet's layout (train/<wnid>/images/*.JPEG,
// val/images + val/val_annotations.txt).
int image_source_folder(const char *path, ImageSource *s, char *err, size_t errlen);

// ---- the parts, exposed for the tests and the fuzzers -------------------------------------
// A python pickle (protocols 0 to 5) of the CIFAR batch dictionaries: 0, or -1 with err.
// Fills data (malloc'ed uint8 [n, 3072] in CIFAR's CHW layout), labels (malloc'ed [n]) from
// the key `label_key` (b'labels', b'fine_labels' or b'coarse_labels'), or, with names_key,
// the list of strings under that key (batches.meta / meta) into names/n_names.
typedef struct {
    uint8_t *data;
    int64_t n, row;  // images and bytes an image
    int32_t *labels;
    char **names;
    int n_names;
} PickleBatch;
int pickle_read_cifar(const unsigned char *buf, size_t len, const char *path, const char *label_key,
                      const char *names_key, PickleBatch *out, char *err, size_t errlen);
void pickle_batch_free(PickleBatch *b);
// Decodes a PNG or JPEG file in memory to 8-bit pixels: channels 1 (grey) or 3 (colour).
// *pixels is malloc'ed [h, w, c]. 0, or -1 with err naming path.
int image_decode(const unsigned char *buf, size_t len, const char *path, uint8_t **pixels, int *h,
                 int *w, int *c, char *err, size_t errlen);
// A whole file read into memory; 0, or -1 with err.
int read_whole_file(const char *path, unsigned char **buf, size_t *len, char *err, size_t errlen);
