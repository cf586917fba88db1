// CIFAR (python pickles and the binary format) and folders of PNG / JPEG files for
// `madtrain prep images`. PNG is decoded by libpng, JPEG by libjpeg(-turbo): never by hand.
#include "image_sources.h"

#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "util.h"
#ifdef MT_WITH_PNG
#include <png.h>
#endif
#ifdef MT_WITH_JPEG
#include <jpeglib.h>  // after stdio.h, which it needs
// clang-format off
#include <jerror.h>  // after jpeglib.h
// clang-format on
#endif

static int is_file(const char *path) {
    struct stat st;
    return !stat(path, &st) && S_ISREG(st.st_mode);
}

static int is_dir(const char *path) {
    struct stat st;
    return !stat(path, &st) && S_ISDIR(st.st_mode);
}

// ---- CIFAR --------------------------------------------------------------------------------
// Appends n CIFAR rows (label(s) then 3072 bytes: the red, green and blue 32x32 planes) to a
// as HWC pixels.
static void append_chw(ImageArray *a, const uint8_t *chw, const int32_t *labels, int64_t n) {
    a->H = a->W = 32, a->C = 3;
    a->pixels = xrealloc(a->pixels, (size_t)(a->n + n) * 3072 + 1);
    a->labels = xrealloc(a->labels, sizeof(int32_t) * (size_t)(a->n + n + 1));
    for (int64_t i = 0; i < n; i++) {
        uint8_t *dst = a->pixels + (size_t)(a->n + i) * 3072;
        const uint8_t *src = chw + (size_t)i * 3072;
        for (int p = 0; p < 1024; p++)
            for (int c = 0; c < 3; c++) dst[p * 3 + c] = src[c * 1024 + p];
        a->labels[a->n + i] = labels[i];
    }
    a->n += n;
}

static int check_labels(const char *path, const int32_t *labels, int64_t n, int k, char *err,
                        size_t errlen) {
    for (int64_t i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= k) {
            snprintf(err, errlen, "%s: label %d of image %lld is outside [0, %d)", path, labels[i],
                     (long long)i, k);
            return -1;
        }
    return 0;
}

static int cifar_pickle(const char *path, const char *label_key, int k, ImageArray *a, char *err,
                        size_t errlen) {
    unsigned char *buf;
    size_t len;
    if (read_whole_file(path, &buf, &len, err, errlen)) return -1;
    PickleBatch b;
    int rc = pickle_read_cifar(buf, len, path, label_key, NULL, &b, err, errlen);
    free(buf);
    if (!rc) rc = check_labels(path, b.labels, b.n, k, err, errlen);
    if (!rc) append_chw(a, b.data, b.labels, b.n);
    pickle_batch_free(&b);
    return rc;
}

// Binary records: `label_bytes` label bytes (CIFAR-100: coarse, fine) then 3072 pixel bytes.
static int cifar_bin(const char *path, int label_bytes, int which, int k, ImageArray *a, char *err,
                     size_t errlen) {
    unsigned char *buf;
    size_t len, rec = 3072 + (size_t)label_bytes;
    if (read_whole_file(path, &buf, &len, err, errlen)) return -1;
    if (len == 0 || len % rec) {
        snprintf(err, errlen,
                 "%s: %zu bytes is not a whole number of %zu-byte CIFAR-%s records (truncated?)",
                 path, len, rec, label_bytes == 1 ? "10" : "100");
        free(buf);
        return -1;
    }
    int64_t n = (int64_t)(len / rec);
    uint8_t *chw = xmalloc((size_t)n * 3072);
    int32_t *labels = xmalloc(sizeof(int32_t) * (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        labels[i] = buf[(size_t)i * rec + (size_t)which];
        memcpy(chw + (size_t)i * 3072, buf + (size_t)i * rec + (size_t)label_bytes, 3072);
    }
    free(buf);
    int rc = check_labels(path, labels, n, k, err, errlen);
    if (!rc) append_chw(a, chw, labels, n);
    free(chw), free(labels);
    return rc;
}

// Class names: a text file of one name a line (binary distribution), blank lines ignored.
static int names_txt(const char *path, ImageSource *s, int k, char *err, size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;  // optional
    char line[512];
    s->class_names = xcalloc((size_t)k, sizeof(char *));
    int n = 0, rc = 0;
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0]) continue;
        if (n == k) {
            snprintf(err, errlen, "%s: more than the %d class names the data has", path, k);
            rc = -1;
            break;
        }
        s->class_names[n++] = strdup(line);
    }
    fclose(f);
    s->num_classes = k;
    if (!rc && n != k) {
        snprintf(err, errlen, "%s: %d class names for %d classes", path, n, k);
        rc = -1;
    }
    return rc;
}

static int names_pickle(const char *path, const char *key, ImageSource *s, int k, char *err,
                        size_t errlen) {
    if (!is_file(path)) return 0;  // optional
    unsigned char *buf;
    size_t len;
    if (read_whole_file(path, &buf, &len, err, errlen)) return -1;
    PickleBatch b;
    int rc = pickle_read_cifar(buf, len, path, NULL, key, &b, err, errlen);
    free(buf);
    if (rc) return -1;
    if (b.n_names != k) {
        snprintf(err, errlen, "%s: '%s' names %d classes, the data has %d", path, key, b.n_names,
                 k);
        pickle_batch_free(&b);
        return -1;
    }
    s->class_names = b.names, s->num_classes = k;
    b.names = NULL, b.n_names = 0;
    pickle_batch_free(&b);
    return 0;
}

int image_source_cifar(const char *path, int coarse, ImageSource *s, char *err, size_t errlen) {
    memset(s, 0, sizeof(*s));
    char p[1200], q[1200];
    int rc = 0;
    const char *k100 = coarse ? "coarse_labels" : "fine_labels";
    int n100 = coarse ? 20 : 100;
    if (is_file(path)) {  // one batch file: its images, no split of its own
        size_t len = strlen(path);
        int bin = len > 4 && !strcmp(path + len - 4, ".bin");
        const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        int is100 = !strcmp(base, "train.bin") || !strcmp(base, "test.bin") ||
                    !strcmp(base, "train") || !strcmp(base, "test");
        s->num_classes = 0;
        rc = bin ? cifar_bin(path, is100 ? 2 : 1, is100 && !coarse ? 1 : 0, is100 ? n100 : 10,
                             &s->train, err, errlen)
                 : cifar_pickle(path, is100 ? k100 : "labels", is100 ? n100 : 10, &s->train, err,
                                errlen);
        s->num_classes = is100 ? n100 : 10;
        if (rc) image_source_free(s);
        return rc;
    }
    if (!is_dir(path)) {
        snprintf(err, errlen, "%s: no such file or folder", path);
        return -1;
    }
    s->has_test = 1;
    snprintf(p, sizeof(p), "%s/data_batch_1", path);
    snprintf(q, sizeof(q), "%s/data_batch_1.bin", path);
    if (is_file(p) || is_file(q)) {  // CIFAR-10: data_batch_1..5 and test_batch
        int bin = !is_file(p);
        s->num_classes = 10;
        for (int i = 1; !rc; i++) {
            snprintf(p, sizeof(p), "%s/data_batch_%d%s", path, i, bin ? ".bin" : "");
            if (!is_file(p)) break;
            rc = bin ? cifar_bin(p, 1, 0, 10, &s->train, err, errlen)
                     : cifar_pickle(p, "labels", 10, &s->train, err, errlen);
        }
        snprintf(p, sizeof(p), "%s/test_batch%s", path, bin ? ".bin" : "");
        if (!rc)
            rc = bin ? cifar_bin(p, 1, 0, 10, &s->test, err, errlen)
                     : cifar_pickle(p, "labels", 10, &s->test, err, errlen);
        snprintf(p, sizeof(p), "%s/batches.meta%s", path, bin ? ".txt" : "");
        if (!rc)
            rc = bin ? names_txt(p, s, 10, err, errlen)
                     : names_pickle(p, "label_names", s, 10, err, errlen);
    } else {
        snprintf(p, sizeof(p), "%s/train", path);
        snprintf(q, sizeof(q), "%s/train.bin", path);
        if (!is_file(p) && !is_file(q)) {
            snprintf(err, errlen,
                     "%s: no CIFAR batches here (data_batch_1, data_batch_1.bin, train or "
                     "train.bin)",
                     path);
            return -1;
        }
        int bin = !is_file(p);  // CIFAR-100: train and test, coarse then fine label
        s->num_classes = n100;
        rc = bin ? cifar_bin(q, 2, coarse ? 0 : 1, n100, &s->train, err, errlen)
                 : cifar_pickle(p, k100, n100, &s->train, err, errlen);
        snprintf(p, sizeof(p), "%s/test%s", path, bin ? ".bin" : "");
        if (!rc)
            rc = bin ? cifar_bin(p, 2, coarse ? 0 : 1, n100, &s->test, err, errlen)
                     : cifar_pickle(p, k100, n100, &s->test, err, errlen);
        if (!rc && bin) {
            snprintf(p, sizeof(p), "%s/%s_label_names.txt", path, coarse ? "coarse" : "fine");
            rc = names_txt(p, s, n100, err, errlen);
        } else if (!rc) {
            snprintf(p, sizeof(p), "%s/meta", path);
            rc = names_pickle(p, coarse ? "coarse_label_names" : "fine_label_names", s, n100, err,
                              errlen);
        }
    }
    if (!rc && s->train.n == 0) {
        snprintf(err, errlen, "%s: no training images", path);
        rc = -1;
    }
    if (rc) image_source_free(s);
    return rc;
}

// ---- PNG and JPEG -------------------------------------------------------------------------
#ifdef MT_WITH_PNG
static int decode_png(const unsigned char *buf, size_t len, const char *path, uint8_t **pixels,
                      int *h, int *w, int *c, char *err, size_t errlen) {
    png_image img;
    memset(&img, 0, sizeof(img));
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&img, buf, len)) {
        snprintf(err, errlen, "%s: not a readable PNG: %s", path, img.message);
        return -1;
    }
    // 8-bit grey or RGB; alpha is dropped (composited onto black by libpng).
    int colour = (img.format & PNG_FORMAT_FLAG_COLOR) != 0;
    img.format = colour ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
    *pixels = xmalloc(PNG_IMAGE_SIZE(img));
    if (!png_image_finish_read(&img, NULL, *pixels, 0, NULL)) {
        snprintf(err, errlen, "%s: damaged PNG (truncated?): %s", path, img.message);
        free(*pixels);
        *pixels = NULL;
        png_image_free(&img);
        return -1;
    }
    *h = (int)img.height, *w = (int)img.width, *c = colour ? 3 : 1;
    return 0;
}

#else
static int decode_png(const unsigned char *buf, size_t len, const char *path, uint8_t **pixels,
                      int *h, int *w, int *c, char *err, size_t errlen) {
    (void)buf, (void)len, (void)pixels, (void)h, (void)w, (void)c;
    snprintf(err, errlen,
             "%s: a PNG, but madtrain was built without libpng (install libpng-dev "
             "and rebuild)",
             path);
    return -1;
}
#endif

#ifdef MT_WITH_JPEG
typedef struct {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
} JpegErr;

static void jpeg_fail(j_common_ptr ci) {
    JpegErr *e = (JpegErr *)ci->err;
    (*ci->err->format_message)(ci, e->msg);
    longjmp(e->jump, 1);
}

// libjpeg only warns about a truncated file (and fills the rest grey): that warning is an
// error here, so no half image reaches the shards. Its other warnings (extraneous bytes
// before a marker, which some photo collections have) leave the image intact and are let be.
static void jpeg_warn(j_common_ptr ci, int level) {
    if (level < 0 && ci->err->msg_code == JWRN_JPEG_EOF) jpeg_fail(ci);
}

static int decode_jpeg(const unsigned char *buf, size_t len, const char *path, uint8_t **pixels,
                       int *h, int *w, int *c, char *err, size_t errlen) {
    struct jpeg_decompress_struct ci;
    JpegErr je;
    uint8_t *volatile out = NULL;
    ci.err = jpeg_std_error(&je.mgr);
    je.mgr.error_exit = jpeg_fail;
    je.mgr.emit_message = jpeg_warn;
    if (setjmp(je.jump)) {
        snprintf(err, errlen, "%s: damaged JPEG (truncated?): %s", path, je.msg);
        jpeg_destroy_decompress(&ci);
        free(out);
        return -1;
    }
    jpeg_create_decompress(&ci);
    jpeg_mem_src(&ci, buf, (unsigned long)len);
    jpeg_read_header(&ci, TRUE);
    if (ci.num_components != 1 && ci.num_components != 3) {
        snprintf(err, errlen, "%s: a JPEG of %d components (grey or colour only)", path,
                 ci.num_components);
        jpeg_destroy_decompress(&ci);
        return -1;
    }
    ci.out_color_space = ci.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&ci);
    size_t row = (size_t)ci.output_width * (size_t)ci.output_components;
    out = xmalloc(row * ci.output_height + 1);
    while (ci.output_scanline < ci.output_height) {
        JSAMPROW r = out + row * ci.output_scanline;
        jpeg_read_scanlines(&ci, &r, 1);
    }
    jpeg_finish_decompress(&ci);
    *h = (int)ci.output_height, *w = (int)ci.output_width, *c = ci.output_components;
    jpeg_destroy_decompress(&ci);
    *pixels = out;
    return 0;
}

#else
static int decode_jpeg(const unsigned char *buf, size_t len, const char *path, uint8_t **pixels,
                       int *h, int *w, int *c, char *err, size_t errlen) {
    (void)buf, (void)len, (void)pixels, (void)h, (void)w, (void)c;
    snprintf(err, errlen,
             "%s: a JPEG, but madtrain was built without libjpeg (install "
             "libjpeg62-turbo-dev and rebuild)",
             path);
    return -1;
}
#endif

int image_decode(const unsigned char *buf, size_t len, const char *path, uint8_t **pixels, int *h,
                 int *w, int *c, char *err, size_t errlen) {
    *pixels = NULL;
    if (len >= 8 && !memcmp(buf, "\x89PNG\r\n\x1a\n", 8))
        return decode_png(buf, len, path, pixels, h, w, c, err, errlen);
    if (len >= 3 && buf[0] == 0xFF && buf[1] == 0xD8 && buf[2] == 0xFF)
        return decode_jpeg(buf, len, path, pixels, h, w, c, err, errlen);
    snprintf(err, errlen, "%s: not a PNG or JPEG image", path);
    return -1;
}

// ---- folders of class folders -------------------------------------------------------------
typedef struct {
    char **v;
    int n, cap;
} Names;

static void names_add(Names *l, const char *s) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->v = xrealloc(l->v, sizeof(char *) * (size_t)l->cap);
    }
    l->v[l->n++] = strdup(s);
}

static void names_free(Names *l) {
    for (int i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

// The entries of dir (not hidden), folders or files, sorted bytewise: the same order on
// every machine.
static int list_dir(const char *dir, int want_dirs, Names *out, char *err, size_t errlen) {
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "%s: cannot open folder: %s", dir, strerror(errno));
        return -1;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char p[1400];
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        if (want_dirs ? is_dir(p) : !is_dir(p)) names_add(out, e->d_name);
    }
    closedir(d);
    if (out->n) qsort(out->v, (size_t)out->n, sizeof(char *), cmp_str);
    return 0;
}

// Decoded images of one split before they are stacked: sizes checked as they come.
typedef struct {
    ImageArray *a;
    uint8_t **img;
    int *chan;
    int64_t n, cap;
    char first[1400];  // the first image's path, named when another differs in size
} Collect;

static int add_file(Collect *col, const char *path, int label, char *err, size_t errlen) {
    unsigned char *buf;
    size_t len;
    if (read_whole_file(path, &buf, &len, err, errlen)) return -1;
    uint8_t *px;
    int h, w, c;
    int rc = image_decode(buf, len, path, &px, &h, &w, &c, err, errlen);
    free(buf);
    if (rc) return -1;
    ImageArray *a = col->a;
    if (col->n == 0 && !a->H) {
        a->H = h, a->W = w;
        snprintf(col->first, sizeof(col->first), "%s", path);
    } else if (h != a->H || w != a->W) {
        snprintf(err, errlen, "%s is %dx%d but %s is %dx%d: the images of a set must have one size",
                 path, w, h, col->first, a->W, a->H);
        free(px);
        return -1;
    }
    if (col->n == col->cap) {
        col->cap = col->cap ? 2 * col->cap : 1024;
        col->img = xrealloc(col->img, sizeof(uint8_t *) * (size_t)col->cap);
        col->chan = xrealloc(col->chan, sizeof(int) * (size_t)col->cap);
        a->labels = xrealloc(a->labels, sizeof(int32_t) * (size_t)col->cap);
    }
    col->img[col->n] = px, col->chan[col->n] = c;
    a->labels[col->n++] = label;
    return 0;
}

// Stacks the decoded images: grey ones become R = G = B in a set with any colour image.
static void collect_end(Collect *col, int channels) {
    ImageArray *a = col->a;
    size_t hw = (size_t)a->H * (size_t)a->W;
    a->n = col->n, a->C = channels;
    a->pixels = xmalloc(hw * (size_t)channels * (size_t)col->n + 1);
    for (int64_t i = 0; i < col->n; i++) {
        uint8_t *dst = a->pixels + hw * (size_t)channels * (size_t)i;
        for (size_t p = 0; p < hw; p++)
            for (int c = 0; c < channels; c++)
                dst[p * (size_t)channels + (size_t)c] =
                    col->chan[i] == 1 ? col->img[i][p] : col->img[i][p * 3 + (size_t)c];
        free(col->img[i]);
    }
    free(col->img), free(col->chan);
    col->img = NULL, col->chan = NULL;
}

static void collect_abandon(Collect *col) {
    for (int64_t i = 0; i < col->n; i++) free(col->img[i]);
    free(col->img), free(col->chan);
    col->img = NULL, col->chan = NULL;
}

static int class_index(const Names *classes, const char *name) {
    for (int i = 0; i < classes->n; i++)
        if (!strcmp(classes->v[i], name)) return i;
    return -1;
}

// Every file in dir/<class>[/sub] for each class of `classes` (tiny: images under
// <class>/images/), labelled by the class's index.
static int read_class_folders(const char *dir, const Names *classes, const char *sub, Collect *col,
                              char *err, size_t errlen) {
    Names found = {0};
    if (list_dir(dir, 1, &found, err, errlen)) return -1;
    int rc = 0;
    for (int i = 0; i < found.n && !rc; i++)
        if (class_index(classes, found.v[i]) < 0) {
            snprintf(err, errlen, "%s/%s: a class the training split does not have", dir,
                     found.v[i]);
            rc = -1;
        }
    for (int k = 0; k < classes->n && !rc; k++) {
        char cdir[1400];
        snprintf(cdir, sizeof(cdir), "%s/%s%s%s", dir, classes->v[k], sub ? "/" : "",
                 sub ? sub : "");
        if (!is_dir(cdir)) continue;  // a class without images in this split
        Names files = {0}, subdirs = {0};
        rc = list_dir(cdir, 0, &files, err, errlen) || list_dir(cdir, 1, &subdirs, err, errlen);
        if (!rc && subdirs.n) {
            snprintf(err, errlen, "%s/%s: a folder inside a class folder (images only there)", cdir,
                     subdirs.v[0]);
            rc = -1;
        }
        for (int f = 0; f < files.n && !rc; f++) {
            char p[2900];
            snprintf(p, sizeof(p), "%s/%s", cdir, files.v[f]);
            rc = add_file(col, p, k, err, errlen);
        }
        names_free(&files), names_free(&subdirs);
    }
    names_free(&found);
    return rc;
}

// Tiny ImageNet's val/val_annotations.txt: "<file>\t<wnid>\t<box>" a line.
static int read_tiny_val(const char *root, const Names *classes, Collect *col, char *err,
                         size_t errlen) {
    char p[1400];
    snprintf(p, sizeof(p), "%s/val/val_annotations.txt", root);
    FILE *f = fopen(p, "r");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", p, strerror(errno));
        return -1;
    }
    char line[1024];
    int rc = 0, lineno = 0;
    while (!rc && fgets(line, sizeof(line), f)) {
        lineno++;
        char file[512], wnid[128];
        if (sscanf(line, "%511s %127s", file, wnid) != 2) continue;
        int k = class_index(classes, wnid);
        if (k < 0) {
            snprintf(err, errlen, "%s:%d: class %s is not among the training classes", p, lineno,
                     wnid);
            rc = -1;
            break;
        }
        char img[2000];
        snprintf(img, sizeof(img), "%s/val/images/%s", root, file);
        rc = add_file(col, img, k, err, errlen);
    }
    fclose(f);
    return rc;
}

static int channels_of(const Collect *a, const Collect *b) {
    int c = 1;
    for (int64_t i = 0; i < a->n; i++) c = a->chan[i] > c ? a->chan[i] : c;
    for (int64_t i = 0; b && i < b->n; i++) c = b->chan[i] > c ? b->chan[i] : c;
    return c;
}

int image_source_folder(const char *path, ImageSource *s, char *err, size_t errlen) {
    memset(s, 0, sizeof(*s));
    if (!is_dir(path)) {
        snprintf(err, errlen, "%s: not a folder", path);
        return -1;
    }
    char train_dir[1400], test_dir[1400] = "", p[1400];
    snprintf(train_dir, sizeof(train_dir), "%s/train", path);
    snprintf(p, sizeof(p), "%s/val/val_annotations.txt", path);
    int tiny = is_file(p) && is_dir(train_dir);
    if (!tiny && is_dir(train_dir)) {
        const char *held[] = {"test", "val"};
        for (int i = 0; i < 2 && !test_dir[0]; i++) {
            snprintf(p, sizeof(p), "%s/%s", path, held[i]);
            if (is_dir(p)) snprintf(test_dir, sizeof(test_dir), "%s", p);
        }
    } else if (!tiny) {
        snprintf(train_dir, sizeof(train_dir), "%s", path);  // class folders, no split
    }
    Names classes = {0};
    if (list_dir(train_dir, 1, &classes, err, errlen)) return -1;
    if (classes.n == 0) {
        snprintf(err, errlen, "%s: no class folders (expected %s/<class>/*.png|jpg)", train_dir,
                 train_dir);
        names_free(&classes);
        return -1;
    }
    Collect tr = {.a = &s->train}, te = {.a = &s->test};
    int rc = read_class_folders(train_dir, &classes, tiny ? "images" : NULL, &tr, err, errlen);
    s->has_test = tiny || test_dir[0];
    if (!rc && tiny) {
        te.a->H = s->train.H, te.a->W = s->train.W;
        snprintf(te.first, sizeof(te.first), "%s", tr.first);
        rc = read_tiny_val(path, &classes, &te, err, errlen);
    } else if (!rc && test_dir[0]) {
        te.a->H = s->train.H, te.a->W = s->train.W;
        snprintf(te.first, sizeof(te.first), "%s", tr.first);
        rc = read_class_folders(test_dir, &classes, NULL, &te, err, errlen);
    }
    if (!rc && tr.n == 0) {
        snprintf(err, errlen, "%s: no images in its class folders", train_dir);
        rc = -1;
    }
    if (rc) {
        collect_abandon(&tr), collect_abandon(&te);
        names_free(&classes);
        image_source_free(s);
        return -1;
    }
    int channels = channels_of(&tr, &te);
    collect_end(&tr, channels);
    collect_end(&te, channels);
    s->test.H = s->train.H, s->test.W = s->train.W;
    s->num_classes = classes.n, s->class_names = classes.v;  // the folder names, sorted
    return 0;
}
