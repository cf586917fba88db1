// The MAD tasks hold their definitions (docs/tasks.md, MAD's generator): every example is
// parsed back into its pairs or tokens and its scored positions recomputed from them.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../data/synthetic.h"
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

static Config base(int task, int64_t V, int64_t T) {
    Config c;
    config_defaults(&c);
    c.task = task, c.data_vocab = V, c.seq_len = T;
    c.head = task == TASK_MAD_FIRST + 5 ? HEAD_AUTOENCODER : HEAD_LM;  // compression's head
    return c;
}

static Task task_of(const Config *c) {
    char err[256];
    CHECK(config_validate(c, 1, err, sizeof(err)) == 0, "config rejected: %s", err);
    DataOptions o = data_options_from_config(c);
    return task_from_options(&o);
}

// in_context_recall / noisy_recall: pairs at even positions; noise pairs are two noise tokens;
// a key keeps its value; held out, the value after a key shown before is scored (the shifted
// target sits one position earlier); in training every next token is the target.
static void check_recall(const Task *t, int n_examples, double want_noise) {
    int T = t->T, V = t->vocab, ns = V - t->noise_vocab_size, nk = ns / 2;
    int *ids = malloc(sizeof(int) * T), *tg = malloc(sizeof(int) * T);
    long noise_pairs = 0, pairs = 0, scored = 0;
    for (int split = SPLIT_TRAIN; split <= SPLIT_TEST; split++)
        for (int e = 0; e < n_examples; e++) {
            task_example(t, split, e, ids, tg);
            int value_of[64], ok = 1;
            for (int k = 0; k < nk; k++) value_of[k] = -1;
            for (int i = 0; i < T / 2; i++) {
                int k = ids[2 * i], v = ids[2 * i + 1];
                if (k >= ns) {  // noise pair
                    ok &= v >= ns && v < V && i < T / 2 - 1;
                    ok &= tg[2 * i] < 0 || split == SPLIT_TRAIN;
                    noise_pairs += split == SPLIT_TEST;
                    pairs += split == SPLIT_TEST;
                    continue;
                }
                pairs += split == SPLIT_TEST;
                ok &= k >= 0 && k < nk && v >= nk && v < ns;
                int seen = value_of[k] >= 0;
                ok &= !seen || value_of[k] == v;
                if (i == T / 2 - 1) ok &= seen;  // the probe re-shows a key
                value_of[k] = v;
                int want = split == SPLIT_TRAIN ? v : seen ? v : -1;
                ok &= tg[2 * i] == want;
                scored += split == SPLIT_TEST && want >= 0;
                if (split == SPLIT_TRAIN && 2 * i + 2 < T) ok &= tg[2 * i + 1] == ids[2 * i + 2];
                if (split == SPLIT_TEST) ok &= tg[2 * i + 1] < 0;
            }
            CHECK(ok, "recall (task %d, split %d) example %d breaks the layout", t->task, split, e);
            CHECK(tg[T - 1] < 0, "the last position is scored");
            if (!ok) break;
        }
    double frac = (double)noise_pairs / pairs;
    CHECK(frac > want_noise * 0.85 - 0.005 && frac < want_noise * 1.15 + 0.005,
          "noise pairs %.3f, want %.3f", frac, want_noise);
    CHECK(scored > n_examples * 10, "only %ld values scored", scored);
    free(ids), free(tg);
}

// fuzzy_recall: after the front padding the row alternates key runs (symbols below nk) and
// value runs; held out every key is of maximal size; a value run is scored iff its key was
// shown before (or it closes the row); a key keeps its value. The row holds MAD's T + 1
// tokens shifted by one, so the last token is seen only as the last position's target.
static void check_fuzzy(const Task *t, int n_examples) {
    int T = t->T, V = t->vocab, km = t->k_motif_size, nk = (V - 1) / 2, n = T + 1;
    int *ids = malloc(sizeof(int) * n), *tg = malloc(sizeof(int) * T);
    int sizes_seen[9] = {0}, unshown = 0;
    for (int split = SPLIT_TRAIN; split <= SPLIT_TEST; split++)
        for (int e = 0; e < n_examples; e++) {
            task_example(t, split, e, ids, tg);
            ids[T] = tg[T - 1];
            int p = 0, ok = ids[T] >= nk && ids[T] < V - 1, n_keys = 0;
            int keys[128][8], klen[128], vals[128][8], vlen[128];
            for (; p < n && ids[p] == V - 1; p++)
                ok &= tg[p] == (split == SPLIT_TRAIN ? ids[p + 1] : -1);
            while (p < n && ok) {
                int k0 = p, kl = 0, vl = 0;
                while (p < n && ids[p] < nk) kl++, p++;
                int v0 = p;
                while (p < n && ids[p] >= nk && ids[p] < V - 1) vl++, p++;
                ok &= kl >= 1 && kl <= km && vl >= 1 && vl <= t->v_motif_size;
                if (!ok) break;
                if (split == SPLIT_TEST) ok &= kl == km;
                sizes_seen[kl] |= split == SPLIT_TRAIN;
                int found = -1;
                for (int j = 0; j < n_keys; j++)
                    if (klen[j] == kl && !memcmp(keys[j], ids + k0, sizeof(int) * kl)) found = j;
                if (found >= 0)
                    ok &= vlen[found] == vl && !memcmp(vals[found], ids + v0, sizeof(int) * vl);
                else if (n_keys < 128) {
                    memcpy(keys[n_keys], ids + k0, sizeof(int) * kl), klen[n_keys] = kl;
                    memcpy(vals[n_keys], ids + v0, sizeof(int) * vl), vlen[n_keys++] = vl;
                }
                int last = p == n;
                for (int q = k0 > 0 ? k0 - 1 : 0; q < p - 1; q++) {  // q predicts token q + 1
                    int in_value = q + 1 >= v0, want;
                    if (split == SPLIT_TRAIN)
                        want = ids[q + 1];
                    else
                        want = in_value && (found >= 0 || last) ? ids[q + 1] : -1;
                    ok &= tg[q] == want;
                }
                // The closing probe was shown before, but for MAD's quirk: the probe's slot is
                // drawn up to T - 2 x its size, and pairs stop T - its size - (km + vm) in, so
                // a short probe's slot can lie past the last pair (its value then unscorable).
                unshown += last && found < 0;
            }
            CHECK(ok, "fuzzy_recall split %d example %d breaks the layout", split, e);
            if (!ok) break;
        }
    for (int s = 1; s <= km; s++) CHECK(sizes_seen[s], "training keys never of size %d", s);
    printf("fuzzy_recall: closing probe not shown before in %d of %d rows\n", unshown,
           2 * n_examples);
    CHECK(unshown < 2 * n_examples / 10, "the closing probe unshown in %d rows", unshown);
    free(ids), free(tg);
}

int main(void) {
    // Recall: MAD's baseline and the noisy baseline (V 32 with 16 noise symbols, 20% noise).
    Config c = base(TASK_MAD_FIRST + 0, 16, 128);
    Task t = task_of(&c);
    CHECK(t.vocab == 16, "vocab %d", t.vocab);
    check_recall(&t, 200, 0);
    c = base(TASK_MAD_FIRST + 2, 32, 128);
    c.noise_vocab_size = 16, c.frac_noise = 0.2;
    t = task_of(&c);
    check_recall(&t, 300, 0.2);

    // Fuzzy recall, motifs up to 3 (MAD's baseline).
    c = base(TASK_MAD_FIRST + 1, 16, 128);
    c.k_motif_size = 3, c.v_motif_size = 3;
    t = task_of(&c);
    check_fuzzy(&t, 200);

    // Selective copy: the n tokens among blanks, the copy token at T - n - 1, the tokens
    // scored in order at the last n positions; no blank after the last token (MAD's quirk).
    c = base(TASK_MAD_FIRST + 3, 16, 256);
    c.num_tokens_to_copy = 16;
    t = task_of(&c);
    int ids[256], tg[256];
    for (int e = 0; e < 100; e++) {
        task_example(&t, e % 2 ? SPLIT_TEST : SPLIT_TRAIN, e, ids, tg);
        int tok[256], n = 0, ok = ids[239] == 15 && ids[238] < 14;
        for (int p = 0; p < 239; p++) {
            ok &= tg[p] < 0 && ids[p] >= 0 && ids[p] <= 14;
            if (ids[p] < 14) tok[n++] = ids[p];
        }
        ok &= n == 16;
        for (int i = 0; i < 16 && ok; i++) ok &= ids[240 + i] == 14 && tg[240 + i] == tok[i];
        CHECK(ok && tg[239] < 0, "selective_copy example %d breaks the layout", e);
    }

    // Memorization: one map for every example and split, keys [0, 127) onto distinct values.
    c = base(TASK_MAD_FIRST + 4, 256, 32);
    t = task_of(&c);
    int value_of[127], used[256] = {0};
    for (int k = 0; k < 127; k++) value_of[k] = -1;
    for (int e = 0; e < 300; e++) {
        task_example(&t, e % 3, e, ids, tg);
        for (int i = 0; i < 16; i++) {
            int k = ids[2 * i], v = tg[2 * i + 1];
            CHECK(k >= 0 && k < 127 && ids[2 * i + 1] == 255 && tg[2 * i] < 0,
                  "memorization example %d pair %d", e, i);
            CHECK(v >= 127 && v < 255, "value %d out of range", v);
            if (k < 0 || k >= 127) continue;
            if (value_of[k] < 0 && v >= 0 && v < 256) CHECK(!used[v]++, "value %d of two keys", v);
            CHECK(value_of[k] < 0 || value_of[k] == v, "key %d changes value", k);
            value_of[k] = v;
        }
    }

    // Compression: the compression token last, every position its own target.
    c = base(TASK_MAD_FIRST + 5, 16, 32);
    t = task_of(&c);
    for (int e = 0; e < 50; e++) {
        task_example(&t, SPLIT_TEST, e, ids, tg);
        int ok = ids[31] == 15;
        for (int p = 0; p < 32; p++) ok &= tg[p] == ids[p] && (p == 31 || ids[p] < 15);
        CHECK(ok, "compression example %d", e);
    }

    // Every task: an example is a function of (seed, split, index) alone.
    for (int k = 0; k < 6; k++) {
        c = base(TASK_MAD_FIRST + k, 32, 64);
        c.k_motif_size = 2, c.v_motif_size = 2;
        t = task_of(&c);
        int a[64], at[64], b[64], bt[64];
        task_example(&t, SPLIT_TEST, 7, a, at);
        task_example(&t, SPLIT_TRAIN, 3, b, bt);
        task_example(&t, SPLIT_TEST, 7, b, bt);
        CHECK(!memcmp(a, b, sizeof(a)) && !memcmp(at, bt, sizeof(at)), "%s not repeatable",
              task_name(t.task));
    }
    printf("%s: %d failure(s)\n", failures ? "FAILED" : "PASSED", failures);
    return failures != 0;
}
