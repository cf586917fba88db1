#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../data/h5util.h"
#include "../kernels/rng.h"
#include "util.h"

// Every function here that calls libhdf5 holds the process-wide HDF5 lock (data/h5util.h)
// around the whole sequence: the shard reader thread may be reading a compressed shard.

// ---- writing ---------------------------------------------------------------------------
static int write_f32(hid_t loc, const char *name, const float *data, int ndim,
                     const hsize_t *dims) {
    hid_t sp = H5Screate_simple(ndim, dims, NULL);
    hid_t ds = H5Dcreate2(loc, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= dims[i];
    int rc =
        ds < 0 || H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0 ||
                h5_attr_write_u64(ds, "checksum_fnv1a64", hash_fnv1a64(data, n * sizeof(float)))
            ? -1
            : 0;
    if (ds >= 0) H5Dclose(ds);
    H5Sclose(sp);
    return rc;
}

static char *config_text(const Config *cfg) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    config_write_yaml(cfg, f);
    fclose(f);
    return buf;
}

static int write_h5(const char *path, const Model_f32 *m, const float *params, const float *adam_m,
                    const float *adam_v, const TrainState *st, const Config *cfg) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return -1;
    int rc = 0;
    hid_t g = H5Gcreate2(f, "params", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    for (int t = 0; t < m->n_tensors && !rc && g >= 0; t++) {
        const ParamInfo *p = &m->info[t];
        hsize_t dims[2] = {(hsize_t)p->shape[0], (hsize_t)p->shape[1]};
        rc = write_f32(g, p->name, params + p->offset, p->ndim, dims);
    }
    if (g < 0)
        rc = -1;
    else
        H5Gclose(g);
    g = rc ? -1 : H5Gcreate2(f, "optimizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g >= 0) {
        hsize_t n = m->n_params;
        rc = write_f32(g, "adam_m", adam_m, 1, &n) || write_f32(g, "adam_v", adam_v, 1, &n);
        H5Gclose(g);
    } else {
        rc = -1;
    }
    char *yaml = config_text(cfg);
    if (!rc)
        rc = h5_attr_write_i64(f, "format_version", CHECKPOINT_FORMAT_VERSION) ||
             h5_attr_write_str(f, "madtrain_version", MADTRAIN_VERSION) ||
             h5_attr_write_i64(f, "step", st->step) ||
             h5_attr_write_i64(f, "skipped_steps", st->skipped_steps) ||
             h5_attr_write_i64(f, "tokens", st->tokens) ||
             h5_attr_write_i64(f, "data_position", st->data_position) ||
             h5_attr_write_i64(f, "world_size", st->world) ||
             h5_attr_write_i64(f, "seed", cfg->seed) ||
             h5_attr_write_i64(f, "n_params", (int64_t)m->n_params) ||
             h5_attr_write_str(f, "config_yaml", yaml) ||
             h5_attr_write_u64(f, "config_checksum_fnv1a64", hash_fnv1a64(yaml, strlen(yaml)));
    free(yaml);
    if (H5Fclose(f) < 0) rc = -1;
    return rc;
}

static int fsync_path(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static int write_latest(FILE *f, void *ctx) {
    return fprintf(f, "%s\n", (const char *)ctx) < 0;
}

int checkpoint_write(const char *run_dir, const Model_f32 *m, const float *params,
                     const float *adam_m, const float *adam_v, const TrainState *st,
                     const Config *cfg, char *path_out, size_t path_len, char *err, size_t errlen) {
    char name[64], path[1100], tmp[1200];
    snprintf(name, sizeof(name), "ckpt-%08lld.h5", (long long)st->step);
    snprintf(path, sizeof(path), "%s/%s", run_dir, name);
    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
    errno = 0;
    h5_lock();
    int failed = write_h5(tmp, m, params, adam_m, adam_v, st, cfg);
    h5_unlock();
    if (failed || fsync_path(tmp) || rename(tmp, path)) {
        int e = errno;
        unlink(tmp);
        snprintf(err, errlen, "cannot write checkpoint '%s': %s", path,
                 e ? strerror(e) : "HDF5 write failed");
        return -1;
    }
    fsync_path(run_dir);  // the rename itself must reach the disk before `latest` names it
    snprintf(tmp, sizeof(tmp), "%s/latest", run_dir);
    if (write_file_atomic(tmp, write_latest, name)) {
        snprintf(err, errlen, "cannot update '%s': %s", tmp, strerror(errno));
        return -1;
    }
    if (path_out) snprintf(path_out, path_len, "%s", path);
    return 0;
}

// ---- listing ---------------------------------------------------------------------------
static int64_t ckpt_step(const char *name) {
    long long step;
    int used = 0;
    if (sscanf(name, "ckpt-%lld.h5%n", &step, &used) == 1 && name[used] == 0) return step;
    return -1;
}

static int cmp_desc(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

int checkpoint_list(const char *run_dir, char **paths, int max) {
    DIR *d = opendir(run_dir);
    if (!d) return 0;
    int64_t steps[4096];
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < 4096;) {
        int64_t s = ckpt_step(e->d_name);
        if (s >= 0) steps[n++] = s;
    }
    closedir(d);
    qsort(steps, (size_t)n, sizeof(int64_t), cmp_desc);
    // `latest` leads when it names an existing file (it is the last complete write).
    char latest[1100], name[256] = "";
    snprintf(latest, sizeof(latest), "%s/latest", run_dir);
    FILE *f = fopen(latest, "r");
    int64_t lead = -1;
    if (f) {
        if (fscanf(f, "%255s", name) == 1) lead = ckpt_step(name);
        fclose(f);
    }
    int out = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < n && out < max; i++) {
            if ((pass == 0) != (steps[i] == lead)) continue;
            char p[1100];
            snprintf(p, sizeof(p), "%s/ckpt-%08lld.h5", run_dir, (long long)steps[i]);
            paths[out++] = strdup(p);
        }
    return out;
}

void checkpoint_prune(const char *run_dir, int64_t keep, int64_t keep_every) {
    if (keep <= 0) return;
    char *paths[4096];
    int n = checkpoint_list(run_dir, paths, 4096);
    for (int i = 0; i < n; i++) {
        const char *base = strrchr(paths[i], '/') + 1;
        int64_t step = ckpt_step(base);
        if (i >= keep && !(keep_every > 0 && step % keep_every == 0)) unlink(paths[i]);
        free(paths[i]);
    }
}

void checkpoint_remove_partial(const char *run_dir) {
    DIR *d = opendir(run_dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));)
        if ((!strncmp(e->d_name, "ckpt-", 5) || !strncmp(e->d_name, "latest.", 7)) &&
            strstr(e->d_name, ".tmp.")) {
            char p[1100];
            snprintf(p, sizeof(p), "%s/%s", run_dir, e->d_name);
            unlink(p);
        }
    closedir(d);
}

int checkpoint_resolve(const char *dir_or_file, char *path, size_t n, char *err, size_t errlen) {
    struct stat sb;
    if (stat(dir_or_file, &sb)) {
        snprintf(err, errlen, "cannot resume from '%s': %s", dir_or_file, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(sb.st_mode)) {
        snprintf(path, n, "%s", dir_or_file);
        return 0;
    }
    char *paths[1];
    if (checkpoint_list(dir_or_file, paths, 1) < 1) {
        snprintf(err, errlen, "no checkpoint in '%s'", dir_or_file);
        return -1;
    }
    snprintf(path, n, "%s", paths[0]);
    free(paths[0]);
    return 0;
}

// ---- reading ---------------------------------------------------------------------------
static void format_dims(char *out, size_t n, int ndim, const hsize_t *dims) {
    if (ndim < 0) {
        snprintf(out, n, "(unreadable)");
        return;
    }
    snprintf(out, n, "[");
    for (int i = 0; i < ndim; i++)
        snprintf(out + strlen(out), n - strlen(out), "%s%llu", i ? ", " : "",
                 (unsigned long long)dims[i]);
    snprintf(out + strlen(out), n - strlen(out), "]");
}

// Reads dataset `name` of `loc` into out (n floats, shape checked against dims when given)
// and verifies its checksum. Messages name the file and dataset.
static int read_f32(hid_t loc, const char *path, const char *group, const char *name, float *out,
                    int ndim, const hsize_t *dims, char *err, size_t errlen) {
    if (H5Lexists(loc, name, H5P_DEFAULT) <= 0) {
        snprintf(err, errlen, "%s: dataset '%s/%s' is missing", path, group, name);
        return -1;
    }
    hid_t ds = H5Dopen2(loc, name, H5P_DEFAULT);
    hid_t sp = ds >= 0 ? H5Dget_space(ds) : -1;
    hsize_t got[8] = {0};
    int nd = sp >= 0 ? H5Sget_simple_extent_dims(sp, got, NULL) : -1;
    int rc = 0;
    if (nd != ndim || memcmp(got, dims, sizeof(hsize_t) * (size_t)ndim)) {
        char a[96], b[96];
        format_dims(a, sizeof(a), nd, got);
        format_dims(b, sizeof(b), ndim, dims);
        snprintf(err, errlen, "%s: dataset '%s/%s' has shape %s, expected %s", path, group, name, a,
                 b);
        rc = -1;
    }
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= dims[i];
    uint64_t want = 0;
    if (!rc && (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)) {
        snprintf(err, errlen, "%s: dataset '%s/%s' cannot be read (truncated or corrupted file)",
                 path, group, name);
        rc = -1;
    }
    if (!rc && (h5_attr_read_u64(ds, "checksum_fnv1a64", &want) ||
                want != hash_fnv1a64(out, n * sizeof(float)))) {
        snprintf(err, errlen, "%s: checksum mismatch in dataset '%s/%s' (corrupted file)", path,
                 group, name);
        rc = -1;
    }
    if (sp >= 0) H5Sclose(sp);
    if (ds >= 0) H5Dclose(ds);
    return rc;
}

static hid_t open_ro(const char *path, char *err, size_t errlen) {
    if (access(path, R_OK)) {
        snprintf(err, errlen, "cannot read checkpoint '%s': %s", path, strerror(errno));
        return -1;
    }
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        snprintf(err, errlen, "%s: not a readable HDF5 checkpoint (truncated or corrupted)", path);
    return f;
}

static int read_config(hid_t f, const char *path, Config *stored_cfg, char *err, size_t errlen) {
    char *yaml = h5_attr_read_str(f, "config_yaml");
    uint64_t want = 0;
    int rc = 0;
    if (!yaml || h5_attr_read_u64(f, "config_checksum_fnv1a64", &want) ||
        want != hash_fnv1a64(yaml, strlen(yaml))) {
        snprintf(err, errlen, "%s: stored config is missing or fails its checksum", path);
        rc = -1;
    }
    if (!rc) {
        config_defaults(stored_cfg);
        char e2[512];
        if (config_load_string(stored_cfg, yaml, path, e2, sizeof(e2))) {
            snprintf(err, errlen, "%s: stored config: %s", path, e2);
            rc = -1;
        }
    }
    free(yaml);
    return rc;
}

int checkpoint_read_config(const char *path, Config *stored_cfg, char *err, size_t errlen) {
    h5_lock();
    hid_t f = open_ro(path, err, errlen);
    int rc = f < 0 ? -1 : read_config(f, path, stored_cfg, err, errlen);
    if (f >= 0) H5Fclose(f);
    h5_unlock();
    return rc;
}

static int read_checkpoint(const char *path, const Model_f32 *m, float *params, float *adam_m,
                           float *adam_v, TrainState *st, Config *stored_cfg, char *err,
                           size_t errlen) {
    hid_t f = open_ro(path, err, errlen);
    if (f < 0) return -1;
    int rc = 0;
    int64_t version = 0, n_params = 0;
    if (h5_attr_read_i64(f, "format_version", &version) || version > CHECKPOINT_FORMAT_VERSION) {
        snprintf(err, errlen,
                 "%s: checkpoint format version %lld is not supported (this madtrain "
                 "reads version <= %d)",
                 path, (long long)version, CHECKPOINT_FORMAT_VERSION);
        rc = -1;
    }
    if (!rc && (h5_attr_read_i64(f, "step", &st->step) ||
                h5_attr_read_i64(f, "skipped_steps", &st->skipped_steps) ||
                h5_attr_read_i64(f, "tokens", &st->tokens) ||
                h5_attr_read_i64(f, "data_position", &st->data_position) ||
                h5_attr_read_i64(f, "world_size", &st->world) ||
                h5_attr_read_i64(f, "n_params", &n_params))) {
        snprintf(err, errlen, "%s: training state attributes are missing", path);
        rc = -1;
    }
    if (!rc && (size_t)n_params != m->n_params) {
        snprintf(err, errlen, "%s: holds %lld parameters, the configured model has %zu", path,
                 (long long)n_params, m->n_params);
        rc = -1;
    }
    if (!rc && stored_cfg) rc = read_config(f, path, stored_cfg, err, errlen);
    hid_t g = rc ? -1 : H5Gopen2(f, "params", H5P_DEFAULT);
    if (!rc && g < 0) {
        snprintf(err, errlen, "%s: group 'params' is missing", path);
        rc = -1;
    }
    for (int t = 0; t < m->n_tensors && !rc; t++) {
        const ParamInfo *p = &m->info[t];
        hsize_t dims[2] = {(hsize_t)p->shape[0], (hsize_t)p->shape[1]};
        rc = read_f32(g, path, "params", p->name, params + p->offset, p->ndim, dims, err, errlen);
    }
    if (g >= 0) H5Gclose(g);
    if (!rc && (adam_m || adam_v)) {
        g = H5Gopen2(f, "optimizer", H5P_DEFAULT);
        hsize_t n = m->n_params;
        if (g < 0) {
            snprintf(err, errlen, "%s: group 'optimizer' is missing", path);
            rc = -1;
        } else {
            rc = read_f32(g, path, "optimizer", "adam_m", adam_m, 1, &n, err, errlen) ||
                 read_f32(g, path, "optimizer", "adam_v", adam_v, 1, &n, err, errlen);
            H5Gclose(g);
        }
    }
    H5Fclose(f);
    return rc;
}

int checkpoint_read(const char *path, const Model_f32 *m, float *params, float *adam_m,
                    float *adam_v, TrainState *st, Config *stored_cfg, char *err, size_t errlen) {
    h5_lock();
    int rc = read_checkpoint(path, m, params, adam_m, adam_v, st, stored_cfg, err, errlen);
    h5_unlock();
    return rc;
}

static int load_params(const char *path, const Model_f32 *m, float *params, char *err,
                       size_t errlen) {
    hid_t f = open_ro(path, err, errlen);
    if (f < 0) return -1;
    hid_t g = H5Gopen2(f, "params", H5P_DEFAULT);
    if (g < 0) {
        snprintf(err, errlen, "%s: group 'params' is missing", path);
        H5Fclose(f);
        return -1;
    }
    // Every mismatch is listed, so one run shows the whole difference between the models.
    char list[2048] = "";
    int bad = 0;
    for (int t = 0; t < m->n_tensors; t++) {
        const ParamInfo *p = &m->info[t];
        hsize_t dims[2] = {(hsize_t)p->shape[0], (hsize_t)p->shape[1]};
        char e[512];
        if (read_f32(g, path, "params", p->name, params + p->offset, p->ndim, dims, e, sizeof(e))) {
            const char *why = strstr(e, "missing") ? "missing"
                              : strstr(e, "shape") ? "shape"
                                                   : "unreadable";
            if (bad < 8)
                snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s (%s)",
                         bad ? ", " : "", p->name, why);
            bad++;
        }
    }
    H5Gclose(g);
    H5Fclose(f);
    if (bad) {
        snprintf(err, errlen, "%s: %d parameter(s) do not match the model: %s%s", path, bad, list,
                 bad > 8 ? ", ..." : "");
        return -1;
    }
    return 0;
}

int checkpoint_load_params(const char *path, const Model_f32 *m, float *params, char *err,
                           size_t errlen) {
    h5_lock();
    int rc = load_params(path, m, params, err, errlen);
    h5_unlock();
    return rc;
}
