#include "reader.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/rng.h"
#include "h5util.h"
#include "shards.h"
#include "synthetic.h"
#include "util.h"

uint64_t shuffle_index(uint64_t i, uint64_t n, uint64_t key) {
    if (n <= 1) return 0;
    int bits = 64 - __builtin_clzll(n - 1), half = (bits + 1) / 2;
    uint64_t mask = (1ull << half) - 1;
    do {  // a permutation of [0, 4^half) re-applied until it lands in [0, n): <= ~4 rounds
        uint64_t left = i >> half, right = i & mask;
        for (uint64_t round = 0; round < 6; round++) {
            uint64_t next = left ^ (rng_u64(key ^ (round * 0x9E3779B97F4A7C15ull), right) & mask);
            left = right, right = next;
        }
        i = (left << half) | right;
    } while (i >= n);
    return i;
}

uint64_t shuffle_key(uint64_t seed, int64_t epoch) {
    return rng_key(seed, 0x51A4D, (uint64_t)epoch, 0);
}

typedef struct {
    int n;
    Shard **shards;
    int64_t *rows;   // per shard: tokens (LM) or sequences
    int64_t *start;  // [n + 1]: examples (windows or sequences) before each shard
} Split;

typedef struct {
    int *ids, *targets;
    int rc;
    char err[1024];
} Slot;

enum { CALL_IDLE, CALL_POSTED, CALL_DONE };

struct Reader {
    // Fixed once open.
    DataOptions opt;              // a copy: the caller's may go
    int rank, world, kind, T, S;  // S: LM evaluation stride
    int64_t vocab, batch_stride, capacity, depth;
    Split train, eval;
    Task order;  // sequences: the in-process Sampler's (seed, n_train)
    Sampler sampler;
    int *window;  // thread scratch: T + 1 tokens
    char describe[700];

    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int quit, opened, open_rc;
    char open_err[1024];
    // Prefetch ring: slot (head + i) % depth holds positions ring_first + i * batch_stride
    // for i < filled; the thread fills slot (head + filled) % depth without the lock.
    Slot *slots;
    int head, filled, active;
    int64_t ring_first, ring_count;
    uint64_t generation;
    // One synchronous call at a time (evaluation reads, requests larger than a slot).
    int (*call_fn)(void *);
    void *call_ctx;
    int call_state, call_rc;
};

// ---- index arithmetic -------------------------------------------------------------------
static int locate(const Split *sp, int64_t index, int64_t *local) {
    int lo = 0, hi = sp->n - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (sp->start[mid] <= index)
            lo = mid;
        else
            hi = mid - 1;
    }
    *local = index - sp->start[lo];
    return lo;
}

static int64_t lm_train_windows(int64_t tokens, int T) {
    return tokens > T ? (tokens - 1) / T : 0;
}

static int64_t lm_eval_windows(int64_t tokens, int T, int S) {
    if (tokens < 2) return 0;
    if (tokens - 1 <= T) return 1;
    return 1 + (tokens - 1 - T + S - 1) / S;
}

static int read_train_example(Reader *r, int64_t pos, int *ids, int *targets, char *err,
                              size_t errlen) {
    int64_t n = r->train.start[r->train.n], local, T = r->T;
    if (r->kind == SHARD_LM) {
        uint64_t key = shuffle_key(r->opt.seed, pos / n);
        int64_t w = (int64_t)shuffle_index((uint64_t)(pos % n), (uint64_t)n, key);
        Shard *s = r->train.shards[locate(&r->train, w, &local)];
        if (shard_read_tokens(s, local * T, T + 1, r->window, err, errlen)) return -1;
        memcpy(ids, r->window, sizeof(int) * (size_t)T);
        memcpy(targets, r->window + 1, sizeof(int) * (size_t)T);
        return 0;
    }
    Shard *s = r->train.shards[locate(&r->train, sampler_example(&r->sampler, pos), &local)];
    return shard_read_tokens(s, local, 1, ids, err, errlen) ||
                   shard_read_targets(s, local, 1, targets, err, errlen)
               ? -1
               : 0;
}

static int read_eval_example(Reader *r, int64_t index, int *ids, int *targets, char *err,
                             size_t errlen) {
    int64_t local, T = r->T, S = r->S;
    int k = locate(&r->eval, index, &local);
    Shard *s = r->eval.shards[k];
    if (r->kind == SHARD_SEQ)
        return shard_read_tokens(s, local, 1, ids, err, errlen) ||
                       shard_read_targets(s, local, 1, targets, err, errlen)
                   ? -1
                   : 0;
    int64_t start = local * S, avail = r->eval.rows[k] - start;
    if (avail > T + 1) avail = T + 1;
    if (shard_read_tokens(s, start, avail, r->window, err, errlen)) return -1;
    for (int64_t t = 0; t < T; t++) {
        int in_data = t < avail - 1;
        int seen_before = local > 0 && t < T - S;  // scored by the previous window
        ids[t] = in_data ? r->window[t] : 0;
        targets[t] = in_data && !seen_before ? r->window[t + 1] : -1;
    }
    return 0;
}

static int read_batch(Reader *r, int eval, int64_t first, int64_t count, int *ids, int *targets,
                      char *err, size_t errlen) {
    for (int64_t j = 0; j < count; j++) {
        int *x = ids + j * r->T, *y = targets + j * r->T;
        if (eval ? read_eval_example(r, first + j, x, y, err, errlen)
                 : read_train_example(r, first + j, x, y, err, errlen))
            return -1;
    }
    return 0;
}

// ---- opening (on the reader thread) -------------------------------------------------------
// "sequences of 64 tokens (task 'ar', tokenizer 'none', vocab_size 33)"
static void describe_info(const ShardInfo *i, char *out, size_t n) {
    if (i->kind == SHARD_LM)
        snprintf(out, n, "a token stream (task '%s', tokenizer '%s', vocab_size %lld)", i->task,
                 i->tokenizer, (long long)i->vocab_size);
    else
        snprintf(out, n, "sequences of %lld tokens (task '%s', tokenizer '%s', vocab_size %lld)",
                 (long long)i->row_len, i->task, i->tokenizer, (long long)i->vocab_size);
}

static int open_split(Reader *r, const Manifest *m, const char *name, Split *sp, int *verified,
                      const ShardInfo **ref, ShardInfo *ref_store, char *ref_path,
                      size_t ref_path_len, char *err, size_t errlen) {
    const char *dir = r->opt.path;
    for (int i = 0; i < m->n; i++) sp->n += !strcmp(m->entries[i].split, name);
    if (!sp->n) {
        char splits[256] = "";
        for (int i = 0; i < m->n; i++)
            if (!strstr(splits, m->entries[i].split))
                snprintf(splits + strlen(splits), sizeof(splits) - strlen(splits), "%s%s",
                         splits[0] ? ", " : "", m->entries[i].split);
        snprintf(err, errlen, "%s/%s lists no shard of split '%s' (splits there: %s)", dir,
                 SHARDS_MANIFEST, name, splits[0] ? splits : "none");
        return -1;
    }
    sp->shards = xcalloc((size_t)sp->n, sizeof(Shard *));
    sp->rows = xcalloc((size_t)sp->n, sizeof(int64_t));
    sp->start = xcalloc((size_t)sp->n + 1, sizeof(int64_t));
    for (int i = 0, k = 0; i < m->n; i++) {
        const ManifestEntry *e = &m->entries[i];
        if (strcmp(e->split, name)) continue;
        char path[1100];
        if (e->file[0] == '/')
            snprintf(path, sizeof(path), "%s", e->file);
        else
            snprintf(path, sizeof(path), "%s/%s", dir, e->file);
        // Each rank checksums its share of the shards; a bad one stops every rank anyway.
        int verify = r->opt.verify && (*verified)++ % r->world == r->rank;
        ShardInfo info;
        Shard *s = shard_open(path, verify, &info, err, errlen);
        if (!s) return -1;
        sp->shards[k] = s;
        if (strcmp(info.split, name)) {
            snprintf(err, errlen, "%s: its split attribute is '%s' but %s lists it under '%s'",
                     shard_path(s), info.split, SHARDS_MANIFEST, name);
            return -1;
        }
        if (info.rows * info.row_len != e->tokens) {
            snprintf(err, errlen,
                     "%s: %s lists %lld tokens but the shard holds %lld (replaced or truncated?)",
                     shard_path(s), SHARDS_MANIFEST, (long long)e->tokens,
                     (long long)(info.rows * info.row_len));
            return -1;
        }
        if (!*ref) {
            *ref_store = info;
            *ref = ref_store;
            snprintf(ref_path, ref_path_len, "%s", shard_path(s));
        } else if (info.kind != (*ref)->kind || info.vocab_size != (*ref)->vocab_size ||
                   strcmp(info.tokenizer, (*ref)->tokenizer) || strcmp(info.task, (*ref)->task) ||
                   (info.kind == SHARD_SEQ && info.row_len != (*ref)->row_len)) {
            // Name both files, each described once: which one is odd only the user can tell.
            char a[256], b[256];
            describe_info(&info, a, sizeof(a));
            describe_info(*ref, b, sizeof(b));
            snprintf(err, errlen,
                     "%s holds %s but %s holds %s: the shards of a data set must match",
                     shard_path(s), a, ref_path, b);
            return -1;
        }
        sp->rows[k++] = info.rows;
    }
    return 0;
}

static void close_split(Split *sp) {
    for (int i = 0; i < sp->n; i++) shard_close(sp->shards[i]);
    free(sp->shards), free(sp->rows), free(sp->start);
    memset(sp, 0, sizeof(*sp));
}

static int setup(Reader *r, char *err, size_t errlen) {
    const DataOptions *o = &r->opt;
    Manifest m;
    if (manifest_read(o->path, &m, err, errlen)) return -1;
    ShardInfo ref_store;
    char ref_path[1100] = "";
    const ShardInfo *ref = NULL;
    int verified = 0;
    int rc = open_split(r, &m, "train", &r->train, &verified, &ref, &ref_store, ref_path,
                        sizeof(ref_path), err, errlen);
    if (!rc && o->eval_split[0])
        rc = open_split(r, &m, o->eval_split, &r->eval, &verified, &ref, &ref_store, ref_path,
                        sizeof(ref_path), err, errlen);
    manifest_free(&m);
    if (rc) return -1;
    r->kind = ref->kind, r->vocab = ref->vocab_size;
    r->T = r->kind == SHARD_LM ? (int)o->seq_len : (int)ref->row_len;
    r->S = o->eval_stride > 0 ? (int)o->eval_stride : r->T;
    if (r->kind == SHARD_SEQ && o->seq_len != ref->row_len) {
        snprintf(err, errlen,
                 "data.seq_len is %lld but the shards in %s hold sequences of %lld tokens: set "
                 "data.seq_len=%lld",
                 (long long)o->seq_len, o->path, (long long)ref->row_len, (long long)ref->row_len);
        return -1;
    }
    if (r->kind == SHARD_LM && r->S > r->T) {
        snprintf(err, errlen,
                 "data.eval_stride (%d) must be at most data.seq_len (%d): a longer stride "
                 "would skip tokens",
                 r->S, r->T);
        return -1;
    }
    int64_t longest = 0;
    for (int i = 0; i < r->train.n; i++) {
        int64_t rows = r->train.rows[i];
        longest = rows > longest ? rows : longest;
        r->train.start[i + 1] =
            r->train.start[i] + (r->kind == SHARD_LM ? lm_train_windows(rows, r->T) : rows);
    }
    for (int i = 0; i < r->eval.n; i++)
        r->eval.start[i + 1] =
            r->eval.start[i] +
            (r->kind == SHARD_LM ? lm_eval_windows(r->eval.rows[i], r->T, r->S) : r->eval.rows[i]);
    if (r->train.start[r->train.n] == 0) {
        snprintf(err, errlen, "the train split of %s has no %s (its longest shard holds %lld %s)",
                 o->path, r->kind == SHARD_LM ? "window of data.seq_len + 1 tokens" : "sequence",
                 (long long)longest, r->kind == SHARD_LM ? "tokens" : "sequences");
        return -1;
    }
    r->window = xmalloc(sizeof(int) * (size_t)(r->T + 1));
    r->order.seed = o->seed, r->order.n_train = r->train.start[r->train.n];
    if (r->kind == SHARD_SEQ) sampler_init(&r->sampler, &r->order);
    snprintf(r->describe, sizeof(r->describe), "%s (%s shards, tokenizer %s) from %s", ref->task,
             r->kind == SHARD_LM ? "token" : "sequence", ref->tokenizer, o->path);
    return 0;
}

static void teardown(Reader *r) {
    close_split(&r->train);
    close_split(&r->eval);
    if (r->kind == SHARD_SEQ && r->order.n_train > 0) sampler_free(&r->sampler);
    free(r->window);
}

// ---- the thread ---------------------------------------------------------------------------
static void *reader_main(void *arg) {
    Reader *r = arg;
    h5_errors(r->opt.hdf5_errors);
    int rc = setup(r, r->open_err, sizeof(r->open_err));
    pthread_mutex_lock(&r->mu);
    r->open_rc = rc, r->opened = 1;
    pthread_cond_broadcast(&r->cv);
    while (!rc) {
        while (!r->quit && r->call_state != CALL_POSTED && !(r->active && r->filled < r->depth))
            pthread_cond_wait(&r->cv, &r->mu);
        if (r->quit) break;
        if (r->call_state == CALL_POSTED) {
            pthread_mutex_unlock(&r->mu);
            int call_rc = r->call_fn(r->call_ctx);
            pthread_mutex_lock(&r->mu);
            r->call_rc = call_rc, r->call_state = CALL_DONE;
            pthread_cond_broadcast(&r->cv);
            continue;
        }
        Slot *slot = &r->slots[(r->head + r->filled) % r->depth];
        int64_t pos = r->ring_first + r->filled * r->batch_stride, count = r->ring_count;
        uint64_t generation = r->generation;
        pthread_mutex_unlock(&r->mu);
        slot->rc =
            read_batch(r, 0, pos, count, slot->ids, slot->targets, slot->err, sizeof(slot->err));
        pthread_mutex_lock(&r->mu);
        if (generation == r->generation) {  // else the trainer moved elsewhere: drop it
            r->filled++;
            if (slot->rc) r->active = 0;  // the trainer will stop on this error
            pthread_cond_broadcast(&r->cv);
        }
    }
    pthread_mutex_unlock(&r->mu);
    teardown(r);
    return NULL;
}

// Runs fn(ctx) on the reader's thread, between two batch reads; returns what fn returns.
static int reader_call(Reader *r, int (*fn)(void *ctx), void *ctx) {
    pthread_mutex_lock(&r->mu);
    r->call_fn = fn, r->call_ctx = ctx, r->call_state = CALL_POSTED;
    pthread_cond_broadcast(&r->cv);
    while (r->call_state != CALL_DONE) pthread_cond_wait(&r->cv, &r->mu);
    r->call_state = CALL_IDLE;
    int rc = r->call_rc;
    pthread_mutex_unlock(&r->mu);
    return rc;
}

static pthread_mutex_t readers_mu = PTHREAD_MUTEX_INITIALIZER;
static int readers_open = 0;

Reader *reader_open(const DataOptions *o, int rank, int world, char *err, size_t errlen) {
    pthread_mutex_lock(&readers_mu);
    int busy = readers_open;
    readers_open = 1;
    pthread_mutex_unlock(&readers_mu);
    if (busy) {
        snprintf(err, errlen,
                 "a shard reader is already open in this process (libhdf5 is not "
                 "thread-safe: one reader thread per process)");
        return NULL;
    }
    Reader *r = xcalloc(1, sizeof(Reader));
    r->opt = *o, r->rank = rank, r->world = world, r->depth = o->prefetch;
    r->batch_stride = o->batch_size;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    if (pthread_create(&r->thread, NULL, reader_main, r)) {
        snprintf(err, errlen, "cannot start the reader thread");
        free(r);
        pthread_mutex_lock(&readers_mu);
        readers_open = 0;
        pthread_mutex_unlock(&readers_mu);
        return NULL;
    }
    pthread_mutex_lock(&r->mu);
    while (!r->opened) pthread_cond_wait(&r->cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
    if (r->open_rc) {
        pthread_join(r->thread, NULL);
        snprintf(err, errlen, "%s", r->open_err);
        pthread_mutex_destroy(&r->mu);
        pthread_cond_destroy(&r->cv);
        free(r);
        pthread_mutex_lock(&readers_mu);
        readers_open = 0;
        pthread_mutex_unlock(&readers_mu);
        return NULL;
    }
    // This rank's slice of a global batch: what the trainer asks for at every step.
    r->capacity = o->batch_size / world > 0 ? o->batch_size / world : 1;
    r->slots = xcalloc((size_t)r->depth, sizeof(Slot));
    for (int64_t i = 0; i < r->depth; i++) {
        r->slots[i].ids = xmalloc(sizeof(int) * (size_t)(r->capacity * r->T));
        r->slots[i].targets = xmalloc(sizeof(int) * (size_t)(r->capacity * r->T));
    }
    return r;
}

void reader_close(Reader *r) {
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    r->quit = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->thread, NULL);
    for (int64_t i = 0; i < r->depth; i++) free(r->slots[i].ids), free(r->slots[i].targets);
    free(r->slots);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
    pthread_mutex_lock(&readers_mu);
    readers_open = 0;
    pthread_mutex_unlock(&readers_mu);
}

int reader_vocab(const Reader *r) {
    return (int)r->vocab;
}
int reader_seq_len(const Reader *r) {
    return r->T;
}
int reader_is_lm(const Reader *r) {
    return r->kind == SHARD_LM;
}
const char *reader_describe(const Reader *r) {
    return r->describe;
}
int64_t reader_train_size(const Reader *r) {
    return r->train.start[r->train.n];
}
int64_t reader_eval_size(const Reader *r) {
    return r->eval.n ? r->eval.start[r->eval.n] : 0;
}

typedef struct {
    Reader *r;
    int eval;
    int64_t first, count;
    int *ids, *targets;
    char *err;
    size_t errlen;
} BatchCall;

static int batch_call(void *ctx) {
    BatchCall *b = ctx;
    return read_batch(b->r, b->eval, b->first, b->count, b->ids, b->targets, b->err, b->errlen);
}

static int check_range(const Reader *r, int eval, int64_t first, int64_t count, char *err,
                       size_t errlen) {
    int64_t n = eval ? reader_eval_size(r) : INT64_MAX;
    if (first < 0 || count < 0 || first > n - count) {
        snprintf(err, errlen, "%s examples [%lld, %lld) are outside [0, %lld)",
                 eval ? "evaluation" : "training", (long long)first, (long long)(first + count),
                 (long long)n);
        return -1;
    }
    return 0;
}

int reader_train(Reader *r, int64_t first, int64_t count, int *ids, int *targets, char *err,
                 size_t errlen) {
    if (check_range(r, 0, first, count, err, errlen)) return -1;
    // A request larger than a prefetch slot is read while the caller waits. Chunked or
    // compressed shards are prefetched like plain ones: their H5Dread holds the process-wide
    // HDF5 lock (data/h5util.h), so a checkpoint written meanwhile waits for it, not the reverse.
    if (count > r->capacity) {
        BatchCall b = {r, 0, first, count, ids, targets, err, errlen};
        return reader_call(r, batch_call, &b);
    }
    pthread_mutex_lock(&r->mu);
    if (!r->active || first != r->ring_first || count != r->ring_count) {
        // Not the batch the ring predicted (the first call, a resume, a new pattern): restart
        // prefetching from here; a fill in flight for the old positions is dropped.
        r->generation++;
        r->ring_first = first, r->ring_count = count;
        r->head = 0, r->filled = 0, r->active = 1;
        pthread_cond_broadcast(&r->cv);
    }
    while (!r->filled) pthread_cond_wait(&r->cv, &r->mu);
    Slot *slot = &r->slots[r->head];
    pthread_mutex_unlock(&r->mu);
    // The thread never writes a slot that is counted in `filled`, so it is read unlocked.
    int rc = slot->rc;
    if (rc)
        snprintf(err, errlen, "%s", slot->err);
    else {
        memcpy(ids, slot->ids, sizeof(int) * (size_t)(count * r->T));
        memcpy(targets, slot->targets, sizeof(int) * (size_t)(count * r->T));
    }
    pthread_mutex_lock(&r->mu);
    r->head = (int)((r->head + 1) % r->depth);
    r->filled--;
    r->ring_first += r->batch_stride;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return rc;
}

int reader_eval(Reader *r, int64_t first, int64_t count, int *ids, int *targets, char *err,
                size_t errlen) {
    if (check_range(r, 1, first, count, err, errlen)) return -1;
    BatchCall b = {r, 1, first, count, ids, targets, err, errlen};
    return reader_call(r, batch_call, &b);
}
