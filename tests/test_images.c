// The image side of the loader (data/images.h): a small image set written by the shard writer,
// then served back. Checks: the stored pixels normalised per channel, eval never augmented,
// every epoch a permutation, training batches a pure function of (seed, position) (one rank =
// two ranks' slices, any chunking), and crop + flip equal to an explicit transform built from
// a zero-padded copy of the image.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../data/h5util.h"
#include "../data/image_set.h"
#include "../data/images.h"
#include "../data/reader.h"
#include "../data/util.h"

static int failures = 0;
#define CHECK(cond, ...)                                         \
    do {                                                         \
        if (!(cond)) {                                           \
            failures++;                                          \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                        \
            fprintf(stderr, "\n");                               \
        }                                                        \
    } while (0)

enum { N_TRAIN = 37, N_TEST = 11, H = 5, W = 6, C = 3, K = 4 };

// Pixel values that identify their image: channel 0 of pixel (0, 0) is the image's index.
static uint8_t pixel(int64_t i, int y, int x, int c) {
    if (y == 0 && x == 0 && c == 0) return (uint8_t)i;
    return (uint8_t)((i * 31 + y * 17 + x * 7 + c * 101) % 256);
}

static void fill(ImageArray *a, int64_t n, int64_t base) {
    a->n = n, a->H = H, a->W = W, a->C = C;
    a->pixels = xmalloc((size_t)(n * H * W * C));
    a->labels = xmalloc(sizeof(int32_t) * (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int c = 0; c < C; c++)
                    a->pixels[((i * H + y) * W + x) * C + c] = pixel(base + i, y, x, c);
        a->labels[i] = (int32_t)((base + i) % K);
    }
}

static Loader *open_set(const char *dir, uint64_t seed, int crop_pad, int hflip, int rank,
                        int world) {
    DataOptions o;
    memset(&o, 0, sizeof(o));
    snprintf(o.path, sizeof(o.path), "%s", dir);
    snprintf(o.eval_split, sizeof(o.eval_split), "test");
    o.seed = seed, o.crop_pad = crop_pad, o.hflip = hflip, o.verify = 1;
    char err[1400];
    Loader *l = loader_open(&o, rank, world, err, sizeof(err));
    if (!l) fprintf(stderr, "loader_open: %s\n", err);
    return l;
}

int main(int argc, char **argv) {
    h5_process_init();
    h5_setup(0);
    const char *dir = argc > 1 ? argv[1] : "test_images_dir";
    if (mkdir_p(dir)) {
        fprintf(stderr, "cannot create %s\n", dir);
        return 1;
    }
    ImageArray train, test;
    fill(&train, N_TRAIN, 0);
    fill(&test, N_TEST, 1000);
    ImageClasses cls = {0};
    cls.num_classes = K;
    cls.class_names = xcalloc(K, sizeof(char *));
    const char *names[K] = {"cat", "dog", "ship", "frog"};
    for (int k = 0; k < K; k++) cls.class_names[k] = strdup(names[k]);
    image_stats(&train, cls.mean, cls.std);
    Manifest m = {0};
    char err[1400];
    // Two training shards: the set is read across shard boundaries.
    if (image_shards_write(dir, "train", &train, &cls, 20, 0, &m, err, sizeof(err)) ||
        image_shards_write(dir, "test", &test, &cls, 1 << 20, 3, &m, err, sizeof(err)) ||
        manifest_write(dir, &m, err, sizeof(err))) {
        fprintf(stderr, "write: %s\n", err);
        return 1;
    }
    manifest_free(&m);
    CHECK(m.n == 0, "manifest freed");

    // Normalisation: exact against the double formula, float-rounded.
    double mean[C], std[C];
    {
        double s[C] = {0}, q[C] = {0};
        for (int64_t i = 0; i < N_TRAIN * H * W; i++)
            for (int c = 0; c < C; c++) {
                double v = train.pixels[i * C + c] / 255.0;
                s[c] += v, q[c] += v * v;
            }
        for (int c = 0; c < C; c++) {
            mean[c] = s[c] / (N_TRAIN * H * W);
            std[c] = sqrt(q[c] / (N_TRAIN * H * W) - mean[c] * mean[c]);
            CHECK(fabs(mean[c] - cls.mean[c]) < 1e-12 && fabs(std[c] - cls.std[c]) < 1e-12,
                  "channel %d: mean %.15f std %.15f, image_stats %.15f %.15f", c, mean[c], std[c],
                  cls.mean[c], cls.std[c]);
        }
    }
    const size_t IMG = H * W * C;
    Loader *l = open_set(dir, 7, 2, 1, 0, 1);
    if (!l) return 1;
    ImageGeom g = loader_image_geom(l);
    CHECK(loader_is_images(l) && g.height == H && g.width == W && g.channels == C &&
              g.num_classes == K,
          "geometry %dx%dx%d, %d classes", g.height, g.width, g.channels, g.num_classes);
    CHECK(!strcmp(loader_class_name(l, 2), "ship"), "class 2 is '%s'", loader_class_name(l, 2));
    CHECK(loader_train_size(l) == N_TRAIN && loader_eval_size(l, EVAL_TEST) == N_TEST,
          "sizes %lld %lld", (long long)loader_train_size(l),
          (long long)loader_eval_size(l, EVAL_TEST));
    {  // the token path refuses image shards
        int ids[4], targets[4];
        CHECK(loader_train(l, 0, 1, ids, targets, NULL, err, sizeof(err)) == -1 &&
                  strstr(err, "image shards"),
              "loader_train on images: '%s'", err);
    }

    // Eval: stored order, normalised, never augmented (crop_pad and hflip are set).
    float *px = xmalloc(sizeof(float) * IMG * 64), *px2 = xmalloc(sizeof(float) * IMG * 64);
    int lab[64], lab2[64];
    CHECK(!loader_eval_images(l, EVAL_TEST, 0, N_TEST, px, lab, err, sizeof(err)), "eval: %s", err);
    int eval_bad = 0;
    for (int64_t i = 0; i < N_TEST; i++) {
        eval_bad += lab[i] != (int)((1000 + i) % K);
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int c = 0; c < C; c++) {
                    float want = (float)((pixel(1000 + i, y, x, c) / 255.0 - mean[c]) / std[c]);
                    float got = px[i * IMG + (y * W + x) * C + c];
                    eval_bad += fabsf(got - want) > 1e-6f * (1 + fabsf(want));
                }
    }
    CHECK(eval_bad == 0, "%d eval values differ from (x/255 - mean)/std", eval_bad);
    CHECK(loader_eval_images(l, EVAL_TEST, N_TEST - 1, 2, px, lab, err, sizeof(err)) == -1,
          "eval past the end accepted");

    // Training: (seed, position) -> the same batch for 1 rank and for 2 ranks' halves, read in
    // any chunking; positions [e*n, (e+1)*n) hold each image once.
    enum { P = 3 * N_TRAIN };
    float *all = xmalloc(sizeof(float) * IMG * P);
    int all_lab[P];
    CHECK(!loader_train_images(l, 0, P, all, all_lab, err, sizeof(err)), "train: %s", err);
    Loader *r0 = open_set(dir, 7, 2, 1, 0, 2), *r1 = open_set(dir, 7, 2, 1, 1, 2);
    int det_bad = 0;
    for (int64_t step = 0; step * 16 < P; step++) {
        int64_t first = step * 16, count = P - first < 16 ? P - first : 16, half = count / 2;
        loader_train_images(r0, first, half, px, lab, err, sizeof(err));
        loader_train_images(r1, first + half, count - half, px + half * IMG, lab + half, err,
                            sizeof(err));
        det_bad += memcmp(px, all + first * IMG, sizeof(float) * IMG * (size_t)count) != 0;
        det_bad += memcmp(lab, all_lab + first, sizeof(int) * (size_t)count) != 0;
    }
    CHECK(det_bad == 0, "%d batches differ between 1 and 2 ranks", det_bad);
    loader_close(r0), loader_close(r1);

    // The explicit transform: image i (from the keyed shuffle) normalised, zero-padded by 2,
    // the H x W window at (oy, ox) cut out, then mirrored when flip.
    enum { PAD = 2 };
    int aug_bad = 0, flips = 0, crops = 0, changed = 0;
    float padded[(H + 2 * PAD) * (W + 2 * PAD) * C];
    for (int64_t p = 0; p < P; p++) {
        int64_t n = N_TRAIN, epoch = p / n;
        int64_t i = (int64_t)shuffle_index((uint64_t)(p % n), (uint64_t)n, shuffle_key(7, epoch));
        int oy, ox, flip;
        image_augment_draw(7, p, PAD, 1, &oy, &ox, &flip);
        memset(padded, 0, sizeof(padded));
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int c = 0; c < C; c++)
                    padded[((y + PAD) * (W + 2 * PAD) + x + PAD) * C + c] =
                        (float)((pixel(i, y, x, c) / 255.0 - mean[c]) / std[c]);
        const float *got = all + p * IMG;
        int differs_from_plain = 0;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int c = 0; c < C; c++) {
                    int cx = flip ? W - 1 - x : x;
                    float want = padded[((y + oy) * (W + 2 * PAD) + cx + ox) * C + c];
                    float v = got[(y * W + x) * C + c];
                    aug_bad += fabsf(v - want) > 1e-6f * (1 + fabsf(want));
                    float plain = padded[((y + PAD) * (W + 2 * PAD) + x + PAD) * C + c];
                    differs_from_plain += v != plain;
                }
        aug_bad += all_lab[p] != (int)(i % K);
        flips += flip, crops += oy != PAD || ox != PAD;
        changed += differs_from_plain > 0;
    }
    CHECK(aug_bad == 0, "%d augmented values differ from the explicit transform", aug_bad);
    CHECK(flips > P / 4 && flips < 3 * P / 4 && crops > P / 2 && changed > P / 2,
          "augmentation: %d flips, %d shifted crops, %d changed images of %d", flips, crops,
          changed, P);
    loader_close(l);

    // Without augmentation: every epoch a permutation of the images, different per epoch, and
    // pixels exactly the normalised stored ones.
    l = open_set(dir, 7, 0, 0, 0, 1);
    CHECK(!loader_train_images(l, 0, P, all, all_lab, err, sizeof(err)), "train: %s", err);
    int perm_bad = 0, same_order = 1;
    for (int e = 0; e < 3; e++) {
        int seen[N_TRAIN] = {0};
        for (int j = 0; j < N_TRAIN; j++) {
            // Channel 0 of pixel (0, 0) holds the index: undo the normalisation.
            float v = all[(size_t)(e * N_TRAIN + j) * IMG];
            int idx = (int)lrint((v * std[0] + mean[0]) * 255.0);
            if (idx < 0 || idx >= N_TRAIN || seen[idx]++) perm_bad++;
            if (e == 1 && idx != (int)lrint((all[(size_t)j * IMG] * std[0] + mean[0]) * 255.0))
                same_order = 0;
        }
    }
    CHECK(perm_bad == 0, "%d repeats within an epoch", perm_bad);
    CHECK(!same_order, "epochs 0 and 1 have the same order");
    loader_close(l);

    // Another seed, another order.
    l = open_set(dir, 8, 0, 0, 0, 1);
    loader_train_images(l, 0, N_TRAIN, px2, lab2, err, sizeof(err));
    CHECK(memcmp(px2, all, sizeof(float) * IMG * 16) != 0, "seeds 7 and 8 gave the same order");
    loader_close(l);

    // A crop larger than the image is refused.
    DataOptions o;
    memset(&o, 0, sizeof(o));
    snprintf(o.path, sizeof(o.path), "%s", dir);
    o.crop_pad = 9;
    CHECK(!loader_open(&o, 0, 1, err, sizeof(err)) && strstr(err, "data.crop_pad"),
          "crop_pad 9 on 5x6 images: '%s'", err);

    free(px), free(px2), free(all);
    image_array_free(&train), image_array_free(&test), image_classes_free(&cls);
    if (failures) {
        fprintf(stderr, "test_images: %d failure(s)\n", failures);
        return 1;
    }
    printf(
        "test_images: ok (normalisation, eval, determinism over ranks, permutations, crop and "
        "flip against the explicit transform: %d flips, %d shifted crops of %d)\n",
        flips, crops, P);
    return 0;
}
