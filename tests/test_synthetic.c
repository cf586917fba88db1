// The synthetic tasks hold their definitions: MQAR (Zoology) and associative recall (E029).
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

// The task a config asks for, as the trainer builds it.
static Task task_of(const Config *c) {
    DataOptions o = data_options_from_config(c);
    return task_from_options(&o);
}

static void check_mqar(const Task *t, const int *ids, const int *tg) {
    int kv = t->num_kv_pairs, half = t->vocab / 2, queried = 0;
    for (int i = 0; i < kv; i++) {
        CHECK(ids[2 * i] >= 1 && ids[2 * i] < half, "key %d out of the lower half", ids[2 * i]);
        CHECK(ids[2 * i + 1] >= half && ids[2 * i + 1] < t->vocab, "value out of the upper half");
        for (int j = 0; j < i; j++) CHECK(ids[2 * j] != ids[2 * i], "repeated key");
        CHECK(tg[2 * i] < 0 && tg[2 * i + 1] < 0, "context positions are not scored");
    }
    for (int p = 2 * kv; p < t->T; p++) {
        CHECK(ids[p] >= 0 && ids[p] < t->vocab, "token out of range");
        if (tg[p] < 0) continue;
        queried++;
        CHECK((p - 2 * kv) % 2 == 0, "query at odd offset %d", p - 2 * kv);
        int found = 0;
        for (int i = 0; i < kv; i++)
            if (ids[2 * i] == ids[p]) {
                found = 1;
                CHECK(tg[p] == ids[2 * i + 1], "wrong label");
            }
        CHECK(found, "query %d is not a key of the context", ids[p]);
    }
    CHECK(queried == kv, "%d of %d keys queried", queried, kv);
}

int main(void) {
    Config c;
    config_defaults(&c);
    c.task = TASK_MQAR, c.seq_len = 64, c.data_vocab = 64, c.num_kv_pairs = 8,
    c.train_examples = 50;
    Task t = task_of(&c);
    int ids[64], tg[64], ids2[64], tg2[64];
    double near = 0;  // power-law spacing: most queries sit close after the context
    for (int e = 0; e < 200; e++) {
        task_example(&t, SPLIT_TRAIN, e, ids, tg);
        check_mqar(&t, ids, tg);
        for (int p = 16; p < 64; p++) near += tg[p] >= 0 && p < 16 + 24;
        task_example(&t, SPLIT_TRAIN, e, ids2, tg2);
        CHECK(!memcmp(ids, ids2, sizeof(ids)) && !memcmp(tg, tg2, sizeof(tg)), "not deterministic");
        task_example(&t, SPLIT_TEST, e, ids2, tg2);
        CHECK(memcmp(ids, ids2, sizeof(ids)), "train and test example %d coincide", e);
        int ids3[64], tg3[64];  // the validation split is a third, disjoint stream
        task_example(&t, SPLIT_VALID, e, ids3, tg3);
        check_mqar(&t, ids3, tg3);
        CHECK(memcmp(ids3, ids, sizeof(ids)) && memcmp(ids3, ids2, sizeof(ids)),
              "valid example %d coincides with the train or test one", e);
    }
    CHECK(near / (200.0 * 8) > 0.5, "queries are not concentrated near the context (%.2f)",
          near / 1600);
    if (!failures) {
        task_example(&t, SPLIT_TRAIN, 0, ids, tg);
        printf("mqar example 0:");
        for (int p = 0; p < 64; p++) printf(tg[p] >= 0 ? " [%d->%d]" : " %d", ids[p], tg[p]);
        printf("\n");
    }

    c.task = TASK_AR, c.seq_len = 64, c.ar_symbols = 16, c.num_kv_pairs = 8;
    t = task_of(&c);
    CHECK(t.vocab == 33, "ar vocab %d", t.vocab);
    for (int e = 0; e < 100; e++) {
        task_example(&t, SPLIT_TRAIN, e, ids, tg);
        int scored = 0;
        for (int p = 0; p < 63; p++) scored += tg[p] >= 0;
        CHECK(scored == 0 && tg[63] >= 16 && tg[63] < 32, "only the last position is scored");
        int found = 0;
        for (int i = 0; i < 8; i++) found |= ids[2 * i] == ids[63] && ids[2 * i + 1] == tg[63];
        CHECK(found, "the query's label is not its bound value");
    }
    // The shared layout (the users' MVE): the same draws, values in the keys' symbols and
    // filler 0, so every example is the disjoint one with values shifted down by S.
    c.ar_layout = 1;
    Task shared = task_of(&c);
    CHECK(shared.vocab == 16, "ar shared vocab %d", shared.vocab);
    for (int e = 0; e < 100; e++) {
        int ids2[64], tg2[64];
        task_example(&t, SPLIT_TRAIN, e, ids, tg);
        task_example(&shared, SPLIT_TRAIN, e, ids2, tg2);
        int same = tg2[63] == tg[63] - 16;
        for (int p = 0; p < 64; p++) {
            int want = p < 16 ? (p % 2 ? ids[p] - 16 : ids[p]) : p == 63 ? ids[p] : 0;
            same &= ids2[p] == want && (p == 63 || tg2[p] < 0);
        }
        CHECK(same, "ar shared example %d is not the disjoint one with values shifted", e);
    }
    // The crossings: shared symbols with filler S (vocabulary 17), disjoint symbols with
    // filler 0 (vocabulary 32); again the disjoint example with only values or filler moved.
    for (int layout = 2; layout <= 3; layout++) {
        c.ar_layout = layout;
        Task x = task_of(&c);
        int shift = layout == 2 ? 16 : 0, filler = layout == 2 ? 16 : 0;
        CHECK(x.vocab == (layout == 2 ? 17 : 32), "ar layout %d vocab %d", layout, x.vocab);
        for (int e = 0; e < 100; e++) {
            int ids2[64], tg2[64];
            task_example(&t, SPLIT_TRAIN, e, ids, tg);
            task_example(&x, SPLIT_TRAIN, e, ids2, tg2);
            int same = tg2[63] == tg[63] - shift;
            for (int p = 0; p < 64; p++) {
                int want = p < 16 ? (p % 2 ? ids[p] - shift : ids[p]) : p == 63 ? ids[p] : filler;
                same &= ids2[p] == want && (p == 63 || tg2[p] < 0);
                same &= ids2[p] >= 0 && ids2[p] < x.vocab;
            }
            CHECK(same, "ar layout %d example %d is not the disjoint one remapped", layout, e);
        }
    }
    c.ar_layout = 0;

    // Hierarchical copying (E005): every token is scored exactly once, at n + 1 + i +
    // (level - 1) x delay, its level shown by its symbol range; every level occurs.
    c.task = TASK_HCOPY, c.seq_len = 32, c.copy_tokens = 8, c.copy_levels = 3, c.copy_delay = 4;
    c.copy_symbols = 5;
    t = task_of(&c);
    CHECK(t.vocab == 17, "hcopy vocab %d", t.vocab);
    int lv[64], level_seen[4] = {0};
    for (int e = 0; e < 200; e++) {
        task_example_levels(&t, SPLIT_TRAIN, e, ids, tg, lv);
        int scored = 0;
        CHECK(ids[8] == 15, "separator missing");
        for (int p = 0; p < 32; p++) {
            CHECK((tg[p] >= 0) == (lv[p] > 0), "levels only at scored positions");
            if (tg[p] < 0) continue;
            scored++;
            int i = p - 9 - (lv[p] - 1) * 4;
            CHECK(i >= 0 && i < 8 && ids[i] == tg[p], "position %d does not copy token %d", p, i);
            CHECK(ids[i] / 5 == lv[p] - 1, "token %d is not of level %d", ids[i], lv[p]);
            CHECK(ids[p] == 16, "a copy position holds input %d, not the blank", ids[p]);
            level_seen[lv[p]]++;
        }
        CHECK(scored == 8, "%d of 8 tokens scored", scored);
    }
    CHECK(level_seen[1] && level_seen[2] && level_seen[3], "a level never occurs (%d %d %d)",
          level_seen[1], level_seen[2], level_seen[3]);

    // Epoch shuffles are permutations of the training set.
    Sampler s;
    c.task = TASK_MQAR;
    t = task_of(&c);
    sampler_init(&s, &t);
    int seen[50] = {0};
    for (int p = 50; p < 100; p++) seen[sampler_example(&s, p)]++;
    for (int i = 0; i < 50; i++) CHECK(seen[i] == 1, "epoch 1 is not a permutation");
    sampler_free(&s);
    printf("%s: %d failure(s)\n", failures ? "FAILED" : "PASSED", failures);
    return failures != 0;
}
