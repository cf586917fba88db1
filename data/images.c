// Image shards (image_set.h): the writer prep uses, the reader that loads a split into memory,
// and the loader's image side (keyed shuffle, normalisation, augmentation). Every HDF5 call
// sequence runs under the process-wide HDF5 lock (h5util.h).
#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "../kernels/rng.h"
#include "h5util.h"
#include "image_set.h"
#include "reader.h"
#include "util.h"

void image_array_free(ImageArray *a) {
    free(a->pixels), free(a->labels);
    memset(a, 0, sizeof(*a));
}

void image_classes_free(ImageClasses *c) {
    for (int i = 0; c->class_names && i < c->num_classes; i++) free(c->class_names[i]);
    free(c->class_names);
    memset(c, 0, sizeof(*c));
}

void image_stats(const ImageArray *a, double *mean, double *std) {
    int C = a->C;
    uint64_t sum[IMAGE_MAX_CHANNELS] = {0}, sq[IMAGE_MAX_CHANNELS] = {0};
    size_t pixels = (size_t)a->n * (size_t)a->H * (size_t)a->W;
    for (size_t i = 0; i < pixels; i++)
        for (int c = 0; c < C; c++) {
            uint64_t v = a->pixels[i * (size_t)C + (size_t)c];
            sum[c] += v, sq[c] += v * v;
        }
    for (int c = 0; c < C; c++) {
        double m = pixels ? (double)sum[c] / (double)pixels : 0;
        double var = pixels ? (double)sq[c] / (double)pixels - m * m : 0;
        mean[c] = m / 255.0;
        std[c] = sqrt(var > 0 ? var : 0) / 255.0;
    }
}

static uint32_t images_crc(const uint8_t *pixels, size_t pixel_bytes, const int32_t *labels,
                           int64_t n) {
    uLong crc = crc32_z(0, Z_NULL, 0);
    crc = crc32_z(crc, pixels, pixel_bytes);
    return (uint32_t)crc32_z(crc, (const Bytef *)labels, (size_t)n * sizeof(int32_t));
}

// ---- writing ----------------------------------------------------------------------------
static int write_attrs(hid_t f, const char *split, int64_t offset, const ImageClasses *cls, int C,
                       uint32_t checksum) {
    int64_t version = SHARDS_FORMAT_VERSION, k = cls->num_classes;
    int rc = h5_attr_write(f, "format_version", H5T_STD_I64LE, H5T_NATIVE_INT64, &version) ||
             h5_attr_write_utf8(f, "task", "images") || h5_attr_write_utf8(f, "split", split) ||
             h5_attr_write(f, "split_offset", H5T_STD_I64LE, H5T_NATIVE_INT64, &offset) ||
             h5_attr_write(f, "num_classes", H5T_STD_I64LE, H5T_NATIVE_INT64, &k) ||
             h5_attr_write(f, "checksum_crc32", H5T_STD_U32LE, H5T_NATIVE_UINT32, &checksum);
    if (rc) return -1;
    hsize_t nc = (hsize_t)C, nk = (hsize_t)cls->num_classes;
    const char *stat_names[2] = {"mean", "std"};
    const double *stats[2] = {cls->mean, cls->std};
    for (int i = 0; i < 2 && !rc; i++) {
        hid_t sp = H5Screate_simple(1, &nc, NULL);
        hid_t a = H5Acreate2(f, stat_names[i], H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
        rc = a < 0 || H5Awrite(a, H5T_NATIVE_DOUBLE, stats[i]) < 0;
        if (a >= 0) H5Aclose(a);
        H5Sclose(sp);
    }
    if (rc) return -1;
    // Variable-length UTF-8 strings, as h5py writes a list of str: they read back as str.
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t sp = H5Screate_simple(1, &nk, NULL);
    hid_t a = H5Acreate2(f, "class_names", t, sp, H5P_DEFAULT, H5P_DEFAULT);
    rc = a < 0 || H5Awrite(a, t, cls->class_names) < 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp), H5Tclose(t);
    return rc ? -1 : 0;
}

static hid_t create_dataset(hid_t f, const char *name, hid_t type, int rank, const hsize_t *dims,
                            int gzip) {
    hid_t sp = H5Screate_simple(rank, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
    if (gzip > 0 && dims[0] > 0) {
        // ~64 KB of data a chunk: a random image decompresses one chunk.
        hsize_t row = 1;
        for (int i = 1; i < rank; i++) row *= dims[i];
        hsize_t chunk[4] = {65536 / row + 1, rank > 1 ? dims[1] : 0, rank > 2 ? dims[2] : 0,
                            rank > 3 ? dims[3] : 0};
        if (chunk[0] > dims[0]) chunk[0] = dims[0];
        H5Pset_chunk(dcpl, rank, chunk);
        H5Pset_deflate(dcpl, (unsigned)gzip);
    }
    hid_t d = H5Dcreate2(f, name, type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl), H5Sclose(sp);
    return d;
}

static int write_shard(const char *path, const char *split, int64_t offset, const ImageArray *a,
                       int64_t first, int64_t count, const ImageClasses *cls, int gzip, char *err,
                       size_t errlen) {
    char partial[1300], cause[256];
    snprintf(partial, sizeof(partial), "%s.partial", path);
    size_t image_bytes = (size_t)a->H * (size_t)a->W * (size_t)a->C;
    const uint8_t *pixels = a->pixels + (size_t)first * image_bytes;
    const int32_t *labels = a->labels + first;
    uint32_t crc = images_crc(pixels, (size_t)count * image_bytes, labels, count);
    h5_lock();
    hid_t f = H5Fcreate(partial, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) {
        snprintf(err, errlen, "%s: cannot create: %s", partial, h5_cause(cause));
        h5_unlock();
        return -1;
    }
    hsize_t dims[4] = {(hsize_t)count, (hsize_t)a->H, (hsize_t)a->W, (hsize_t)a->C};
    hid_t di = create_dataset(f, "images", H5T_STD_U8LE, 4, dims, gzip);
    hid_t dl = create_dataset(f, "labels", H5T_STD_I32LE, 1, dims, gzip);
    int rc = di < 0 || dl < 0 ||
             (count > 0 &&
              (H5Dwrite(di, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, pixels) < 0 ||
               H5Dwrite(dl, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, labels) < 0)) ||
             write_attrs(f, split, offset, cls, a->C, crc);
    if (rc) snprintf(err, errlen, "%s: cannot write: %s", partial, h5_cause(cause));
    if (di >= 0) H5Dclose(di);
    if (dl >= 0) H5Dclose(dl);
    if (H5Fclose(f) < 0 && !rc) {
        snprintf(err, errlen, "%s: cannot close: %s", partial, h5_cause(cause));
        rc = -1;
    }
    h5_unlock();
    if (!rc && rename(partial, path)) {
        snprintf(err, errlen, "cannot rename %s to %s: %s", partial, path, strerror(errno));
        rc = -1;
    }
    if (rc) unlink(partial);
    return rc ? -1 : 0;
}

int image_shards_write(const char *out_dir, const char *split, const ImageArray *a,
                       const ImageClasses *cls, int64_t per_shard, int gzip, Manifest *m, char *err,
                       size_t errlen) {
    int shard = 0;
    for (int64_t first = 0; first < a->n || (a->n == 0 && shard == 0); shard++) {
        int64_t count = a->n - first < per_shard ? a->n - first : per_shard;
        char name[128], path[1200];
        snprintf(name, sizeof(name), "%s-%05d.h5", split, shard);
        snprintf(path, sizeof(path), "%s/%s", out_dir, name);
        if (write_shard(path, split, first, a, first, count, cls, gzip, err, errlen)) return -1;
        manifest_add(m, split, name, count);
        first += count;
        if (a->n == 0) break;
    }
    return 0;
}

// ---- reading ----------------------------------------------------------------------------
static hid_t open_ro(const char *path) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
#if H5_VERSION_GE(1, 10, 7)
    H5Pset_file_locking(fapl, 0, 1);  // no locks on NFS/Lustre (as shards.c)
#else
    setenv("HDF5_USE_FILE_LOCKING", "FALSE", 0);
#endif
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    return f;
}

int image_set_detect(const char *dir) {
    Manifest m;
    char err[1400];
    if (manifest_read(dir, &m, err, sizeof(err))) return 0;
    int found = 0;
    if (m.n > 0) {
        char path[1100];
        if (m.entries[0].file[0] == '/')
            snprintf(path, sizeof(path), "%s", m.entries[0].file);
        else
            snprintf(path, sizeof(path), "%s/%s", dir, m.entries[0].file);
        if (access(path, R_OK) == 0) {
            h5_lock();
            H5E_BEGIN_TRY {
                hid_t f = open_ro(path);
                if (f >= 0) {
                    found = H5Lexists(f, "images", H5P_DEFAULT) > 0;
                    H5Fclose(f);
                }
            }
            H5E_END_TRY;
            h5_unlock();
        }
    }
    manifest_free(&m);
    return found;
}

// A numeric attribute of n values read as doubles; -1 when missing or of another size.
static int attr_doubles(hid_t f, const char *name, double *out, int n) {
    if (H5Aexists(f, name) <= 0) return -1;
    hid_t a = H5Aopen(f, name, H5P_DEFAULT), t = a < 0 ? -1 : H5Aget_type(a);
    hid_t sp = a < 0 ? -1 : H5Aget_space(a);
    int ok = t >= 0 && sp >= 0 &&
             (H5Tget_class(t) == H5T_FLOAT || H5Tget_class(t) == H5T_INTEGER) &&
             H5Sget_simple_extent_npoints(sp) == n && H5Aread(a, H5T_NATIVE_DOUBLE, out) >= 0;
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    if (a >= 0) H5Aclose(a);
    return ok ? 0 : -1;
}

// class_names: a 1-D string attribute, variable-length (h5py's list of str) or fixed-length.
static char **attr_strings(hid_t f, const char *name, int n) {
    if (H5Aexists(f, name) <= 0) return NULL;
    hid_t a = H5Aopen(f, name, H5P_DEFAULT), ft = a < 0 ? -1 : H5Aget_type(a);
    hid_t sp = a < 0 ? -1 : H5Aget_space(a);
    char **out = NULL;
    if (ft >= 0 && sp >= 0 && H5Tget_class(ft) == H5T_STRING &&
        H5Sget_simple_extent_npoints(sp) == n && n > 0) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        if (H5Tis_variable_str(ft) > 0) {
            char **raw = xcalloc((size_t)n, sizeof(char *));
            H5Tset_size(mt, H5T_VARIABLE);
            H5Tset_cset(mt, H5Tget_cset(ft));
            if (H5Aread(a, mt, raw) >= 0) {
                out = xcalloc((size_t)n, sizeof(char *));
                for (int i = 0; i < n; i++) {
                    out[i] = strdup(raw[i] ? raw[i] : "");
                    if (raw[i]) H5free_memory(raw[i]);
                }
            }
            free(raw);
        } else {
            size_t len = H5Tget_size(ft);
            char *buf = xcalloc((size_t)n, len + 1);
            H5Tset_size(mt, len + 1);
            H5Tset_strpad(mt, H5T_STR_NULLTERM);
            if (H5Aread(a, mt, buf) >= 0) {
                out = xcalloc((size_t)n, sizeof(char *));
                for (int i = 0; i < n; i++) {
                    char *s = buf + (size_t)i * (len + 1);
                    for (size_t j = strlen(s); j > 0 && s[j - 1] == ' '; j--) s[j - 1] = 0;
                    out[i] = strdup(s);
                }
            }
            free(buf);
        }
        H5Tclose(mt);
    }
    if (ft >= 0) H5Tclose(ft);
    if (sp >= 0) H5Sclose(sp);
    if (a >= 0) H5Aclose(a);
    return out;
}

static int is_type(hid_t d, H5T_class_t cls, H5T_sign_t sign, size_t size) {
    hid_t t = H5Dget_type(d);
    int ok = H5Tget_class(t) == cls && H5Tget_size(t) == size &&
             (cls != H5T_INTEGER || H5Tget_sign(t) == sign);
    H5Tclose(t);
    return ok;
}

static int load_shard_locked(const char *path, int verify, ImageArray *a, ImageClasses *cls,
                             char split[64], char *err, size_t errlen) {
    char cause[256];
    memset(a, 0, sizeof(*a));
    memset(cls, 0, sizeof(*cls));
    if (access(path, R_OK)) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    hid_t f = open_ro(path);
    if (f < 0) {
        snprintf(err, errlen, "%s: not a readable HDF5 file (%s)", path, h5_cause(cause));
        return -1;
    }
    hid_t di = -1, dl = -1;
    int rc = -1;
    int64_t version = 0, k = 0, checksum = -1;
    char *split_attr = NULL;
    if (H5Lexists(f, "images", H5P_DEFAULT) <= 0 || H5Lexists(f, "labels", H5P_DEFAULT) <= 0) {
        snprintf(err, errlen, "%s: an image shard holds datasets 'images' and 'labels'", path);
        goto done;
    }
    if (h5_attr_read_i64(f, "format_version", &version) || version < 1 ||
        version > SHARDS_FORMAT_VERSION) {
        snprintf(err, errlen, "%s: attribute 'format_version' must be 1..%d", path,
                 SHARDS_FORMAT_VERSION);
        goto done;
    }
    if (h5_attr_read_i64(f, "num_classes", &k) || k < 1 || k > (1 << 24)) {
        snprintf(err, errlen, "%s: attribute 'num_classes' must be an integer in [1, 2^24]", path);
        goto done;
    }
    if (h5_attr_read_i64(f, "checksum_crc32", &checksum) || checksum < 0 ||
        checksum > 0xFFFFFFFFll) {
        snprintf(err, errlen, "%s: attribute 'checksum_crc32' must be a 32-bit CRC", path);
        goto done;
    }
    split_attr = h5_attr_read_str(f, "split");
    if (!split_attr || !split_attr[0] || strlen(split_attr) >= 64) {
        snprintf(err, errlen, "%s: attribute 'split' must be a non-empty string", path);
        goto done;
    }
    snprintf(split, 64, "%s", split_attr);
    cls->num_classes = (int)k;
    cls->class_names = attr_strings(f, "class_names", (int)k);
    if (!cls->class_names) {
        snprintf(err, errlen, "%s: attribute 'class_names' must hold num_classes (%lld) strings",
                 path, (long long)k);
        cls->num_classes = 0;
        goto done;
    }
    di = H5Dopen2(f, "images", H5P_DEFAULT);
    dl = H5Dopen2(f, "labels", H5P_DEFAULT);
    hid_t spi = di < 0 ? -1 : H5Dget_space(di), spl = dl < 0 ? -1 : H5Dget_space(dl);
    hsize_t dims[4] = {0}, nl = 0;
    int ranki = spi < 0 ? -1 : H5Sget_simple_extent_ndims(spi);
    int rankl = spl < 0 ? -1 : H5Sget_simple_extent_ndims(spl);
    if (ranki == 4) H5Sget_simple_extent_dims(spi, dims, NULL);
    if (rankl == 1) H5Sget_simple_extent_dims(spl, &nl, NULL);
    if (spi >= 0) H5Sclose(spi);
    if (spl >= 0) H5Sclose(spl);
    if (ranki != 4 || !is_type(di, H5T_INTEGER, H5T_SGN_NONE, 1)) {
        snprintf(err, errlen, "%s: dataset 'images' must be uint8 [N, H, W, C]", path);
        goto done;
    }
    if (rankl != 1 || nl != dims[0] || !is_type(dl, H5T_INTEGER, H5T_SGN_2, 4)) {
        snprintf(err, errlen, "%s: dataset 'labels' must be int32 [N] with N = %llu (the images)",
                 path, (unsigned long long)dims[0]);
        goto done;
    }
    if (dims[1] < 1 || dims[2] < 1 || dims[3] < 1 || dims[3] > IMAGE_MAX_CHANNELS ||
        dims[1] > 65536 || dims[2] > 65536) {
        snprintf(err, errlen, "%s: images of %llux%llu with %llu channels (1 to %d channels)", path,
                 (unsigned long long)dims[1], (unsigned long long)dims[2],
                 (unsigned long long)dims[3], IMAGE_MAX_CHANNELS);
        goto done;
    }
    a->n = (int64_t)dims[0], a->H = (int)dims[1], a->W = (int)dims[2], a->C = (int)dims[3];
    if (attr_doubles(f, "mean", cls->mean, a->C) || attr_doubles(f, "std", cls->std, a->C)) {
        snprintf(err, errlen,
                 "%s: attributes 'mean' and 'std' must hold %d numbers (one a channel)", path,
                 a->C);
        goto done;
    }
    for (int c = 0; c < a->C; c++)
        if (!(cls->std[c] > 0) || !(cls->mean[c] >= 0 && cls->mean[c] <= 1)) {
            snprintf(err, errlen,
                     "%s: channel %d has mean %g and std %g (want mean in [0, 1], std > 0)", path,
                     c, cls->mean[c], cls->std[c]);
            goto done;
        }
    size_t bytes = (size_t)a->n * (size_t)a->H * (size_t)a->W * (size_t)a->C;
    a->pixels = xmalloc(bytes ? bytes : 1);
    a->labels = xmalloc(sizeof(int32_t) * (size_t)(a->n ? a->n : 1));
    if (a->n > 0 && (H5Dread(di, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, a->pixels) < 0 ||
                     H5Dread(dl, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, a->labels) < 0)) {
        snprintf(err, errlen, "%s: cannot read the images (truncated or corrupted?): %s", path,
                 h5_cause(cause));
        goto done;
    }
    for (int64_t i = 0; i < a->n; i++)
        if (a->labels[i] < 0 || a->labels[i] >= k) {
            snprintf(err, errlen, "%s: labels[%lld] = %d is outside [0, num_classes %lld)", path,
                     (long long)i, a->labels[i], (long long)k);
            goto done;
        }
    if (verify) {
        uint32_t crc = images_crc(a->pixels, bytes, a->labels, a->n);
        if (crc != (uint32_t)checksum) {
            snprintf(err, errlen,
                     "%s: checksum mismatch: the data hashes to crc32 0x%08x but checksum_crc32 "
                     "says 0x%08x (corrupted file)",
                     path, (unsigned)crc, (unsigned)checksum);
            goto done;
        }
    }
    rc = 0;
done:
    free(split_attr);
    if (di >= 0) H5Dclose(di);
    if (dl >= 0) H5Dclose(dl);
    H5Fclose(f);
    if (rc) image_array_free(a), image_classes_free(cls);
    return rc;
}

int image_shard_load(const char *path, int verify, ImageArray *a, ImageClasses *cls, char split[64],
                     char *err, size_t errlen) {
    h5_lock();
    int rc = load_shard_locked(path, verify, a, cls, split, err, errlen);
    h5_unlock();
    return rc;
}

static int same_classes(const ImageClasses *x, const ImageClasses *y, int C) {
    if (x->num_classes != y->num_classes) return 0;
    for (int c = 0; c < C; c++)
        if (x->mean[c] != y->mean[c] || x->std[c] != y->std[c]) return 0;
    for (int i = 0; i < x->num_classes; i++)
        if (strcmp(x->class_names[i], y->class_names[i])) return 0;
    return 1;
}

int image_set_load(const char *dir, const char *split, int verify, ImageArray *a, ImageClasses *cls,
                   char *err, size_t errlen) {
    Manifest m;
    memset(a, 0, sizeof(*a));
    if (manifest_read(dir, &m, err, errlen)) return -1;
    ImageClasses ref = {0};
    char ref_path[1100] = "";
    int rc = 0, shards = 0;
    for (int i = 0; i < m.n && !rc; i++) {
        const ManifestEntry *e = &m.entries[i];
        if (strcmp(e->split, split)) continue;
        char path[1100], got_split[64];
        if (e->file[0] == '/')
            snprintf(path, sizeof(path), "%s", e->file);
        else
            snprintf(path, sizeof(path), "%s/%s", dir, e->file);
        ImageArray s;
        ImageClasses c;
        if (image_shard_load(path, verify, &s, &c, got_split, err, errlen)) {
            rc = -1;
            break;
        }
        if (strcmp(got_split, split))
            snprintf(err, errlen, "%s: its split attribute is '%s' but %s lists it under '%s'",
                     path, got_split, SHARDS_MANIFEST, split),
                rc = -1;
        else if (s.n != e->tokens)
            snprintf(err, errlen,
                     "%s: %s lists %lld images but the shard holds %lld (replaced or truncated?)",
                     path, SHARDS_MANIFEST, (long long)e->tokens, (long long)s.n),
                rc = -1;
        else if (shards && (s.H != a->H || s.W != a->W || s.C != a->C))
            snprintf(err, errlen,
                     "%s holds %dx%dx%d images but %s holds %dx%dx%d: the shards of a set must "
                     "match",
                     path, s.H, s.W, s.C, ref_path, a->H, a->W, a->C),
                rc = -1;
        else if (shards && !same_classes(&c, &ref, s.C))
            snprintf(err, errlen,
                     "%s and %s differ in their classes, mean or std: the shards of a set must "
                     "match",
                     path, ref_path),
                rc = -1;
        if (!rc) {
            size_t img = (size_t)s.H * (size_t)s.W * (size_t)s.C;
            if (!shards) {
                a->H = s.H, a->W = s.W, a->C = s.C;
                ref = c;
                memset(&c, 0, sizeof(c));
                snprintf(ref_path, sizeof(ref_path), "%s", path);
            }
            a->pixels = xrealloc(a->pixels, img * (size_t)(a->n + s.n) + 1);
            a->labels = xrealloc(a->labels, sizeof(int32_t) * (size_t)(a->n + s.n) + 1);
            memcpy(a->pixels + img * (size_t)a->n, s.pixels, img * (size_t)s.n);
            memcpy(a->labels + a->n, s.labels, sizeof(int32_t) * (size_t)s.n);
            a->n += s.n;
            shards++;
        }
        image_array_free(&s);
        image_classes_free(&c);
    }
    if (!rc && !shards) {
        char splits[256] = "";
        for (int i = 0; i < m.n; i++)
            if (!strstr(splits, m.entries[i].split))
                snprintf(splits + strlen(splits), sizeof(splits) - strlen(splits), "%s%s",
                         splits[0] ? ", " : "", m.entries[i].split);
        snprintf(err, errlen, "%s/%s lists no shard of split '%s' (splits there: %s)", dir,
                 SHARDS_MANIFEST, split, splits[0] ? splits : "none");
        rc = -1;
    }
    manifest_free(&m);
    if (rc) {
        image_array_free(a);
        image_classes_free(&ref);
        return -1;
    }
    if (cls)
        *cls = ref;
    else
        image_classes_free(&ref);
    return 0;
}

// ---- the loader's image side ------------------------------------------------------------
struct ImageData {
    ImageArray train, eval;
    ImageClasses classes;
    uint64_t seed;
    int crop_pad, hflip;
    float *lut;  // [C][256]: (v / 255 - mean_c) / std_c
    char describe[700];
};

ImageData *image_data_open(const DataOptions *o, char *err, size_t errlen) {
    ImageData *d = xcalloc(1, sizeof(ImageData));
    d->seed = o->seed, d->crop_pad = (int)o->crop_pad, d->hflip = o->hflip;
    if (image_set_load(o->path, "train", o->verify, &d->train, &d->classes, err, errlen)) {
        free(d);
        return NULL;
    }
    ImageClasses eval_classes = {0};
    if (o->eval_split[0] &&
        image_set_load(o->path, o->eval_split, o->verify, &d->eval, &eval_classes, err, errlen)) {
        // prep images names the held-out split 'test'; data.eval_split defaults to 'valid'.
        size_t used = strlen(err);
        if (!strcmp(o->eval_split, "valid") && strstr(err, "lists no shard") && used < errlen)
            snprintf(err + used, errlen - used, ": set data.eval_split=test");
        image_data_close(d);
        return NULL;
    }
    const ImageArray *t = &d->train, *e = &d->eval;
    if (o->eval_split[0] && (e->H != t->H || e->W != t->W || e->C != t->C ||
                             !same_classes(&eval_classes, &d->classes, t->C))) {
        snprintf(err, errlen,
                 "%s: the '%s' images (%dx%dx%d) do not match the training images (%dx%dx%d) in "
                 "size, classes, mean or std: not one image set",
                 o->path, o->eval_split, e->H, e->W, e->C, t->H, t->W, t->C);
        image_classes_free(&eval_classes);
        image_data_close(d);
        return NULL;
    }
    image_classes_free(&eval_classes);
    if (t->n == 0) {
        snprintf(err, errlen, "%s: the train split holds no images", o->path);
        image_data_close(d);
        return NULL;
    }
    if (d->crop_pad > t->H || d->crop_pad > t->W) {
        snprintf(err, errlen, "data.crop_pad %d is larger than the %dx%d images of %s", d->crop_pad,
                 t->H, t->W, o->path);
        image_data_close(d);
        return NULL;
    }
    d->lut = xmalloc(sizeof(float) * 256 * (size_t)t->C);
    for (int c = 0; c < t->C; c++)
        for (int v = 0; v < 256; v++)
            d->lut[c * 256 + v] = (float)((v / 255.0 - d->classes.mean[c]) / d->classes.std[c]);
    snprintf(d->describe, sizeof(d->describe),
             "images %dx%dx%d, %d classes (%lld train, %lld %s) from %s", t->H, t->W, t->C,
             d->classes.num_classes, (long long)t->n, (long long)e->n,
             o->eval_split[0] ? o->eval_split : "eval", o->path);
    return d;
}

void image_data_close(ImageData *d) {
    if (!d) return;
    image_array_free(&d->train);
    image_array_free(&d->eval);
    image_classes_free(&d->classes);
    free(d->lut);
    free(d);
}

const ImageArray *image_data_split(const ImageData *d, int eval) {
    return eval ? &d->eval : &d->train;
}
const ImageClasses *image_data_classes(const ImageData *d) {
    return &d->classes;
}
const char *image_data_describe(const ImageData *d) {
    return d->describe;
}

void image_augment_draw(uint64_t seed, int64_t p, int crop_pad, int hflip, int *oy, int *ox,
                        int *flip) {
    uint64_t key = rng_key(seed, 0x1A6E5, (uint64_t)p, 0);
    *oy = crop_pad > 0 ? (int)rng_below(key, 0, (uint64_t)(2 * crop_pad + 1)) : 0;
    *ox = crop_pad > 0 ? (int)rng_below(key, 1, (uint64_t)(2 * crop_pad + 1)) : 0;
    *flip = hflip ? (int)(rng_u64(key, 2) & 1) : 0;
}

// Image i of a, normalised, cropped at (oy, ox) of its copy padded by pad pixels (padding is 0
// after normalisation: the channel mean), then mirrored left-right when flip.
static void put_image(const ImageData *d, const ImageArray *a, int64_t i, int pad, int oy, int ox,
                      int flip, float *out, int *label) {
    int H = a->H, W = a->W, C = a->C;
    const uint8_t *src = a->pixels + (size_t)i * (size_t)H * (size_t)W * (size_t)C;
    for (int y = 0; y < H; y++) {
        int sy = y + oy - pad;
        for (int x = 0; x < W; x++) {
            int sx = (flip ? W - 1 - x : x) + ox - pad;
            float *o = out + ((size_t)y * (size_t)W + (size_t)x) * (size_t)C;
            if (sy < 0 || sy >= H || sx < 0 || sx >= W) {
                for (int c = 0; c < C; c++) o[c] = 0;
            } else {
                const uint8_t *s = src + ((size_t)sy * (size_t)W + (size_t)sx) * (size_t)C;
                for (int c = 0; c < C; c++) o[c] = d->lut[c * 256 + s[c]];
            }
        }
    }
    *label = a->labels[i];
}

void image_data_train(const ImageData *d, int64_t first, int64_t count, float *pixels_nhwc,
                      int *labels) {
    const ImageArray *a = &d->train;
    size_t image = (size_t)a->H * (size_t)a->W * (size_t)a->C;
    uint64_t n = (uint64_t)a->n;
    for (int64_t j = 0; j < count; j++) {
        int64_t p = first + j;
        uint64_t i = shuffle_index((uint64_t)p % n, n, shuffle_key(d->seed, p / (int64_t)n));
        int oy, ox, flip;
        image_augment_draw(d->seed, p, d->crop_pad, d->hflip, &oy, &ox, &flip);
        put_image(d, a, (int64_t)i, d->crop_pad, oy, ox, flip, pixels_nhwc + (size_t)j * image,
                  labels + j);
    }
}

int image_data_eval(const ImageData *d, int64_t first, int64_t count, float *pixels_nhwc,
                    int *labels, char *err, size_t errlen) {
    const ImageArray *a = &d->eval;
    if (first < 0 || count < 0 || first + count > a->n) {
        snprintf(err, errlen, "eval images [%lld, %lld) are outside the %lld held out",
                 (long long)first, (long long)(first + count), (long long)a->n);
        return -1;
    }
    size_t image = (size_t)a->H * (size_t)a->W * (size_t)a->C;
    for (int64_t j = 0; j < count; j++)
        put_image(d, a, first + j, 0, 0, 0, 0, pixels_nhwc + (size_t)j * image, labels + j);
    return 0;
}
