// State-tracking tasks and the OscGate experiment's index copy (../shared/docs/tasks.md
// sections 3 and 4): parity, cumulative_parity, modular_arithmetic, word_problem, index_copy.
//
// Lengths: a training or validation example has a length drawn from U[min_len, max_len], a
// test example from U[test_min_len, test_max_len] (length generalisation); the row is padded
// with token 0, unscored, to data.seq_len. Each scored position of a test example carries its
// length bucket (1..4: the test length range cut in four equal parts) as its "level", so the
// evaluation reports accuracy per length bucket.
#include "tasks_state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

// ---- groups by name -----------------------------------------------------------------------
// A factor is Z_n (element: a residue, code = it), S_n or A_n (element: a permutation of n,
// code = its rank among all n! permutations, so A_n's codes are sparse). An element of the
// product is one per factor; its token is 1 + the mixed-radix number of the codes.
static int64_t factorial(int n) {
    int64_t f = 1;
    for (int i = 2; i <= n; i++) f *= i;
    return f;
}

int group_parse(const char *name, TaskGroup *g, char *err, size_t errlen) {
    memset(g, 0, sizeof(*g));
    const char *p = name;
    while (*p) {
        if (g->n_factors == GROUP_MAX_FACTORS) {
            snprintf(err, errlen, "data.group '%s': at most %d factors", name, GROUP_MAX_FACTORS);
            return -1;
        }
        TaskGroupFactor *f = &g->f[g->n_factors++];
        char kind = *p++;
        char *end;
        long n = strtol(p, &end, 10);
        int ok =
            (kind == 'Z' || kind == 'S' || kind == 'A') && end != p && (*end == 0 || *end == 'x');
        if (ok && kind == 'Z') ok = n >= 2 && n <= 100000;
        if (ok && kind != 'Z') ok = n >= (kind == 'A' ? 3 : 2) && n <= GROUP_MAX_PERM;
        if (!ok) {
            snprintf(err, errlen,
                     "data.group '%s': expected factors Z<n> (n >= 2), S<n> (2..%d) or A<n> "
                     "(3..%d) joined by x, e.g. S5, A4xZ5",
                     name, GROUP_MAX_PERM, GROUP_MAX_PERM);
            return -1;
        }
        f->kind = kind, f->n = (int)n;
        f->codes = kind == 'Z' ? n : factorial((int)n);
        f->order = kind == 'A' ? f->codes / 2 : f->codes;
        p = *end == 'x' ? end + 1 : end;
        if (*end == 'x' && !*p) {
            snprintf(err, errlen, "data.group '%s': a factor is missing after 'x'", name);
            return -1;
        }
    }
    if (!g->n_factors) {
        snprintf(err, errlen, "data.group is empty (e.g. S5, A5, Z60, A4xZ5)");
        return -1;
    }
    g->vocab = 1;
    for (int i = 0; i < g->n_factors; i++) {
        if (g->vocab > (1 << 24) / g->f[i].codes) {
            snprintf(err, errlen, "data.group '%s' has too many elements for a vocabulary", name);
            return -1;
        }
        g->vocab *= g->f[i].codes;
    }
    g->vocab += 1;  // token 0: padding
    return 0;
}

typedef struct {
    int z[GROUP_MAX_FACTORS];                     // Z factors: residues
    int8_t p[GROUP_MAX_FACTORS][GROUP_MAX_PERM];  // S and A factors: permutations
} Element;

static void element_identity(const TaskGroup *g, Element *e) {
    for (int i = 0; i < g->n_factors; i++) {
        e->z[i] = 0;
        for (int j = 0; j < g->f[i].n && g->f[i].kind != 'Z'; j++) e->p[i][j] = (int8_t)j;
    }
}

// a = a . b, factor by factor ((a . b)(j) = a(b(j)) for permutations).
static void element_mul(const TaskGroup *g, Element *a, const Element *b) {
    for (int i = 0; i < g->n_factors; i++) {
        const TaskGroupFactor *f = &g->f[i];
        if (f->kind == 'Z') {
            a->z[i] = (a->z[i] + b->z[i]) % f->n;
            continue;
        }
        int8_t r[GROUP_MAX_PERM];
        for (int j = 0; j < f->n; j++) r[j] = a->p[i][b->p[i][j]];
        memcpy(a->p[i], r, (size_t)f->n);
    }
}

static int perm_parity(const int8_t *p, int n) {
    int odd = 0;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) odd ^= p[i] > p[j];
    return odd;
}

// Uniform over the group: Fisher-Yates per S factor; an odd draw for an A factor is made even
// by swapping its first two images (a bijection between the two cosets).
static void element_random(const TaskGroup *g, Rng *r, Element *e) {
    for (int i = 0; i < g->n_factors; i++) {
        const TaskGroupFactor *f = &g->f[i];
        if (f->kind == 'Z') {
            e->z[i] = (int)rng_next_below(r, (uint64_t)f->n);
            continue;
        }
        for (int j = 0; j < f->n; j++) e->p[i][j] = (int8_t)j;
        for (int j = f->n - 1; j > 0; j--) {
            int k = (int)rng_next_below(r, (uint64_t)j + 1);
            int8_t t = e->p[i][j];
            e->p[i][j] = e->p[i][k], e->p[i][k] = t;
        }
        if (f->kind == 'A' && perm_parity(e->p[i], f->n)) {
            int8_t t = e->p[i][0];
            e->p[i][0] = e->p[i][1], e->p[i][1] = t;
        }
    }
}

// The generator form: generator `which` of 2 per factor (factor which / 2, identity in the
// others, so the inputs generate the whole product): Z_n by 1 (both), S_n by the n-cycle and
// the transposition (0 1), A_n by the 3-cycle (0 1 2) and the (n or n-1)-cycle that is even.
static void element_generator(const TaskGroup *g, int which_all, Element *e) {
    element_identity(g, e);
    for (int i = which_all / 2; i == which_all / 2; i++) {
        const TaskGroupFactor *f = &g->f[i];
        int which = which_all % 2;
        int n = f->n;
        if (f->kind == 'Z') {
            e->z[i] = 1 % n;
        } else if (f->kind == 'S' && which) {
            e->p[i][0] = 1, e->p[i][1] = 0;
        } else if (f->kind == 'A' && !which) {
            e->p[i][0] = 1, e->p[i][1] = 2, e->p[i][2] = 0;
        } else {  // a long cycle: on all n points, or on 1..n-1 when n is even (A_n)
            int first = f->kind == 'A' && n % 2 == 0;
            for (int j = first; j < n; j++) e->p[i][j] = (int8_t)(j + 1 < n ? j + 1 : first);
        }
    }
}

static int64_t perm_rank(const int8_t *p, int n) {  // Lehmer code: lexicographic rank
    int64_t rank = 0;
    for (int i = 0; i < n; i++) {
        int smaller = 0;
        for (int j = i + 1; j < n; j++) smaller += p[j] < p[i];
        rank = rank * (n - i) + smaller;
    }
    return rank;
}

static int element_token(const TaskGroup *g, const Element *e) {
    int64_t code = 0;
    for (int i = 0; i < g->n_factors; i++) {
        const TaskGroupFactor *f = &g->f[i];
        code = code * f->codes + (f->kind == 'Z' ? e->z[i] : perm_rank(e->p[i], f->n));
    }
    return (int)code + 1;
}

// ---- examples -----------------------------------------------------------------------------
static int example_length(const Task *t, Rng *r, int split) {
    int lo = split == SPLIT_TEST ? t->test_min_len : t->min_len;
    int hi = split == SPLIT_TEST ? t->test_max_len : t->max_len;
    return lo + (int)rng_next_below(r, (uint64_t)(hi - lo + 1));
}

static int length_bucket(const Task *t, int split, int len) {
    if (split != SPLIT_TEST) return 0;
    int span = t->test_max_len - t->test_min_len + 1;
    return 1 + (int)((int64_t)(len - t->test_min_len) * STATE_LENGTH_BUCKETS / span);
}

int state_example_tokens(const Task *t, Rng *r, int split) {
    if (t->task == DATA_TASK_INDEX_COPY) return t->T;
    int len = example_length(t, r, split);
    if (t->task == DATA_TASK_MODULAR_ARITHMETIC) return (len % 2 ? len : len - 1) + 1;  // and =
    return len;
}

// The bracketed modular arithmetic (tasks.md 4): an expression of exactly n tokens (n odd),
// written from ids[*at], its value mod `modulus` returned. It is terms joined by + - * (* binds
// tighter, then left to right); a term is a number (one token) or, with chance 1/4 when at
// least 3 tokens remain, ( expression ) of an odd length drawn uniformly from what remains,
// recursively. Tokens: numbers 5 + v, + 1, - 2, * 3, ( 5 + mod, ) 6 + mod.
static int64_t bracketed(const Task *t, Rng *r, int n, int *ids, int *at) {
    int mod = t->modulus;
    int64_t total = 0, term = 0;
    int sign = 1, first = 1, times = 0;
    for (int left = n; left > 0;) {
        int64_t v;
        if (left >= 3 && rng_next_below(r, 4) == 0) {
            int len = 3 + 2 * (int)rng_next_below(r, (uint64_t)(left - 1) / 2);  // odd, <= left
            ids[(*at)++] = 5 + mod;
            v = bracketed(t, r, len - 2, ids, at);
            ids[(*at)++] = 6 + mod;
            left -= len;
        } else {
            v = (int64_t)rng_next_below(r, (uint64_t)mod);
            ids[(*at)++] = 5 + (int)v;
            left -= 1;
        }
        term = first || !times ? v : term * v % mod;
        first = 0;
        if (left > 0) {  // an operator, and at least one more token for the next term
            int op = 1 + (int)rng_next_below(r, 3);
            ids[(*at)++] = op;
            left -= 1;
            times = op == 3;
            if (!times) total = (total + sign * term) % mod, sign = op == 1 ? 1 : -1;
        }
    }
    return ((total + sign * term) % mod + mod) % mod;
}

void state_example(const Task *t, Rng *r, int split, int *ids, int *targets, int *levels) {
    int T = t->T;
    for (int p = 0; p < T; p++) ids[p] = 0, targets[p] = -1, levels[p] = 0;
    if (t->task == DATA_TASK_INDEX_COPY) {
        // c0..c7 from 16 symbols, separator 16, then queries 17 + idx, each scored c_idx
        int c[STATE_INDEX_COPY_N];
        for (int i = 0; i < STATE_INDEX_COPY_N; i++)
            c[i] = (int)rng_next_below(r, 16), ids[i] = c[i];
        ids[STATE_INDEX_COPY_N] = 16;
        for (int p = STATE_INDEX_COPY_N + 1; p < T; p++) {
            int idx = (int)rng_next_below(r, STATE_INDEX_COPY_N);
            ids[p] = 17 + idx, targets[p] = c[idx];
        }
        return;
    }
    int len = example_length(t, r, split), bucket = length_bucket(t, split, len);
    if (t->task == DATA_TASK_PARITY || t->task == DATA_TASK_CUMULATIVE_PARITY) {
        // tokens 1 (a 0 bit) and 2 (a 1 bit); the label is the parity + 1
        int parity = 0;
        for (int p = 0; p < len; p++) {
            int bit = (int)rng_next_below(r, 2);
            parity ^= bit;
            ids[p] = 1 + bit;
            if (t->task == DATA_TASK_CUMULATIVE_PARITY || p == len - 1)
                targets[p] = 1 + parity, levels[p] = bucket;
        }
        return;
    }
    if (t->task == DATA_TASK_MODULAR_ARITHMETIC && t->brackets) {
        int n_tok = len % 2 ? len : len - 1, at = 0;
        int64_t v = bracketed(t, r, n_tok, ids, &at);
        ids[n_tok] = 4, targets[n_tok] = 5 + (int)v, levels[n_tok] = bucket;
        return;
    }
    if (t->task == DATA_TASK_MODULAR_ARITHMETIC) {
        // numbers 5 + v (v in [0, mod)) and operators 1 +, 2 -, 3 * alternating over len
        // tokens (len rounded down to odd), then = (4), which is scored with the value: the
        // products first (* binds tighter), then the sums left to right, mod `modulus`
        int mod = t->modulus, n_tok = len % 2 ? len : len - 1;
        int64_t total = 0, term = 0;
        int sign = 1;
        for (int p = 0; p < n_tok; p++) {
            if (p % 2 == 0) {
                int v = (int)rng_next_below(r, (uint64_t)mod);
                ids[p] = 5 + v;
                term = p == 0 || ids[p - 1] != 3 ? v : term * v % mod;
            } else {
                int op = 1 + (int)rng_next_below(r, 3);
                ids[p] = op;
                if (op != 3) total = (total + sign * term) % mod, sign = op == 1 ? 1 : -1;
            }
        }
        total = ((total + sign * term) % mod + mod) % mod;
        ids[n_tok] = 4, targets[n_tok] = 5 + (int)total, levels[n_tok] = bucket;
        return;
    }
    // word_problem: elements (or generators), the label at every position the running product
    const TaskGroup *g = &t->group;
    Element acc, x;
    element_identity(g, &acc);
    for (int p = 0; p < len; p++) {
        if (t->generators)
            element_generator(g, (int)rng_next_below(r, 2 * (uint64_t)g->n_factors), &x);
        else
            element_random(g, r, &x);
        ids[p] = element_token(g, &x);
        element_mul(g, &acc, &x);
        targets[p] = element_token(g, &acc), levels[p] = bucket;
    }
}

int state_task_vocab(const Task *t) {
    switch (t->task) {
        case DATA_TASK_PARITY:
        case DATA_TASK_CUMULATIVE_PARITY:
            return 3;
        case DATA_TASK_MODULAR_ARITHMETIC:
            return 5 + t->modulus + (t->brackets ? 2 : 0);  // ( and ) after the numbers
        case DATA_TASK_INDEX_COPY:
            return 17 + STATE_INDEX_COPY_N;
        default:
            return (int)t->group.vocab;
    }
}

int state_task_check(const DataOptions *o, const char *name, char *err, size_t errlen) {
    if (o->task == DATA_TASK_INDEX_COPY) {
        if (o->seq_len < STATE_INDEX_COPY_N + 2) {
            snprintf(err, errlen, "index_copy: data.seq_len (%lld) must be at least %d",
                     (long long)o->seq_len, STATE_INDEX_COPY_N + 2);
            return -1;
        }
        return 0;
    }
    if (o->task == DATA_TASK_WORD_PROBLEM) {
        TaskGroup g;
        if (group_parse(o->group, &g, err, errlen)) return -1;
    }
    int extra = o->task == DATA_TASK_MODULAR_ARITHMETIC;  // the = position
    if (o->min_len < 1 || o->min_len > o->max_len || o->test_min_len < 1 ||
        o->test_min_len > o->test_max_len) {
        snprintf(err, errlen,
                 "%s: data.min_len <= data.max_len and data.test_min_len <= data.test_max_len, "
                 "all >= 1 (got %lld..%lld and %lld..%lld)",
                 name, (long long)o->min_len, (long long)o->max_len, (long long)o->test_min_len,
                 (long long)o->test_max_len);
        return -1;
    }
    int64_t need = (o->max_len > o->test_max_len ? o->max_len : o->test_max_len) + extra;
    if (o->seq_len < need) {
        snprintf(err, errlen,
                 "%s: data.seq_len (%lld) must hold the longest example: max(data.max_len, "
                 "data.test_max_len)%s = %lld",
                 name, (long long)o->seq_len, extra ? " + 1" : "", (long long)need);
        return -1;
    }
    return 0;
}
