// The state-tracking tasks and index copy hold their definitions (docs/tasks.md): every label
// is recomputed here by an independent route (unranked permutations composed by hand, the
// expression evaluated products-first from its token list), lengths follow the train/test
// ranges, and padding is never scored. Packed rows (data.pack) hold whole examples in stream
// order, as many as fit, whatever the slicing of the rows.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../data/loader.h"
#include "../data/synthetic.h"
#include "../data/tasks_state.h"
#include "../src/data_config.h"

static int failures = 0;
#define CHECK(cond, ...)                                \
    do {                                                \
        if (!(cond)) {                                  \
            printf("FAIL %s:%d: ", __FILE__, __LINE__); \
            printf(__VA_ARGS__);                        \
            printf("\n");                               \
            failures++;                                 \
        }                                               \
    } while (0)

enum { T = 260 };

static Task make(int task, const char *group, int generators) {
    Config c;
    config_defaults(&c);
    c.task = task, c.seq_len = T, c.generators = generators;
    snprintf(c.group, sizeof(c.group), "%s", group);
    char err[256];
    CHECK(config_validate(&c, 1, err, sizeof(err)) == 0, "config rejected: %s", err);
    DataOptions o = data_options_from_config(&c);
    return task_from_options(&o);
}

// A recursive-descent evaluator of a bracketed token list (numbers 5 + v, + 1, - 2, * 3,
// ( 10, ) 11 for mod 5), written from the grammar, not from the generator: expr = term
// (('+' | '-') term)*, term = factor ('*' factor)*, factor = number | '(' expr ')'. Sets *bad
// on a malformed list.
typedef struct {
    const int *ids;
    int at, n, bad, depth, max_depth;
} Parser;
static long parse_expr(Parser *p);
static long parse_factor(Parser *p) {
    if (p->at >= p->n) return p->bad = 1, 0;
    int tok = p->ids[p->at++];
    if (tok >= 5 && tok <= 9) return tok - 5;
    if (tok != 10) return p->bad = 1, 0;
    if (++p->depth > p->max_depth) p->max_depth = p->depth;
    long v = parse_expr(p);
    if (p->at >= p->n || p->ids[p->at++] != 11) p->bad = 1;
    p->depth--;
    return v;
}
static long parse_term(Parser *p) {
    long v = parse_factor(p);
    while (p->at < p->n && p->ids[p->at] == 3) p->at++, v = v * parse_factor(p) % 5;
    return v;
}
static long parse_expr(Parser *p) {
    long v = parse_term(p);
    while (p->at < p->n && (p->ids[p->at] == 1 || p->ids[p->at] == 2)) {
        int op = p->ids[p->at++];
        long w = parse_term(p);
        v = op == 1 ? v + w : v - w;
    }
    return ((v % 5) + 5) % 5;
}

// The example's length: the first padding position.
static int length_of(const int *ids) {
    int n = 0;
    while (n < T && ids[n] != 0) n++;
    return n;
}

static void check_lengths(const char *what, int split, int len, const int *ids, const int *tg,
                          const int *lv, int extra) {
    int lo = split == SPLIT_TEST ? 40 : 3, hi = split == SPLIT_TEST ? 256 : 40;
    CHECK(len - extra >= lo && len - extra <= hi, "%s: length %d outside [%d, %d]", what, len, lo,
          hi);
    for (int p = len; p < T; p++) CHECK(ids[p] == 0 && tg[p] < 0, "%s: padding scored", what);
    for (int p = 0; p < T; p++) {
        int want = split == SPLIT_TEST && tg[p] >= 0 ? 1 + (len - extra - 40) * 4 / 217 : 0;
        CHECK(lv[p] == want, "%s: position %d bucket %d, want %d", what, p, lv[p], want);
    }
}

// token -> permutation of n (inverse of the Lehmer rank), for a one-factor S_n / A_n group
static void unrank_perm(int64_t rank, int n, int *p) {
    int used[8] = {0}, digits[8];
    for (int i = n - 1; i >= 0; i--) digits[i] = (int)(rank % (n - i)), rank /= n - i;
    for (int i = 0; i < n; i++) {
        int k = digits[i], v = -1;
        while (k >= 0) {
            v++;
            if (!used[v]) k--;
        }
        used[v] = 1, p[i] = v;
    }
}

static int odd_perm(const int *p, int n) {
    int odd = 0;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) odd ^= p[i] > p[j];
    return odd;
}

static void check_word_problem(const char *group, int n, int even_only, int generators) {
    Task t = make(DATA_TASK_WORD_PROBLEM, group, generators);
    int ids[T], tg[T], lv[T], seen[5041] = {0}, distinct = 0, inputs_seen[5041] = {0};
    int n_inputs = 0;
    for (int e = 0; e < 600; e++) {
        int split = e % 2 ? SPLIT_TEST : SPLIT_TRAIN;
        task_example_levels(&t, split, e, ids, tg, lv);
        int len = length_of(ids), acc[8], x[8], ok = 1;
        check_lengths(group, split, len, ids, tg, lv, 0);
        for (int i = 0; i < n; i++) acc[i] = i;
        for (int p = 0; p < len && ok; p++) {
            unrank_perm(ids[p] - 1, n, x);
            if (even_only) ok &= !odd_perm(x, n);
            int r[8];
            for (int i = 0; i < n; i++) r[i] = acc[x[i]];
            memcpy(acc, r, sizeof(acc));
            int want[8];
            unrank_perm(tg[p] - 1, n, want);
            ok &= !memcmp(want, acc, sizeof(int) * n);
            if (!inputs_seen[ids[p]]++) n_inputs++;
            if (p == 0 && !seen[ids[p]]++) distinct++;
        }
        CHECK(ok, "word_problem %s example %d: a label is not the running product", group, e);
        if (!ok) break;
    }
    if (generators)
        CHECK(n_inputs == 2, "%s two-generator form: %d distinct inputs", group, n_inputs);
    else
        CHECK(distinct == (even_only ? 60 : 120) || n != 5, "%s: %d distinct first elements", group,
              distinct);
}

// data.pack on task_keys: each row is the next stream examples, whole and in order, as many as
// fit (the next one would not), then padding as its own segment; an epoch's rows are the fewest
// that hold its examples; rows read one at a time, backwards, from a fresh loader, on another
// rank, are the same rows; the held-out rows hold every example once with its length bucket.
static void test_packed(const char *task_keys) {
    enum { PT = 48, NTRAIN = 300, NTEST = 101 };
    Config c;
    config_defaults(&c);
    char buf[512], err[512];
    snprintf(buf, sizeof(buf),
             "%s data.pack=true data.seq_len=48 data.min_len=1 data.max_len=20 "
             "data.test_min_len=21 data.test_max_len=40 data.train_examples=300 "
             "data.test_examples=101 seed=3",
             task_keys);
    for (char *save = NULL, *kv = strtok_r(buf, " ", &save); kv; kv = strtok_r(NULL, " ", &save))
        CHECK(config_override(&c, kv, err, sizeof(err)) == 0, "%s", err);
    CHECK(config_validate(&c, 1, err, sizeof(err)) == 0, "packed config rejected: %s", err);
    DataOptions o = data_options_from_config(&c);
    Loader *l = loader_open(&o, 0, 1, err, sizeof(err)), *fresh = loader_open(&o, 1, 2, err, 64);
    Task task = task_from_options(&o);
    Sampler smp;
    sampler_init(&smp, &task);
    CHECK(loader_packed(l), "%s: not packed", task_keys);
    for (int split = 0; split <= 1; split++) {
        int64_t rows = split ? loader_eval_size(l, EVAL_TEST) : loader_train_size(l);
        int64_t R = split ? rows : 3 * rows + 5, n = split ? NTEST : NTRAIN;
        int *ids = malloc(sizeof(int) * 4 * R * PT), *tg = ids + R * PT, *lv = tg + R * PT;
        int *pos = lv + R * PT, e_ids[PT], e_tg[PT], e_lv[PT], row[4][PT];
        if (split)
            loader_eval(l, EVAL_TEST, 0, R, ids, tg, lv, pos, err, sizeof(err));
        else
            loader_train(l, 0, R, ids, tg, pos, err, sizeof(err));
        int64_t p = 0, bad = 0, at_epoch = -1;
        for (int64_t r = 0; r < R; r++) {
            if (r == rows) at_epoch = p;
            const int *I = ids + r * PT, *Y = tg + r * PT, *L = lv + r * PT, *P = pos + r * PT;
            int at = 0;
            for (;; p++) {
                if (split && p == n) break;
                int64_t e = split ? p : sampler_example(&smp, p);
                int s = split ? SPLIT_TEST : SPLIT_TRAIN, len = task_example_length(&task, s, e);
                task_example_levels(&task, s, e, e_ids, e_tg, e_lv);
                int padded = 0;  // the length is where the generated example's padding starts
                for (int t = len; t < PT; t++) padded |= e_ids[t] != 0 || e_tg[t] >= 0;
                bad += padded || len < 1 || (len < PT && e_ids[len - 1] == 0);
                if (at + len > PT) break;  // does not fit: the row ends here
                for (int t = 0; t < len; t++)
                    bad += I[at + t] != e_ids[t] || Y[at + t] != e_tg[t] || P[at + t] != t ||
                           (split && L[at + t] != e_lv[t]);
                at += len;
            }
            for (int t = at; t < PT; t++)  // padding: unscored, its own segment
                bad += I[t] != 0 || Y[t] >= 0 || P[t] != t - at || (split && L[t] != 0);
            bad += at == 0 && !(split && p == n);  // every row holds an example
        }
        CHECK(!bad, "%s split %d: %lld token(s) off the stream's examples", task_keys, split,
              (long long)bad);
        if (split) {
            CHECK(p == n, "%s: the test rows hold %lld of %d examples", task_keys, (long long)p,
                  NTEST);
        } else {
            // the epoch's rows hold its examples; one row fewer would not
            CHECK(at_epoch >= n, "%s: an epoch's %lld rows hold %lld of %d examples", task_keys,
                  (long long)rows, (long long)at_epoch, NTRAIN);
            CHECK(rows > 1 && rows < NTRAIN, "%s: %lld rows for %d examples", task_keys,
                  (long long)rows, NTRAIN);
            int64_t diffs = 0;  // single rows, backwards, from another loader (rank 1 of 2)
            for (int64_t r = R - 1; r >= 0; r -= 7) {
                loader_train(fresh, r, 1, row[0], row[1], row[2], err, sizeof(err));
                for (int t = 0; t < PT; t++)
                    diffs += row[0][t] != ids[r * PT + t] || row[1][t] != tg[r * PT + t] ||
                             row[2][t] != pos[r * PT + t];
            }
            CHECK(!diffs, "%s: rows read singly differ in %lld token(s)", task_keys,
                  (long long)diffs);
        }
        free(ids);
    }
    sampler_free(&smp);
    loader_close(l), loader_close(fresh);
    printf("ok   packed rows: %s\n", task_keys);
}

int main(void) {
    int ids[T], tg[T], lv[T];
    // parity and cumulative parity: labels 1 + parity of the 2s so far
    for (int cum = 0; cum <= 1; cum++) {
        Task t = make(cum ? DATA_TASK_CUMULATIVE_PARITY : DATA_TASK_PARITY, "S5", 0);
        CHECK(t.vocab == 3, "parity vocab %d", t.vocab);
        int ones = 0, bits = 0;
        for (int e = 0; e < 400; e++) {
            int split = e % 2 ? SPLIT_TEST : SPLIT_TRAIN;
            task_example_levels(&t, split, e, ids, tg, lv);
            int len = length_of(ids), parity = 0, ok = 1;
            check_lengths("parity", split, len, ids, tg, lv, 0);
            for (int p = 0; p < len; p++) {
                ok &= ids[p] == 1 || ids[p] == 2;
                parity ^= ids[p] == 2, ones += ids[p] == 2, bits++;
                int want = cum || p == len - 1 ? 1 + parity : -1;
                ok &= tg[p] == want;
            }
            CHECK(ok, "%s example %d", cum ? "cumulative_parity" : "parity", e);
        }
        CHECK(ones > bits * 0.45 && ones < bits * 0.55, "bits not balanced: %d of %d", ones, bits);
    }
    // modular arithmetic mod 5: evaluate the token list products-first
    Task t = make(DATA_TASK_MODULAR_ARITHMETIC, "S5", 0);
    CHECK(t.vocab == 10, "modular vocab %d", t.vocab);
    for (int e = 0; e < 400; e++) {
        int split = e % 2 ? SPLIT_TEST : SPLIT_TRAIN;
        task_example_levels(&t, split, e, ids, tg, lv);
        int len = length_of(ids), ok = ids[len - 1] == 4 && len % 2 == 0;
        // the drawn length rounded down to odd tokens, then =; the bucket is the drawn length's
        int lo = split == SPLIT_TEST ? 40 : 3, hi = split == SPLIT_TEST ? 256 : 40;
        ok &= len - 1 >= lo - 1 && len - 1 <= hi;
        for (int p = len; p < T; p++) ok &= ids[p] == 0 && tg[p] < 0;
        ok &= split == SPLIT_TEST ? lv[len - 1] >= 1 && lv[len - 1] <= 4 : lv[len - 1] == 0;
        long terms[300], n_terms = 0, signs[300];
        long cur = ids[0] - 5;
        int sign = 1;
        for (int p = 1; p + 1 < len; p += 2) {
            int op = ids[p], v = ids[p + 1] - 5;
            ok &= op >= 1 && op <= 3 && v >= 0 && v < 5;
            if (op == 3) {
                cur = cur * v;
            } else {
                terms[n_terms] = cur % 5, signs[n_terms++] = sign;
                cur = v, sign = op == 1 ? 1 : -1;
            }
        }
        terms[n_terms] = cur % 5, signs[n_terms++] = sign;
        long total = 0;
        for (int i = 0; i < n_terms; i++) total += signs[i] * terms[i];
        total = (total % 5 + 5) % 5;
        for (int p = 0; p < len - 1; p++) ok &= tg[p] < 0;
        ok &= tg[len - 1] == 5 + total;
        CHECK(ok, "modular_arithmetic example %d: label %d, evaluated %ld", e, tg[len - 1], total);
    }
    // the bracketed variant: vocabulary 12 ( ( 10, ) 11 ), the same length protocol, every
    // example a well-formed expression whose value the parser above agrees with; brackets
    // appear, nested
    {
        Config c;
        config_defaults(&c);
        c.task = DATA_TASK_MODULAR_ARITHMETIC, c.seq_len = T, c.brackets = 1;
        char err[256];
        CHECK(config_validate(&c, 1, err, sizeof(err)) == 0, "config rejected: %s", err);
        DataOptions o = data_options_from_config(&c);
        t = task_from_options(&o);
        CHECK(t.vocab == 12, "bracketed modular vocab %d", t.vocab);
        int with_brackets = 0, deepest = 0;
        for (int e = 0; e < 400; e++) {
            int split = e % 2 ? SPLIT_TEST : SPLIT_TRAIN;
            task_example_levels(&t, split, e, ids, tg, lv);
            int len = length_of(ids), lo = split == SPLIT_TEST ? 40 : 3;
            int hi = split == SPLIT_TEST ? 256 : 40;
            Parser p = {ids, 0, len - 1, 0, 0, 0};
            long v = parse_expr(&p);
            int ok = !p.bad && p.at == len - 1 && ids[len - 1] == 4 && tg[len - 1] == 5 + v;
            ok &= len - 1 >= lo - 1 && len - 1 <= hi && (len - 1) % 2 == 1;
            for (int q = 0; q < len - 1; q++) ok &= tg[q] < 0 && ids[q] >= 1 && ids[q] <= 11;
            ok &= split == SPLIT_TEST ? lv[len - 1] >= 1 && lv[len - 1] <= 4 : lv[len - 1] == 0;
            with_brackets += p.max_depth > 0;
            deepest = p.max_depth > deepest ? p.max_depth : deepest;
            CHECK(ok, "bracketed example %d (length %d): label %d, parsed %ld%s", e, len,
                  tg[len - 1], v, p.bad ? ", malformed" : "");
        }
        CHECK(with_brackets > 200 && deepest >= 3,
              "bracketed: %d of 400 examples have brackets, deepest nesting %d", with_brackets,
              deepest);
    }
    // word problems: S5, A5 (even permutations only), the two-generator S5
    check_word_problem("S5", 5, 0, 0);
    check_word_problem("A5", 5, 1, 0);
    check_word_problem("S5", 5, 0, 1);
    check_word_problem("A4", 4, 1, 1);
    // a product group's vocabulary: 1 + 24 x 5 codes for A4 x Z5; its generator form draws
    // each factor's two generators (identity in the other factor), so the running products
    // reach the whole product group, even for Z2 x Z2, whose factors' generators coincide
    t = make(DATA_TASK_WORD_PROBLEM, "A4xZ5", 0);
    CHECK(t.vocab == 121, "A4xZ5 vocab %d", t.vocab);
    for (int gen = 0; gen <= 1; gen++) {
        const char *name = gen ? "Z2xZ2" : "A4xZ5";
        t = make(DATA_TASK_WORD_PROBLEM, name, 1);
        int reached[122] = {0}, n_reached = 0, inputs[122] = {0}, n_inputs = 0;
        for (int e = 0; e < 300; e++) {
            task_example_levels(&t, SPLIT_TRAIN, e, ids, tg, lv);
            for (int p = 0; p < length_of(ids); p++) {
                if (!reached[tg[p]]++) n_reached++;
                if (!inputs[ids[p]]++) n_inputs++;
            }
        }
        int order = gen ? 4 : 60, n_gen = gen ? 2 : 3;  // Z_n's two generators are one token
        CHECK(n_reached == order, "%s by generators reaches %d of %d elements", name, n_reached,
              order);
        CHECK(n_inputs == n_gen, "%s generator form: %d distinct inputs", name, n_inputs);
    }
    TaskGroup g;
    char err[256];
    CHECK(group_parse("S9", &g, err, sizeof(err)) < 0, "S9 accepted");
    CHECK(group_parse("A4x", &g, err, sizeof(err)) < 0, "A4x accepted");
    CHECK(group_parse("Z60", &g, err, sizeof(err)) == 0 && g.vocab == 61, "Z60 refused");
    // index copy: 8 contents, separator 16, queries 17 + idx scored c_idx
    Config c;
    config_defaults(&c);
    c.task = DATA_TASK_INDEX_COPY, c.seq_len = 32;
    DataOptions o = data_options_from_config(&c);
    t = task_from_options(&o);
    CHECK(t.vocab == 25, "index_copy vocab %d", t.vocab);
    for (int e = 0; e < 100; e++) {
        task_example(&t, SPLIT_TEST, e, ids, tg);
        int ok = ids[8] == 16;
        for (int p = 0; p < 8; p++) ok &= ids[p] < 16 && tg[p] < 0;
        for (int p = 9; p < 32; p++) ok &= ids[p] >= 17 && ids[p] < 25 && tg[p] == ids[ids[p] - 17];
        CHECK(ok, "index_copy example %d", e);
    }
    test_packed("data.task=parity");
    test_packed("data.task=modular_arithmetic");
    test_packed("data.task=modular_arithmetic data.brackets=true");
    test_packed("data.task=word_problem data.group=S5");
    printf("%s: %d failure(s)\n", failures ? "FAILED" : "PASSED", failures);
    return failures != 0;
}
