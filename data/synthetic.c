#include "synthetic.h"

#include <stdlib.h>
#include <string.h>

#include "../kernels/rng.h"
#include "tasks_mad.h"
#include "tasks_state.h"
#include "util.h"

Task task_from_options(const DataOptions *o) {
    Task t = {.task = o->task,
              .T = (int)o->seq_len,
              .num_kv_pairs = (int)o->num_kv_pairs,
              .ar_symbols = (int)o->ar_symbols,
              .power_a = o->power_a,
              .seed = o->seed,
              .n_train = o->train_examples,
              .n_test = o->test_examples,
              .n_valid = o->valid_examples,
              .copy_tokens = (int)o->copy_tokens,
              .copy_levels = (int)o->copy_levels,
              .copy_delay = (int)o->copy_delay,
              .copy_symbols = (int)o->copy_symbols,
              .noise_vocab_size = (int)o->noise_vocab_size,
              .k_motif_size = (int)o->k_motif_size,
              .v_motif_size = (int)o->v_motif_size,
              .num_tokens_to_copy = (int)o->num_tokens_to_copy,
              .frac_noise = o->frac_noise,
              .min_len = (int)o->min_len,
              .max_len = (int)o->max_len,
              .test_min_len = (int)o->test_min_len,
              .test_max_len = (int)o->test_max_len,
              .modulus = (int)o->modulus,
              .generators = o->generators,
              .brackets = o->brackets};
    if (o->task == DATA_TASK_WORD_PROBLEM) {  // validated with the config; empty if not
        char err[256];
        if (group_parse(o->group, &t.group, err, sizeof(err))) memset(&t.group, 0, sizeof(t.group));
    }
    if (o->task >= DATA_TASK_PARITY)
        t.vocab = state_task_vocab(&t);
    else if (o->task == DATA_TASK_MQAR || o->task >= DATA_TASK_IN_CONTEXT_RECALL)
        t.vocab = (int)o->vocab;
    else if (o->task == DATA_TASK_HCOPY)
        t.vocab = t.copy_levels * t.copy_symbols + 2;
    else {  // ar: values after the keys unless shared; the filler 0 or a token of its own
        int S = (int)o->ar_symbols, L = o->ar_layout;
        int shared = L == AR_LAYOUT_SHARED || L == AR_LAYOUT_SHARED_OWN_FILLER;
        int filler0 = L == AR_LAYOUT_SHARED || L == AR_LAYOUT_DISJOINT_FILLER0;
        t.ar_value0 = shared ? 0 : S;
        t.ar_filler = filler0 ? 0 : t.ar_value0 + S;
        t.vocab = t.ar_value0 + S + !filler0;
    }
    return t;
}

const char *task_name(int task) {
    static const char *names[] = {"mqar",
                                  "ar",
                                  "hcopy",
                                  "in_context_recall",
                                  "fuzzy_recall",
                                  "noisy_recall",
                                  "selective_copy",
                                  "memorization",
                                  "compression",
                                  "parity",
                                  "cumulative_parity",
                                  "modular_arithmetic",
                                  "word_problem",
                                  "index_copy"};
    return task >= 0 && task <= DATA_TASK_INDEX_COPY ? names[task] : "?";
}

// k distinct values from [lo, hi) by a partial Fisher-Yates over the range.
static void sample_distinct(Rng *r, int lo, int hi, int k, int *out, int *work) {
    int n = hi - lo;
    for (int i = 0; i < n; i++) work[i] = lo + i;
    for (int i = 0; i < k; i++) {
        int j = i + (int)rng_next_below(r, (uint64_t)(n - i));
        int tmp = work[i];
        work[i] = work[j], work[j] = tmp;
        out[i] = work[i];
    }
}

// MQAR as in Zoology (multiquery_ar): kv pairs first (keys from [1, V/2), values from
// [V/2, V)), then each key queried once at position 2 * gap after the context, with gaps drawn
// without replacement from [0, (T - 2 kv) / 2) with probability proportional to
// a * i^(a-1), i = gap + 1 (queries cluster near the context); the label of a query position
// is the value of its key; every other position holds a uniformly random token.
static void mqar_example(const Task *t, Rng *r, int *ids, int *targets) {
    int T = t->T, kv = t->num_kv_pairs, V = t->vocab, half = V / 2, ctx = 2 * kv;
    int space = (T - ctx) / 2;
    int *keys = xmalloc(sizeof(int) * kv), *vals = xmalloc(sizeof(int) * kv);
    int *work = xmalloc(sizeof(int) * (size_t)(V > space ? V : space));
    double *w = xmalloc(sizeof(double) * space);
    sample_distinct(r, 1, half, kv, keys, work);
    sample_distinct(r, half, V, kv, vals, work);
    for (int i = 0; i < T; i++) ids[i] = -1, targets[i] = -1;
    for (int i = 0; i < kv; i++) ids[2 * i] = keys[i], ids[2 * i + 1] = vals[i];
    double total = 0;
    for (int i = 0; i < space; i++) total += w[i] = t->power_a * pow(i + 1.0, t->power_a - 1);
    for (int i = 0; i < kv; i++) {  // sequential weighted draws without replacement
        double u = rng_next_uniform(r) * total, acc = 0;
        int g = -1;
        for (int j = 0; j < space; j++) {
            if (w[j] == 0) continue;
            g = j;
            acc += w[j];
            if (u < acc) break;
        }
        total -= w[g];
        w[g] = 0;
        ids[ctx + 2 * g] = keys[i];
        targets[ctx + 2 * g] = vals[i];
    }
    for (int i = 0; i < T; i++)
        if (ids[i] < 0) ids[i] = (int)rng_next_below(r, (uint64_t)V);
    free(keys), free(vals), free(work), free(w);
}

// Associative recall (E029): kv pairs of distinct keys from [0, S) and values from [S, 2S),
// filler token 2S up to the last position, which holds one of the keys; the label there is its
// value. Chance accuracy is 1/S. The shared layout is the users' PyTorch MVE's: values from
// the keys' own S symbols and filler 0, which is also a symbol (a filler reads as key or
// value 0; the model learns from positions that it is neither). The two crossings (shared
// symbols with a filler of its own; disjoint symbols with filler 0) tell which of the two
// differences matters. Every layout makes the same draws.
static void ar_example(const Task *t, Rng *r, int *ids, int *targets) {
    int T = t->T, kv = t->num_kv_pairs, S = t->ar_symbols;
    int value0 = t->ar_value0, filler = t->ar_filler;
    int *keys = xmalloc(sizeof(int) * kv), *work = xmalloc(sizeof(int) * S);
    sample_distinct(r, 0, S, kv, keys, work);
    for (int i = 0; i < T; i++) ids[i] = filler, targets[i] = -1;
    int q = (int)rng_next_below(r, (uint64_t)kv), qval = 0;
    for (int i = 0; i < kv; i++) {
        int v = value0 + (int)rng_next_below(r, (uint64_t)S);
        ids[2 * i] = keys[i], ids[2 * i + 1] = v;
        if (i == q) qval = v;
    }
    ids[T - 1] = keys[q];
    targets[T - 1] = qval;
    free(keys), free(work);
}

// Hierarchical copying (E005) [project-defined layout]: n = copy_tokens tokens, token i of
// level l_i in 1..L drawn from that level's own symbols [(l-1) S, l S) (so the token shows
// its level), then a separator L S, then blanks L S + 1. Token i must be reproduced at
// position n + 1 + i + (l_i - 1) * copy_delay: level 1 copies at once, each level above
// waits copy_delay steps longer. Levels are drawn token by token, uniformly among those
// whose position no earlier token took; the top level is always free (an earlier token j
// would need a level above the top to land there), so this always succeeds.
static void hcopy_example(const Task *t, Rng *r, int *ids, int *targets, int *levels) {
    int T = t->T, n = t->copy_tokens, L = t->copy_levels, S = t->copy_symbols;
    int *free_levels = xmalloc(sizeof(int) * L);
    for (int p = 0; p < T; p++) ids[p] = L * S + 1, targets[p] = -1, levels[p] = 0;
    ids[n] = L * S;
    for (int i = 0; i < n; i++) {
        int n_free = 0;
        for (int l = 1; l <= L; l++)
            if (targets[n + 1 + i + (l - 1) * t->copy_delay] < 0) free_levels[n_free++] = l;
        int l = free_levels[rng_next_below(r, (uint64_t)n_free)];
        int p = n + 1 + i + (l - 1) * t->copy_delay;
        ids[i] = (l - 1) * S + (int)rng_next_below(r, (uint64_t)S);
        targets[p] = ids[i], levels[p] = l;
    }
    free(free_levels);
}

void task_example_levels(const Task *t, int split, int64_t index, int *ids, int *targets,
                         int *levels) {
    Rng r = {rng_key(t->seed, 0xDA7A + (uint64_t)split, (uint64_t)index, 0), 0};
    if (t->task == DATA_TASK_HCOPY) {
        hcopy_example(t, &r, ids, targets, levels);
        return;
    }
    if (t->task >= DATA_TASK_PARITY) {
        state_example(t, &r, split, ids, targets, levels);
        return;
    }
    if (t->task >= DATA_TASK_IN_CONTEXT_RECALL)  // below DATA_TASK_PARITY: MAD's
        mad_example(t, &r, split, ids, targets);
    else if (t->task == DATA_TASK_MQAR)
        mqar_example(t, &r, ids, targets);
    else
        ar_example(t, &r, ids, targets);
    for (int p = 0; p < t->T; p++) levels[p] = 0;
}

int task_example_length(const Task *t, int split, int64_t index) {
    if (t->task < DATA_TASK_PARITY) return t->T;
    Rng r = {rng_key(t->seed, 0xDA7A + (uint64_t)split, (uint64_t)index, 0), 0};
    return state_example_tokens(t, &r, split);
}

void task_example(const Task *t, int split, int64_t index, int *ids, int *targets) {
    int *levels = xmalloc(sizeof(int) * t->T);
    task_example_levels(t, split, index, ids, targets, levels);
    free(levels);
}

void sampler_init(Sampler *s, const Task *t) {
    s->task = t;
    s->epoch = -1;
    s->perm = t->n_train > 0 ? xmalloc(sizeof(int64_t) * (size_t)t->n_train) : NULL;
}

void sampler_free(Sampler *s) {
    free(s->perm);
}

int64_t sampler_example(Sampler *s, int64_t position) {
    int64_t n = s->task->n_train;
    if (n <= 0) return position;
    int64_t epoch = position / n;
    if (epoch != s->epoch) {
        uint64_t key = rng_key(s->task->seed, 0x5A3F, (uint64_t)epoch, 0);
        for (int64_t i = 0; i < n; i++) s->perm[i] = i;
        for (int64_t i = n - 1; i > 0; i--) {
            int64_t j = (int64_t)rng_below(key, (uint64_t)i, (uint64_t)(i + 1));
            int64_t tmp = s->perm[i];
            s->perm[i] = s->perm[j], s->perm[j] = tmp;
        }
        s->epoch = epoch;
    }
    return s->perm[position % n];
}
