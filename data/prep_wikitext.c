// `madtrain prep wikitext`: WikiText (or any text split into train/valid/test files) to
// language-modelling shards. Word level as the corpus is distributed: a line's tokens are its
// ASCII-whitespace-separated words plus <eos> (Python: line.split() + [b"<eos>"] on bytes),
// the vocabulary is the training split's words by decreasing count (ties: first occurrence),
// and words of other splits outside it become <unk>. Byte level: a token per byte, vocab 256.
// Subword (bpe, unigram): a SentencePiece model trained on the training split first
// (data/tokenizer.h), saved as tokenizer.model beside the shards; a line's tokens are its
// pieces plus <eos>. The shards name the tokenizer with the model file's CRC-32
// ("bpe-1a2b3c4d"), so `prep check` tells when the model beside them is not the one that wrote
// them.
//
// Two streaming passes per file (count, then tokenise and write), so memory holds the
// vocabulary and a 1M-token buffer, never the corpus.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../kernels/rng.h"
#include "h5util.h"
#include "prep.h"
#include "tokenizer.h"
#include "util.h"

enum { N_SPLITS = 3, BUFFER_TOKENS = 1 << 20 };
static const char *SPLIT_NAMES[N_SPLITS] = {"train", "valid", "test"};

typedef struct {
    char path[1024];  // empty: split not given
    int64_t bytes, tokens, unknown;
} TextSplit;

// ---- vocabulary -----------------------------------------------------------------------------
typedef struct {
    char *arena;  // the words, NUL-terminated, in order of first occurrence
    size_t arena_len, arena_cap;
    size_t *word_at;
    int64_t *count;
    int64_t n, cap;
    int64_t *slots;  // open addressing: word index + 1, 0 = empty
    size_t n_slots;  // a power of two, at most half full
    int32_t *id_of;  // word index -> token id, once ordered
} Vocab;

static void *grow(void *p, size_t bytes) {
    void *q = realloc(p, bytes);
    if (!q) {
        fprintf(stderr, "madtrain: error: out of memory for the vocabulary (%zu bytes)\n", bytes);
        exit(MT_EXIT_FAIL);
    }
    return q;
}

static size_t find_slot(const Vocab *v, const char *w, size_t n) {
    size_t mask = v->n_slots - 1, i = hash_fnv1a64(w, n) & mask;
    for (;; i = (i + 1) & mask) {
        int64_t k = v->slots[i] - 1;
        if (k < 0) return i;
        const char *s = v->arena + v->word_at[k];
        if (!memcmp(s, w, n) && !s[n]) return i;
    }
}

static void rehash(Vocab *v, size_t n_slots) {
    free(v->slots);
    v->n_slots = n_slots;
    v->slots = xcalloc(n_slots, sizeof(int64_t));
    for (int64_t k = 0; k < v->n; k++) {
        const char *s = v->arena + v->word_at[k];
        v->slots[find_slot(v, s, strlen(s))] = k + 1;
    }
}

// The word's index, inserting it (count 0) when insert is set; -1 when absent.
static int64_t vocab_index(Vocab *v, const char *w, size_t n, int insert) {
    size_t slot = find_slot(v, w, n);
    if (v->slots[slot]) return v->slots[slot] - 1;
    if (!insert) return -1;
    if (v->n == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 1 << 16;
        v->word_at = grow(v->word_at, sizeof(size_t) * (size_t)v->cap);
        v->count = grow(v->count, sizeof(int64_t) * (size_t)v->cap);
    }
    if (v->arena_len + n + 1 > v->arena_cap) {
        v->arena_cap = 2 * (v->arena_len + n + 1) + (1 << 20);
        v->arena = grow(v->arena, v->arena_cap);
    }
    memcpy(v->arena + v->arena_len, w, n);
    v->arena[v->arena_len + n] = 0;
    v->word_at[v->n] = v->arena_len, v->count[v->n] = 0;
    v->arena_len += n + 1;
    v->slots[slot] = ++v->n;
    if ((size_t)v->n * 2 > v->n_slots) rehash(v, v->n_slots * 2);
    return v->n - 1;
}

typedef struct {
    int64_t count, index;
} Ranked;

static int by_count_then_first(const void *a, const void *b) {
    const Ranked *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

// Ids by decreasing count, ties by first occurrence: deterministic, and the frequent words
// get small ids.
static Ranked *vocab_order(Vocab *v) {
    Ranked *r = xmalloc(sizeof(Ranked) * (size_t)v->n);
    for (int64_t k = 0; k < v->n; k++) r[k].count = v->count[k], r[k].index = k;
    qsort(r, (size_t)v->n, sizeof(Ranked), by_count_then_first);
    v->id_of = xmalloc(sizeof(int32_t) * (size_t)v->n);
    for (int64_t id = 0; id < v->n; id++) v->id_of[r[id].index] = (int32_t)id;
    return r;
}

static void vocab_free(Vocab *v) {
    free(v->arena), free(v->word_at), free(v->count), free(v->slots), free(v->id_of);
}

typedef struct {
    const Vocab *v;
    const Ranked *order;
} VocabFile;

static int write_vocab_lines(FILE *f, void *ctx) {
    const VocabFile *vf = ctx;
    for (int64_t id = 0; id < vf->v->n; id++)
        if (fprintf(f, "%s\n", vf->v->arena + vf->v->word_at[vf->order[id].index]) < 0) return -1;
    return 0;
}

static int write_pieces(FILE *f, void *ctx) {
    SubwordTokenizer *t = ctx;
    for (int id = 0; id < subword_size(t); id++)
        if (fprintf(f, "%s\n", subword_piece(t, id)) < 0) return -1;
    return 0;
}

// ---- text -----------------------------------------------------------------------------------
static int is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

// WikiText articles open with a line " = Title = " (sections are " = = Heading = = ").
static int is_title(const char *line, size_t n) {
    while (n && is_space(line[n - 1])) n--;
    while (n && is_space(*line)) line++, n--;
    return n > 4 && !strncmp(line, "= ", 2) && strncmp(line, "= =", 3) &&
           !strncmp(line + n - 2, " =", 2);
}

// Calls word(ctx, w, n) for every word of the line (NUL-terminating it in place).
static int64_t for_each_word(char *line, size_t n, void (*word)(void *, char *, size_t),
                             void *ctx) {
    int64_t words = 0;
    for (size_t i = 0; i < n;) {
        while (i < n && is_space(line[i])) i++;
        size_t start = i;
        while (i < n && !is_space(line[i])) i++;
        if (i > start) {
            char saved = line[i];
            line[i] = 0;
            if (word) word(ctx, line + start, i - start);
            line[i] = saved;
            words++;
        }
    }
    return words;
}

// The index first: inserting may move the count array.
static void count_word(void *ctx, char *w, size_t n) {
    int64_t k = vocab_index(ctx, w, n, 1);
    ((Vocab *)ctx)->count[k]++;
}

// Pass 1: tokens of the split (and, for the training split, the vocabulary counts).
// A line without its line end (the tokenizer sees the text only).
static size_t line_text(const char *line, size_t n) {
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
    return n;
}

static int count_split(TextSplit *sp, const char *name, int byte_level, Vocab *vocab,
                       SubwordTokenizer *sub, int *ids, char *err, size_t errlen) {
    FILE *f = fopen(sp->path, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st)) {
        snprintf(err, errlen, "cannot read %s: %s", sp->path, strerror(errno));
        if (f) fclose(f);
        return -1;
    }
    sp->bytes = (int64_t)st.st_size;
    if (byte_level) {
        sp->tokens = sp->bytes;
        fclose(f);
        return 0;
    }
    char *line = NULL, what[96];
    size_t cap = 0;
    ssize_t n;
    snprintf(what, sizeof(what), "%s pass 1/2", name);
    int rc = 0;
    while (!rc && (n = getline(&line, &cap, f)) > 0) {
        if (sub) {
            int64_t k = subword_encode(sub, line, line_text(line, (size_t)n), ids, BUFFER_TOKENS,
                                       err, errlen);
            if (k < 0) rc = -1;
            sp->tokens += k + 1;
        } else {
            sp->tokens += for_each_word(line, (size_t)n, vocab ? count_word : NULL, vocab) + 1;
            if (vocab) count_word(vocab, "<eos>", 5);
        }
        prep_progress(what, ftello(f), sp->bytes, sp->tokens);
    }
    if (!rc && ferror(f)) {
        rc = -1;
        snprintf(err, errlen, "cannot read %s: %s", sp->path, strerror(errno));
    }
    free(line);
    fclose(f);
    return rc;
}

typedef struct {
    Vocab *vocab;
    int32_t unk;
    int *buf;
    int64_t n, unknown;
} WordSink;

static void emit_word(void *ctx, char *w, size_t n) {
    WordSink *s = ctx;
    int64_t k = vocab_index(s->vocab, w, n, 0);
    if (k < 0) s->unknown++;
    s->buf[s->n++] = k < 0 ? s->unk : s->vocab->id_of[k];
}

// Pass 2: tokens into the split's shards, documents at article titles.
static int write_split(TextSplit *sp, SplitWriter *sw, Vocab *vocab, SubwordTokenizer *sub,
                       char *err, size_t errlen) {
    FILE *f = fopen(sp->path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot read %s: %s", sp->path, strerror(errno));
        return -1;
    }
    WordSink sink = {vocab, 0, xmalloc(sizeof(int) * (size_t)BUFFER_TOKENS), 0, 0};
    int32_t eos = 0;
    if (vocab) {
        sink.unk = vocab->id_of[vocab_index(vocab, "<unk>", 5, 0)];
        eos = vocab->id_of[vocab_index(vocab, "<eos>", 5, 0)];
    }
    if (sub) eos = subword_eos(sub);
    char *line = NULL, what[96];
    size_t cap = 0;
    ssize_t n;
    int rc = 0, doc_has_text = 0;
    snprintf(what, sizeof(what), "%s pass 2/2", sw->info.split);
    while (!rc && (n = getline(&line, &cap, f)) > 0) {
        // A title opens a document, unless nothing but blank lines came since the last one.
        if (is_title(line, (size_t)n) && doc_has_text) {
            if (sink.n) rc = split_put(sw, sink.buf, NULL, sink.n, err, errlen);
            sink.n = 0, doc_has_text = 0;
            split_doc_start(sw);
        }
        if (rc) break;
        // Flush first when a long line might not fit (at most one token per byte, a subword
        // tokenizer's leading word marker, and <eos>).
        if (sink.n + n + 2 > BUFFER_TOKENS) {
            rc = split_put(sw, sink.buf, NULL, sink.n, err, errlen);
            sink.n = 0;
        }
        if (n + 2 > BUFFER_TOKENS) {
            snprintf(err, errlen, "%s: a line of %zd bytes is longer than prep handles (%d)",
                     sp->path, n, BUFFER_TOKENS - 1);
            rc = -1;
        }
        if (rc) break;
        int64_t before = sink.n;
        if (sub) {
            int64_t k = subword_encode(sub, line, line_text(line, (size_t)n), sink.buf + sink.n,
                                       BUFFER_TOKENS - 1 - sink.n, err, errlen);
            if (k < 0) {
                rc = -1;
                break;
            }
            for (int64_t i = 0; i < k; i++) sink.unknown += sink.buf[sink.n + i] == 0;
            sink.n += k;
            sink.buf[sink.n++] = eos;
            doc_has_text |= k > 0;
        } else if (vocab) {
            for_each_word(line, (size_t)n, emit_word, &sink);
            sink.buf[sink.n++] = eos;
            doc_has_text |= sink.n - before > 1;
        } else {
            for (ssize_t i = 0; i < n; i++) {
                sink.buf[sink.n++] = (unsigned char)line[i];
                doc_has_text |= !is_space(line[i]);
            }
        }
        prep_progress(what, ftello(f), sp->bytes, sw->written + sink.n);
    }
    if (!rc && ferror(f)) {
        snprintf(err, errlen, "cannot read %s: %s", sp->path, strerror(errno));
        rc = -1;
    }
    if (!rc && sink.n) rc = split_put(sw, sink.buf, NULL, sink.n, err, errlen);
    if (split_end(sw, err, errlen) && !rc) rc = -1;
    sp->unknown = sink.unknown;
    free(line), free(sink.buf);
    fclose(f);
    return rc;
}

static int file_exists(const char *path) {
    struct stat st;
    return !stat(path, &st) && S_ISREG(st.st_mode);
}

int prep_wikitext(int argc, char **argv) {
    TextSplit splits[N_SPLITS];
    memset(splits, 0, sizeof(splits));
    const char *in = NULL, *out = NULL, *tokenizer = "word", *dtype = "auto";
    int64_t per_shard = (int64_t)1 << 28, subword_vocab = 32000;
    int gzip = 0;
    char err[4200];
    err[0] = 0;
    for (int i = 1; i < argc && !err[0]; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--hdf5-errors")) {
            h5_errors(1);
            continue;
        }
        if (!v) {
            snprintf(err, sizeof(err), "%s", a[0] == '-' ? "an option needs a value" : a);
            break;
        }
        i++;
        if (!strcmp(a, "--in"))
            in = v;
        else if (!strcmp(a, "--out"))
            out = v;
        else if (!strcmp(a, "--tokenizer"))
            tokenizer = v;
        else if (!strcmp(a, "--dtype"))
            dtype = v;
        else if (!strcmp(a, "--vocab-size"))
            subword_vocab = atoll(v);
        else if (!strcmp(a, "--shard-tokens"))
            per_shard = atoll(v);
        else if (!strcmp(a, "--gzip"))
            gzip = atoi(v);
        else if (!strcmp(a, "--train"))
            snprintf(splits[0].path, sizeof(splits[0].path), "%s", v);
        else if (!strcmp(a, "--valid"))
            snprintf(splits[1].path, sizeof(splits[1].path), "%s", v);
        else if (!strcmp(a, "--test"))
            snprintf(splits[2].path, sizeof(splits[2].path), "%s", v);
        else
            snprintf(err, sizeof(err), "unknown option '%s'", a);
    }
    int byte_level = !strcmp(tokenizer, "byte");
    int subword = !strcmp(tokenizer, "bpe") || !strcmp(tokenizer, "unigram");
    if (!err[0] && !out) snprintf(err, sizeof(err), "--out DIR is required");
    if (!err[0] && !byte_level && !subword && strcmp(tokenizer, "word"))
        snprintf(err, sizeof(err), "--tokenizer must be word, byte, bpe or unigram, not '%s'",
                 tokenizer);
    if (!err[0] && subword && (subword_vocab < 16 || subword_vocab > 1 << 20))
        snprintf(err, sizeof(err), "--vocab-size must be from 16 to %d, not %lld", 1 << 20,
                 (long long)subword_vocab);
    if (!err[0] && subword && !subword_available())
        snprintf(err, sizeof(err),
                 "--tokenizer %s needs SentencePiece, and this madtrain was built without it: "
                 "install libsentencepiece-dev and rebuild (bash launch/setup.sh)",
                 tokenizer);
    if (!err[0] && strcmp(dtype, "auto") && strcmp(dtype, "uint16") && strcmp(dtype, "uint32"))
        snprintf(err, sizeof(err), "--dtype must be auto, uint16 or uint32, not '%s'", dtype);
    if (!err[0] && (per_shard < 1 || gzip < 0 || gzip > 9))
        snprintf(err, sizeof(err), "--shard-tokens must be >= 1 and --gzip a level from 0 to 9");
    for (int s = 0; s < N_SPLITS && in && !err[0]; s++) {
        static const char *patterns[] = {"%s/%s.txt", "%s/wiki.%s.tokens", "%s/wiki.%s.raw"};
        for (int p = 0; p < 3 && !splits[s].path[0]; p++) {
            char path[1024];
            snprintf(path, sizeof(path), patterns[p], in, SPLIT_NAMES[s]);
            if (file_exists(path)) snprintf(splits[s].path, sizeof(splits[s].path), "%s", path);
        }
    }
    if (!err[0] && !splits[0].path[0])
        snprintf(err, sizeof(err),
                 in ? "no training split in %s (looked for train.txt, wiki.train.tokens, "
                      "wiki.train.raw): give --train FILE"
                    : "give --in DIR or --train FILE%s",
                 in ? in : "");
    if (err[0]) {
        fprintf(stderr, "madtrain: error: prep wikitext: %s\n", err);
        return MT_EXIT_USAGE;
    }
    if (mkdir_p(out)) {
        fprintf(stderr, "madtrain: error: cannot create %s: %s\n", out, strerror(errno));
        return MT_EXIT_FAIL;
    }

    printf("prep wikitext: %s tokenizer", tokenizer);
    for (int s = 0; s < N_SPLITS; s++)
        if (splits[s].path[0]) printf(", %s = %s", SPLIT_NAMES[s], splits[s].path);
    printf(" -> %s\n", out);
    fflush(stdout);
    Vocab vocab = {0};
    vocab.n_slots = 1 << 17;
    vocab.slots = xcalloc(vocab.n_slots, sizeof(int64_t));
    int rc = 0;
    SubwordTokenizer *sub = NULL;
    int *ids = subword ? xmalloc(sizeof(int) * BUFFER_TOKENS) : NULL;
    char shard_tokenizer[32];
    snprintf(shard_tokenizer, sizeof(shard_tokenizer), "%s", tokenizer);
    if (subword) {
        char path[1100];
        snprintf(path, sizeof(path), "%s/tokenizer.model", out);
        unsigned crc = 0;
        rc =
            subword_train(splits[0].path, path, tokenizer, (int)subword_vocab, 1, err, sizeof(err));
        if (!rc && !(sub = subword_open(path, err, sizeof(err)))) rc = -1;
        if (!rc && file_crc32(path, &crc)) {
            snprintf(err, sizeof(err), "cannot read %s: %s", path, strerror(errno));
            rc = -1;
        }
        snprintf(shard_tokenizer, sizeof(shard_tokenizer), "%s-%08x", tokenizer, crc);
        if (!rc)
            printf("prep: %s tokenizer of %d pieces trained on %s -> %s (%.1fs)\n", tokenizer,
                   subword_size(sub), splits[0].path, path, prep_elapsed());
    }
    for (int s = 0; s < N_SPLITS && !rc; s++)
        if (splits[s].path[0])
            rc = count_split(&splits[s], SPLIT_NAMES[s], byte_level,
                             !byte_level && !subword && s == 0 ? &vocab : NULL, sub, ids, err,
                             sizeof(err));
    int64_t vocab_size = 256;
    Ranked *order = NULL;
    if (!rc && subword) {
        vocab_size = subword_size(sub);
        char path[1100];
        snprintf(path, sizeof(path), "%s/vocab.txt", out);
        if (write_file_atomic(path, write_pieces, sub)) {
            snprintf(err, sizeof(err), "cannot write %s: %s", path, strerror(errno));
            rc = -1;
        }
    } else if (!rc && !byte_level) {
        vocab_index(&vocab, "<unk>", 5, 1);  // count 0 if the training text has none
        order = vocab_order(&vocab);
        vocab_size = vocab.n;
        char path[1100];
        snprintf(path, sizeof(path), "%s/vocab.txt", out);
        VocabFile vf = {&vocab, order};
        if (write_file_atomic(path, write_vocab_lines, &vf)) {
            snprintf(err, sizeof(err), "cannot write %s: %s", path, strerror(errno));
            rc = -1;
        }
    }
    int token_bytes =
        !strcmp(dtype, "uint32") || (!strcmp(dtype, "auto") && vocab_size > 65536) ? 4 : 2;
    if (!rc && token_bytes == 2 && vocab_size > 65536) {
        snprintf(err, sizeof(err), "the vocabulary (%lld words) does not fit uint16 ids",
                 (long long)vocab_size);
        rc = -1;
    }
    if (!rc && !byte_level && !subword)
        printf("prep: vocabulary: %lld words from the training split (%lld tokens), %s ids\n",
               (long long)vocab_size, (long long)splits[0].tokens,
               token_bytes == 2 ? "uint16" : "uint32");
    Manifest m = {0};
    for (int s = 0; s < N_SPLITS && !rc; s++) {
        if (!splits[s].path[0] || !splits[s].tokens) continue;
        SplitWriter sw = {.out_dir = out,
                          .gzip_level = gzip,
                          .rows_per_shard = per_shard,
                          .total_rows = splits[s].tokens,
                          .manifest = &m};
        sw.info.kind = SHARD_LM, sw.info.vocab_size = vocab_size, sw.info.row_len = 1;
        sw.info.token_bytes = token_bytes;
        snprintf(sw.info.tokenizer, sizeof(sw.info.tokenizer), "%s", shard_tokenizer);
        snprintf(sw.info.task, sizeof(sw.info.task), "lm");
        snprintf(sw.info.split, sizeof(sw.info.split), "%s", SPLIT_NAMES[s]);
        rc = write_split(&splits[s], &sw, byte_level || subword ? NULL : &vocab, sub, err,
                         sizeof(err));
        if (rc) break;
        printf("prep: %-5s %lld tokens in %d shard(s)", SPLIT_NAMES[s], (long long)splits[s].tokens,
               sw.shards);
        if (s > 0 && !byte_level && !subword)
            printf(", %.2f%% outside the training vocabulary (<unk>)",
                   100.0 * splits[s].unknown / splits[s].tokens);
        if (subword && splits[s].unknown)
            printf(", %lld characters the tokenizer has no piece for",
                   (long long)splits[s].unknown);
        printf("\n");
    }
    if (!rc) rc = manifest_write(out, &m, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "madtrain: error: %s\n", err);
    } else {
        int64_t total = 0;
        for (int s = 0; s < N_SPLITS; s++) total += splits[s].tokens;
        printf("prep wikitext: done in %.2fs: %lld tokens, vocab %lld, %d shard(s) -> %s\n",
               prep_elapsed(), (long long)total, (long long)vocab_size, m.n, out);
    }
    manifest_free(&m);
    free(order), free(ids);
    if (sub) subword_close(sub);
    vocab_free(&vocab);
    return rc ? MT_EXIT_FAIL : 0;
}
