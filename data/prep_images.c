// `madtrain prep images` (data/prep.h): one of the input formats (image_sources.h) into
// image shards (image_set.h). The source's own train/test split is kept; a source without
// one is split by --test-fraction, deterministically by --seed.
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../kernels/rng.h"
#include "h5util.h"
#include "image_sources.h"
#include "prep.h"
#include "reader.h"
#include "util.h"

void image_source_free(ImageSource *s) {
    image_array_free(&s->train);
    image_array_free(&s->test);
    for (int i = 0; s->class_names && i < s->num_classes; i++) free(s->class_names[i]);
    free(s->class_names);
    memset(s, 0, sizeof(*s));
}

int read_whole_file(const char *path, unsigned char **buf, size_t *len, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    size_t cap = 1 << 16, n = 0;
    unsigned char *b = xmalloc(cap);
    for (;;) {
        if (n == cap) b = xrealloc(b, cap *= 2);
        size_t got = fread(b + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        free(b);
        return -1;
    }
    *buf = b, *len = n;
    return 0;
}

// Image i goes to the test split when its place in a keyed permutation of [0, n) is below
// n_test: a pure function of (seed, n, i), and the stored order within each split is the
// source's.
static void split_by_fraction(ImageSource *s, double fraction, uint64_t seed) {
    ImageArray all = s->train, train = all, test = all;
    int64_t n = all.n, n_test = (int64_t)llround(fraction * (double)n);
    size_t img = (size_t)all.H * (size_t)all.W * (size_t)all.C;
    train.n = 0, test.n = 0;
    train.pixels = xmalloc(img * (size_t)(n - n_test) + 1);
    train.labels = xmalloc(sizeof(int32_t) * (size_t)(n - n_test + 1));
    test.pixels = xmalloc(img * (size_t)n_test + 1);
    test.labels = xmalloc(sizeof(int32_t) * (size_t)(n_test + 1));
    uint64_t key = rng_key(seed, 0x5B117, 0, 0);
    for (int64_t i = 0; i < n; i++) {
        ImageArray *to =
            (int64_t)shuffle_index((uint64_t)i, (uint64_t)n, key) < n_test ? &test : &train;
        memcpy(to->pixels + img * (size_t)to->n, all.pixels + img * (size_t)i, img);
        to->labels[to->n++] = all.labels[i];
    }
    image_array_free(&s->train);
    image_array_free(&s->test);  // an empty one a source may have allocated
    s->train = train, s->test = test, s->has_test = 1;
}

static void remove_written(const char *out, Manifest *m) {
    for (int i = 0; i < m->n; i++) {
        char path[1100];
        snprintf(path, sizeof(path), "%s/%s", out, m->entries[i].file);
        unlink(path);
    }
}

static void prep_images_usage(FILE *f) {
    fprintf(f,
            "usage: madtrain prep images --out DIR (--npz FILE | --cifar PATH | --folder DIR)\n"
            "                            [--test-fraction F] [--seed N] [--coarse]\n"
            "                            [--shard-images N] [--gzip LEVEL]\n");
}

int prep_images(int argc, char **argv) {
    const char *out = NULL, *npz = NULL, *cifar = NULL, *folder = NULL;
    double fraction = -1;
    uint64_t seed = 0;
    int64_t per_shard = 1 << 20;
    int gzip = 0, coarse = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(a, "--hdf5-errors")) {
            h5_errors(1);
            continue;
        }
        if (!strcmp(a, "--coarse")) {
            coarse = 1;
            continue;
        }
        if (!v || a[0] != '-') {
            fprintf(stderr, "madtrain: error: prep images: %s '%s'\n",
                    a[0] == '-' ? "a value is missing after" : "unexpected argument", a);
            prep_images_usage(stderr);
            return MT_EXIT_USAGE;
        }
        i++;
        if (!strcmp(a, "--out"))
            out = v;
        else if (!strcmp(a, "--npz"))
            npz = v;
        else if (!strcmp(a, "--cifar"))
            cifar = v;
        else if (!strcmp(a, "--folder"))
            folder = v;
        else if (!strcmp(a, "--test-fraction")) {
            fraction = strtod(v, &end);
            if (*end || !(fraction >= 0 && fraction < 1)) fraction = -2;
        } else if (!strcmp(a, "--seed"))
            seed = strtoull(v, &end, 10);
        else if (!strcmp(a, "--shard-images"))
            per_shard = strtoll(v, &end, 10);
        else if (!strcmp(a, "--gzip"))
            gzip = (int)strtol(v, &end, 10);
        else {
            fprintf(stderr, "madtrain: error: prep images: unknown option '%s'\n", a);
            prep_images_usage(stderr);
            return MT_EXIT_USAGE;
        }
        if (end && *end) {
            fprintf(stderr, "madtrain: error: prep images: %s takes a number, not '%s'\n", a, v);
            return MT_EXIT_USAGE;
        }
    }
    const char *why = !out ? "--out DIR is required"
                      : !!npz + !!cifar + !!folder != 1
                          ? "give one input: --npz, --cifar or --folder"
                      : fraction == -2       ? "--test-fraction takes a number in [0, 1)"
                      : per_shard < 1        ? "--shard-images must be >= 1"
                      : gzip < 0 || gzip > 9 ? "--gzip takes a level from 0 to 9"
                                             : NULL;
    if (why) {
        fprintf(stderr, "madtrain: error: prep images: %s\n", why);
        prep_images_usage(stderr);
        return MT_EXIT_USAGE;
    }
    char err[1400];
    ImageSource s;
    int rc = npz     ? image_source_npz(npz, &s, err, sizeof(err))
             : cifar ? image_source_cifar(cifar, coarse, &s, err, sizeof(err))
                     : image_source_folder(folder, &s, err, sizeof(err));
    const char *in = npz ? npz : cifar ? cifar : folder;
    if (rc) {
        fprintf(stderr, "madtrain: error: %s\n", err);
        return MT_EXIT_USAGE;
    }
    if (s.has_test && fraction >= 0) {
        fprintf(stderr,
                "madtrain: error: prep images: %s has its own train/test split: --test-fraction "
                "does not apply\n",
                in);
        image_source_free(&s);
        return MT_EXIT_USAGE;
    }
    if (!s.has_test && fraction < 0) {
        fprintf(stderr,
                "madtrain: error: prep images: %s has no test split of its own: say how much to "
                "hold out with --test-fraction F (e.g. 0.2; 0 for none)\n",
                in);
        image_source_free(&s);
        return MT_EXIT_USAGE;
    }
    if (!s.has_test) split_by_fraction(&s, fraction, seed);
    if (s.train.n == 0) {
        fprintf(stderr, "madtrain: error: %s: no training images\n", in);
        image_source_free(&s);
        return MT_EXIT_USAGE;
    }
    int max_label = -1;
    for (int64_t i = 0; i < s.train.n; i++)
        max_label = s.train.labels[i] > max_label ? s.train.labels[i] : max_label;
    for (int64_t i = 0; i < s.test.n; i++)
        max_label = s.test.labels[i] > max_label ? s.test.labels[i] : max_label;
    if (s.num_classes && max_label >= s.num_classes) {
        fprintf(stderr, "madtrain: error: %s: label %d is outside the %d classes named there\n", in,
                max_label, s.num_classes);
        image_source_free(&s);
        return MT_EXIT_USAGE;
    }
    ImageClasses cls = {0};
    cls.num_classes = s.num_classes ? s.num_classes : max_label + 1;
    cls.class_names = xcalloc((size_t)cls.num_classes, sizeof(char *));
    for (int c = 0; c < cls.num_classes; c++) {
        char name[32];
        snprintf(name, sizeof(name), "%d", c);
        cls.class_names[c] = strdup(s.class_names ? s.class_names[c] : name);
    }
    image_stats(&s.train, cls.mean, cls.std);
    for (int c = 0; c < s.train.C; c++)
        if (!(cls.std[c] > 0)) {
            fprintf(stderr,
                    "madtrain: error: %s: channel %d is constant over the training images (std "
                    "0): nothing to normalise by\n",
                    in, c);
            image_source_free(&s), image_classes_free(&cls);
            return MT_EXIT_USAGE;
        }
    printf("prep images: %s: %lld train + %lld test images of %dx%dx%d, %d classes\n", in,
           (long long)s.train.n, (long long)s.test.n, s.train.H, s.train.W, s.train.C,
           cls.num_classes);
    if (mkdir_p(out)) {
        fprintf(stderr, "madtrain: error: cannot create %s: %s\n", out, strerror(errno));
        image_source_free(&s), image_classes_free(&cls);
        return MT_EXIT_FAIL;
    }
    Manifest m = {0};
    rc = image_shards_write(out, "train", &s.train, &cls, per_shard, gzip, &m, err, sizeof(err));
    if (!rc && s.test.n > 0)
        rc = image_shards_write(out, "test", &s.test, &cls, per_shard, gzip, &m, err, sizeof(err));
    if (!rc) rc = manifest_write(out, &m, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "madtrain: error: %s\n", err);
        remove_written(out, &m);  // no shard of a set whose manifest was never written
    } else {
        printf("prep images: done in %.1fs: %d shard(s) -> %s (mean", prep_elapsed(), m.n, out);
        for (int c = 0; c < s.train.C; c++) printf(" %.4f", cls.mean[c]);
        printf(", std");
        for (int c = 0; c < s.train.C; c++) printf(" %.4f", cls.std[c]);
        printf(")\n");
    }
    manifest_free(&m);
    image_source_free(&s), image_classes_free(&cls);
    return rc ? MT_EXIT_FAIL : 0;
}
