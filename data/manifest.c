// The manifest of a shard folder (docs/data-format.md): its first line names the format and
// version, then one "split file tokens" row per shard.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shards.h"
#include "util.h"

void manifest_add(Manifest *m, const char *split, const char *file, int64_t tokens) {
    ManifestEntry *grown = realloc(m->entries, sizeof(ManifestEntry) * (size_t)(m->n + 1));
    if (!grown) {
        fprintf(stderr, "madtrain: error: out of memory growing the manifest\n");
        exit(MT_EXIT_FAIL);
    }
    m->entries = grown;
    ManifestEntry *e = &m->entries[m->n++];
    snprintf(e->split, sizeof(e->split), "%s", split);
    snprintf(e->file, sizeof(e->file), "%s", file);
    e->tokens = tokens;
}

void manifest_free(Manifest *m) {
    free(m->entries);
    m->entries = NULL, m->n = 0;
}

int manifest_read(const char *dir, Manifest *m, char *err, size_t errlen) {
    char path[1100];
    snprintf(path, sizeof(path), "%s/%s", dir, SHARDS_MANIFEST);
    memset(m, 0, sizeof(*m));
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot read %s: %s (is data.path a folder made by madtrain prep?)",
                 path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0, rc = 0;
    while (getline(&line, &cap, f) > 0) {
        lineno++;
        char *save = NULL, *fields[4];
        int nf = 0;
        for (char *t = strtok_r(line, " \t\r\n", &save); t; t = strtok_r(NULL, " \t\r\n", &save))
            if (nf < 4)
                fields[nf++] = t;
            else
                nf = 5;
        if (nf == 0 || fields[0][0] == '#') continue;
        char *end = NULL;
        if (!m->version) {
            long v = nf == 2 ? strtol(fields[1], &end, 10) : 0;
            if (nf != 2 || strcmp(fields[0], SHARDS_MANIFEST_MAGIC) || *end || v < 1) {
                snprintf(err, errlen, "%s:%d: the first line must be '%s <version>'", path, lineno,
                         SHARDS_MANIFEST_MAGIC);
                rc = -1;
                break;
            }
            if (v > SHARDS_FORMAT_VERSION) {
                snprintf(err, errlen,
                         "%s: format version %ld is newer than this madtrain reads (%d): upgrade "
                         "madtrain",
                         path, v, SHARDS_FORMAT_VERSION);
                rc = -1;
                break;
            }
            m->version = (int)v;
            continue;
        }
        long long tokens = nf == 3 ? strtoll(fields[2], &end, 10) : -1;
        if (nf != 3 || *end || tokens < 0 || strlen(fields[0]) >= sizeof(m->entries->split) ||
            strlen(fields[1]) >= sizeof(m->entries->file)) {
            snprintf(err, errlen, "%s:%d: expected 'split file tokens' (tab-separated)", path,
                     lineno);
            rc = -1;
            break;
        }
        // The same file twice would train on its data twice per epoch (and split it between
        // splits): a copy-paste slip, refused.
        for (int i = 0; i < m->n; i++)
            if (!strcmp(m->entries[i].file, fields[1])) {
                snprintf(err, errlen, "%s:%d: lists %s a second time (one line per shard)", path,
                         lineno, fields[1]);
                rc = -1;
            }
        if (rc) break;
        manifest_add(m, fields[0], fields[1], tokens);
    }
    free(line);
    fclose(f);
    if (!rc && !m->version) {
        snprintf(err, errlen, "%s: empty (the first line must be '%s <version>')", path,
                 SHARDS_MANIFEST_MAGIC);
        rc = -1;
    }
    if (rc) manifest_free(m);
    return rc;
}

static int write_manifest_rows(FILE *f, void *ctx) {
    const Manifest *m = ctx;
    fprintf(f, "%s\t%d\n# split\tfile\ttokens\n", SHARDS_MANIFEST_MAGIC, SHARDS_FORMAT_VERSION);
    for (int i = 0; i < m->n; i++)
        fprintf(f, "%s\t%s\t%lld\n", m->entries[i].split, m->entries[i].file,
                (long long)m->entries[i].tokens);
    return ferror(f) ? -1 : 0;
}

int manifest_write(const char *dir, const Manifest *m, char *err, size_t errlen) {
    char path[1100];
    snprintf(path, sizeof(path), "%s/%s", dir, SHARDS_MANIFEST);
    if (write_file_atomic(path, write_manifest_rows, (void *)m)) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}
