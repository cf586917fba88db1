// .npz input of `madtrain prep images`: a zip archive (stored or deflated members, zip64
// records as numpy writes them) of .npy arrays (format versions 1 to 3, C order).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "image_sources.h"
#include "util.h"

static uint32_t rd16(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}
static uint32_t rd32(const unsigned char *p) {
    return rd16(p) | rd16(p + 2) << 16;
}
static uint64_t rd64(const unsigned char *p) {
    return rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

typedef struct {
    char name[256];
    unsigned char *data;  // malloc'ed, uncompressed
    size_t len;
} ZipMember;

// Every member of the archive, uncompressed and CRC-checked. 0, or -1 with err.
static int zip_read(const unsigned char *buf, size_t len, const char *path, ZipMember **out,
                    int *n_out, char *err, size_t errlen) {
    *out = NULL, *n_out = 0;
    size_t eocd = 0;
    int found = 0;
    for (size_t back = 22; back <= len && back <= 22 + 65535; back++)
        if (rd32(buf + len - back) == 0x06054b50) {
            eocd = len - back, found = 1;
            break;
        }
    if (!found) {
        snprintf(err, errlen, "%s: not a zip archive (.npz): no end-of-archive record (truncated?)",
                 path);
        return -1;
    }
    uint64_t entries = rd16(buf + eocd + 10), cd_size = rd32(buf + eocd + 12),
             cd_off = rd32(buf + eocd + 16);
    if ((entries == 0xFFFF || cd_size == 0xFFFFFFFF || cd_off == 0xFFFFFFFF) && eocd >= 20 &&
        rd32(buf + eocd - 20) == 0x07064b50) {
        uint64_t z = rd64(buf + eocd - 20 + 8);
        if (z + 56 > len || rd32(buf + z) != 0x06064b50) {
            snprintf(err, errlen, "%s: damaged zip64 end record", path);
            return -1;
        }
        entries = rd64(buf + z + 32), cd_size = rd64(buf + z + 40), cd_off = rd64(buf + z + 48);
    }
    if (cd_off > len || cd_size > len - cd_off || entries > cd_size / 46 + 1) {
        snprintf(err, errlen, "%s: the zip directory lies outside the file (truncated?)", path);
        return -1;
    }
    ZipMember *m = xcalloc((size_t)entries + 1, sizeof(ZipMember));
    size_t p = (size_t)cd_off;
    int n = 0, rc = 0;
    for (uint64_t e = 0; e < entries && !rc; e++, n++) {
        if (p + 46 > len || rd32(buf + p) != 0x02014b50) {
            snprintf(err, errlen, "%s: damaged zip directory entry %llu", path,
                     (unsigned long long)e);
            rc = -1;
            break;
        }
        uint32_t method = rd16(buf + p + 10), crc = rd32(buf + p + 16);
        uint64_t csize = rd32(buf + p + 20), usize = rd32(buf + p + 24), off = rd32(buf + p + 42);
        size_t nlen = rd16(buf + p + 28), xlen = rd16(buf + p + 30), clen = rd16(buf + p + 32);
        if (p + 46 + nlen + xlen + clen > len || nlen >= sizeof(m[n].name)) {
            snprintf(err, errlen, "%s: damaged zip directory entry %llu", path,
                     (unsigned long long)e);
            rc = -1;
            break;
        }
        memcpy(m[n].name, buf + p + 46, nlen);
        // zip64 extra field: the 64-bit values of the fields set to 0xFFFFFFFF, in order.
        for (size_t x = p + 46 + nlen; x + 4 <= p + 46 + nlen + xlen;) {
            uint32_t id = rd16(buf + x), sz = rd16(buf + x + 2);
            size_t q = x + 4, end = x + 4 + sz;
            if (end > p + 46 + nlen + xlen) break;
            if (id == 1) {
                if (usize == 0xFFFFFFFF && q + 8 <= end) usize = rd64(buf + q), q += 8;
                if (csize == 0xFFFFFFFF && q + 8 <= end) csize = rd64(buf + q), q += 8;
                if (off == 0xFFFFFFFF && q + 8 <= end) off = rd64(buf + q), q += 8;
            }
            x = end;
        }
        p += 46 + nlen + xlen + clen;
        if (off + 30 > len || rd32(buf + off) != 0x04034b50) {
            snprintf(err, errlen, "%s: member %s: damaged local header (truncated?)", path,
                     m[n].name);
            rc = -1;
            break;
        }
        uint64_t data = off + 30 + rd16(buf + off + 26) + rd16(buf + off + 28);
        if (data > len || csize > len - data) {
            snprintf(err, errlen, "%s: member %s runs past the end of the file (truncated)", path,
                     m[n].name);
            rc = -1;
            break;
        }
        // Deflate expands at most 1032:1: a larger claim is a damaged header, and would
        // otherwise ask for that much memory before inflating a byte.
        if ((method == 0 && usize != csize) || usize > csize * 1032 + 1024) {
            snprintf(err, errlen, "%s: member %s claims %llu bytes from %llu (damaged)", path,
                     m[n].name, (unsigned long long)usize, (unsigned long long)csize);
            rc = -1;
            break;
        }
        m[n].data = xmalloc((size_t)usize + 1);
        m[n].len = (size_t)usize;
        if (method == 0) {
            if (csize != usize) {
                snprintf(err, errlen, "%s: member %s: stored sizes disagree", path, m[n].name);
                rc = -1;
                break;
            }
            memcpy(m[n].data, buf + data, (size_t)usize);
        } else if (method == 8) {
            z_stream z;
            memset(&z, 0, sizeof(z));
            inflateInit2(&z, -15);  // raw deflate, as zip stores it
            int zrc = Z_OK;
            size_t in_done = 0, out_done = 0;
            // zlib counts in uInt: feed and drain at most 1 GiB a call.
            while (zrc == Z_OK) {
                size_t in_left = (size_t)csize - in_done, out_left = (size_t)usize - out_done;
                z.next_in = (Bytef *)(buf + data + in_done);
                z.avail_in = (uInt)(in_left < (1u << 30) ? in_left : (1u << 30));
                z.next_out = m[n].data + out_done;
                z.avail_out = (uInt)(out_left < (1u << 30) ? out_left : (1u << 30));
                uInt ai = z.avail_in, ao = z.avail_out;
                zrc = inflate(&z, Z_NO_FLUSH);
                in_done += ai - z.avail_in, out_done += ao - z.avail_out;
                if (zrc == Z_BUF_ERROR && (in_left == 0 || out_left == 0)) break;
                if (zrc == Z_BUF_ERROR) zrc = Z_OK;
            }
            inflateEnd(&z);
            if (zrc != Z_STREAM_END || out_done != usize) {
                snprintf(err, errlen,
                         "%s: member %s does not inflate to its %llu bytes (corrupted)", path,
                         m[n].name, (unsigned long long)usize);
                rc = -1;
                break;
            }
        } else {
            snprintf(err, errlen,
                     "%s: member %s uses zip method %u (np.savez and np.savez_compressed write "
                     "0 and 8)",
                     path, m[n].name, method);
            rc = -1;
            break;
        }
        if ((uint32_t)crc32_z(crc32_z(0, Z_NULL, 0), m[n].data, m[n].len) != crc) {
            snprintf(err, errlen, "%s: member %s fails its CRC-32 (corrupted)", path, m[n].name);
            rc = -1;
            break;
        }
    }
    if (rc) {
        for (int i = 0; i <= n && i < (int)entries; i++) free(m[i].data);
        free(m);
        return -1;
    }
    *out = m, *n_out = n;
    return 0;
}

// ---- .npy -------------------------------------------------------------------------------
typedef struct {
    char kind;  // 'u', 'i', 'f', 'U', 'S'
    int size;   // bytes per element (per character for U: 4)
    int ndim;
    int64_t shape[8];
    const unsigned char *data;
    size_t count;  // elements
} Npy;

static int npy_parse(const ZipMember *m, const char *path, Npy *a, char *err, size_t errlen) {
    memset(a, 0, sizeof(*a));
    const unsigned char *b = m->data;
    if (m->len < 10 || memcmp(b, "\x93NUMPY", 6)) {
        snprintf(err, errlen, "%s: member %s is not a .npy array", path, m->name);
        return -1;
    }
    size_t hlen = b[6] == 1 ? rd16(b + 8) : rd32(b + 8), hstart = b[6] == 1 ? 10 : 12;
    if (b[6] < 1 || b[6] > 3 || hstart + hlen > m->len || hlen > 65536) {
        snprintf(err, errlen, "%s: member %s: unknown .npy version or damaged header", path,
                 m->name);
        return -1;
    }
    char h[65537];
    memcpy(h, b + hstart, hlen);
    h[hlen] = 0;
    const char *d = strstr(h, "'descr':"), *f = strstr(h, "'fortran_order':"),
               *s = strstr(h, "'shape':");
    char descr[16] = "";
    if (!d || !f || !s || sscanf(d + 8, " '%15[^']'", descr) != 1) {
        snprintf(err, errlen, "%s: member %s: a .npy header needs descr, fortran_order, shape",
                 path, m->name);
        return -1;
    }
    if (!strncmp(f + 16, " True", 5)) {
        snprintf(err, errlen,
                 "%s: member %s is in Fortran order: save np.ascontiguousarray(x) instead", path,
                 m->name);
        return -1;
    }
    char order = descr[0];
    a->kind = descr[1];
    a->size = atoi(descr + 2);
    if (a->kind == 'U') a->size *= 4;
    int known = (order == '<' || order == '|' || (order == '=' && a->size == 1)) &&
                strchr("uifUS", a->kind) && a->size > 0 && (a->size <= 8 || strchr("US", a->kind));
    if (!known || (a->kind == 'f' && a->size != 4 && a->size != 8)) {
        snprintf(err, errlen, "%s: member %s has dtype '%s', which prep images does not read", path,
                 m->name, descr);
        return -1;
    }
    const char *q = strchr(s, '(');
    if (!q) {
        snprintf(err, errlen, "%s: member %s: damaged shape", path, m->name);
        return -1;
    }
    q++;
    a->count = 1;
    while (*q && *q != ')') {
        while (*q == ' ' || *q == ',') q++;
        if (*q == ')') break;
        char *end;
        long long v = strtoll(q, &end, 10);
        if (end == q || v < 0 || a->ndim == 8) {
            snprintf(err, errlen, "%s: member %s: damaged shape", path, m->name);
            return -1;
        }
        a->shape[a->ndim++] = v;
        a->count *= (size_t)v;
        q = end;
    }
    size_t body = m->len - hstart - hlen;
    if (body != a->count * (size_t)a->size) {
        snprintf(err, errlen,
                 "%s: member %s holds %zu data bytes, its shape needs %zu (truncated?)", path,
                 m->name, body, a->count * (size_t)a->size);
        return -1;
    }
    a->data = b + hstart + hlen;
    return 0;
}

static int npy_images(const Npy *a, const char *path, const char *name, ImageArray *out, char *err,
                      size_t errlen) {
    if ((a->ndim != 3 && a->ndim != 4) || (a->ndim == 4 && (a->shape[3] < 1 || a->shape[3] > 4)) ||
        a->shape[1] < 1 || a->shape[2] < 1 || a->shape[1] > 65536 || a->shape[2] > 65536) {
        snprintf(err, errlen, "%s: %s must be [N, H, W] or [N, H, W, C] with C 1 to 4", path, name);
        return -1;
    }
    if (!(a->kind == 'u' && a->size == 1) && a->kind != 'f') {
        snprintf(err, errlen, "%s: %s must be uint8 (0..255) or float in [0, 1]", path, name);
        return -1;
    }
    out->n = a->shape[0], out->H = (int)a->shape[1], out->W = (int)a->shape[2];
    out->C = a->ndim == 4 ? (int)a->shape[3] : 1;
    out->pixels = xmalloc(a->count + 1);
    if (a->kind == 'u') {
        memcpy(out->pixels, a->data, a->count);
        return 0;
    }
    for (size_t i = 0; i < a->count; i++) {
        double v;
        if (a->size == 4) {
            float x;
            memcpy(&x, a->data + 4 * i, 4);
            v = x;
        } else {
            memcpy(&v, a->data + 8 * i, 8);
        }
        // Float pixels are taken as [0, 1] (torchvision's ToTensor, keras' /255): a value
        // above 1 means another scale, which prep cannot guess: store uint8 for 0..255.
        if (!(v >= 0 && v <= 1)) {
            snprintf(err, errlen,
                     "%s: %s[%zu] = %g: float pixels must lie in [0, 1] (store uint8 for 0..255)",
                     path, name, i, v);
            return -1;
        }
        out->pixels[i] = (uint8_t)lrint(v * 255.0);
    }
    return 0;
}

static int npy_labels(const Npy *a, const char *path, const char *name, int64_t n, int32_t **out,
                      char *err, size_t errlen) {
    if (a->ndim != 1 || a->shape[0] != n || (a->kind != 'i' && a->kind != 'u')) {
        snprintf(err, errlen, "%s: %s must be integers [N] with N = %lld (the images)", path, name,
                 (long long)n);
        return -1;
    }
    *out = xmalloc(sizeof(int32_t) * (size_t)(n + 1));
    for (int64_t i = 0; i < n; i++) {
        const unsigned char *p = a->data + (size_t)i * (size_t)a->size;
        int64_t v = 0;
        switch (a->size) {
            case 1:
                v = a->kind == 'i' ? (int8_t)p[0] : p[0];
                break;
            case 2:
                v = a->kind == 'i' ? (int16_t)rd16(p) : (int64_t)rd16(p);
                break;
            case 4:
                v = a->kind == 'i' ? (int32_t)rd32(p) : (int64_t)rd32(p);
                break;
            default:
                v = (int64_t)rd64(p);
                if (a->kind == 'u' && v < 0) v = INT64_MAX;
                break;
        }
        if (v < 0 || v > (1 << 24)) {
            snprintf(err, errlen, "%s: %s[%lld] = %lld: a label must be in [0, 2^24]", path, name,
                     (long long)i, (long long)v);
            free(*out);
            *out = NULL;
            return -1;
        }
        (*out)[i] = (int32_t)v;
    }
    return 0;
}

static int npy_names(const Npy *a, const char *path, char ***out, int *n_out, char *err,
                     size_t errlen) {
    if (a->ndim != 1 || (a->kind != 'U' && a->kind != 'S')) {
        snprintf(err, errlen, "%s: class_names must be a 1-D array of strings", path);
        return -1;
    }
    int n = (int)a->shape[0];
    char **names = xcalloc((size_t)n + 1, sizeof(char *));
    for (int i = 0; i < n; i++) {
        const unsigned char *p = a->data + (size_t)i * (size_t)a->size;
        char *s = xcalloc((size_t)a->size + 1, 4);  // UTF-8 of UTF-32: at most 4 bytes a char
        size_t o = 0;
        if (a->kind == 'S') {
            for (int j = 0; j < a->size && p[j]; j++) s[o++] = (char)p[j];
        } else {
            for (int j = 0; j < a->size / 4; j++) {
                uint32_t c = rd32(p + 4 * j);
                if (!c) break;
                if (c < 0x80) {
                    s[o++] = (char)c;
                } else if (c < 0x800) {
                    s[o++] = (char)(0xC0 | c >> 6), s[o++] = (char)(0x80 | (c & 63));
                } else if (c < 0x10000) {
                    s[o++] = (char)(0xE0 | c >> 12), s[o++] = (char)(0x80 | ((c >> 6) & 63));
                    s[o++] = (char)(0x80 | (c & 63));
                } else {
                    s[o++] = (char)(0xF0 | c >> 18), s[o++] = (char)(0x80 | ((c >> 12) & 63));
                    s[o++] = (char)(0x80 | ((c >> 6) & 63)), s[o++] = (char)(0x80 | (c & 63));
                }
            }
        }
        names[i] = s;
    }
    *out = names, *n_out = n;
    return 0;
}

static const ZipMember *member(const ZipMember *m, int n, const char *name) {
    char want[300];
    snprintf(want, sizeof(want), "%s.npy", name);
    for (int i = 0; i < n; i++)
        if (!strcmp(m[i].name, want)) return &m[i];
    return NULL;
}

static int npz_pair(const ZipMember *m, int n, const char *path, const char *img_name,
                    const char *lab_name, ImageArray *out, char *err, size_t errlen) {
    Npy a, b;
    if (npy_parse(member(m, n, img_name), path, &a, err, errlen) ||
        npy_images(&a, path, img_name, out, err, errlen) ||
        npy_parse(member(m, n, lab_name), path, &b, err, errlen) ||
        npy_labels(&b, path, lab_name, out->n, &out->labels, err, errlen))
        return -1;
    return 0;
}

int image_source_npz(const char *path, ImageSource *s, char *err, size_t errlen) {
    memset(s, 0, sizeof(*s));
    unsigned char *buf;
    size_t len;
    if (read_whole_file(path, &buf, &len, err, errlen)) return -1;
    ZipMember *m;
    int n, rc = zip_read(buf, len, path, &m, &n, err, errlen);
    free(buf);
    if (rc) return -1;
    static const char *known[] = {"images.npy",       "labels.npy",      "train_images.npy",
                                  "train_labels.npy", "test_images.npy", "test_labels.npy",
                                  "class_names.npy"};
    for (int i = 0; i < n && !rc; i++) {
        int ok = 0;
        for (size_t k = 0; k < sizeof(known) / sizeof(*known); k++)
            ok |= !strcmp(m[i].name, known[k]);
        if (!ok)
            snprintf(err, errlen,
                     "%s: unexpected array '%s' (an image .npz holds images + labels, or "
                     "train_images, train_labels, test_images, test_labels; and class_names)",
                     path, m[i].name),
                rc = -1;
    }
    int single = member(m, n, "images") && member(m, n, "labels");
    int split = member(m, n, "train_images") && member(m, n, "train_labels") &&
                member(m, n, "test_images") && member(m, n, "test_labels");
    if (!rc && single == split) {
        snprintf(err, errlen,
                 "%s: holds %s: an image .npz holds images + labels, or train_images, "
                 "train_labels, test_images and test_labels",
                 path, single ? "both layouts" : "neither layout");
        rc = -1;
    }
    if (!rc && single) rc = npz_pair(m, n, path, "images", "labels", &s->train, err, errlen);
    if (!rc && split) {
        s->has_test = 1;
        rc = npz_pair(m, n, path, "train_images", "train_labels", &s->train, err, errlen) ||
                     npz_pair(m, n, path, "test_images", "test_labels", &s->test, err, errlen)
                 ? -1
                 : 0;
        if (!rc &&
            (s->test.H != s->train.H || s->test.W != s->train.W || s->test.C != s->train.C)) {
            snprintf(err, errlen, "%s: test_images are %dx%dx%d but train_images %dx%dx%d", path,
                     s->test.H, s->test.W, s->test.C, s->train.H, s->train.W, s->train.C);
            rc = -1;
        }
    }
    const ZipMember *names = member(m, n, "class_names");
    if (!rc && names) {
        Npy a;
        rc = npy_parse(names, path, &a, err, errlen) ||
                     npy_names(&a, path, &s->class_names, &s->num_classes, err, errlen)
                 ? -1
                 : 0;
    }
    for (int i = 0; i < n; i++) free(m[i].data);
    free(m);
    if (rc) image_source_free(s);
    return rc;
}
