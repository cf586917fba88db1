// The six MAD tasks (Poli et al. 2024, "Mechanistic Design and Scaling of Hybrid
// Architectures"; ../shared/docs/tasks.md section 2), generated as MAD's own generator
// (mad-lab, mad/data/instances.py, with MAD's default multi_query) lays them out, drawn from
// madtrain's counter-based streams instead of numpy's. Where MAD has a quirk that changes what
// is learned, it is kept and named here; docs/tasks.md lists them.
//
// Training and testing differ for the three recall tasks, as in MAD: the training split is
// plain next-token prediction over the whole sequence (targets = the next input), the held-out
// splits score only the values of keys shown before. The other three score the same positions
// in every split.
#include "tasks_mad.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

// Recall tasks write MAD's sequence of T + 1 tokens (in_context_recall: T; fuzzy: T + 1 after
// front padding) and their per-token labels, then shift: ids = seq[0..T), train targets =
// seq[1..T], held-out targets = label[1..T]. in_context_recall's sequence is one token shorter
// (MAD returns T - 1 inputs); its last row position holds that sequence's last token and is
// never scored, which a causal model cannot see from earlier positions.
static void shift_out(int T, int n, const int *seq, const int *label, int split, int *ids,
                      int *targets) {
    for (int p = 0; p < T; p++) {
        ids[p] = p < n ? seq[p] : seq[n - 1];
        int next = p + 1 < n ? p + 1 : -1;
        targets[p] = next < 0 ? -1 : split == SPLIT_TRAIN ? seq[next] : label[next];
    }
}

// in_context_recall and noisy_recall: T / 2 (key, value) pairs, keys from the lower half of
// the V - noise plain symbols (drawn with replacement, so keys repeat) and values from the
// upper half, one value per key within the sequence; with probability frac_noise a pair is
// two tokens of the noise vocabulary [V - noise, V) instead (never the pair not_noise, so at
// least one real pair precedes the probe; MAD draws not_noise over all T / 2 pairs, so it may
// name the probe's slot, which is never noise anyway). The last pair re-shows a key already
// shown (uniform over the distinct keys shown). Held out, every value of a key shown before is
// scored (multi-query), the probe's included.
static void recall_example(const Task *t, Rng *r, int split, int *ids, int *targets) {
    int T = t->T, V = t->vocab, ns = V - t->noise_vocab_size, n_keys = ns / 2;
    int n_pairs = T / 2, n = 2 * n_pairs;
    int *seq = xmalloc(sizeof(int) * (size_t)n), *label = xmalloc(sizeof(int) * (size_t)n);
    int *value_of = xmalloc(sizeof(int) * (size_t)n_keys), *shown = xmalloc(sizeof(int) * n_keys);
    int n_shown = 0;
    for (int k = 0; k < n_keys; k++) value_of[k] = -1;
    int not_noise = (int)rng_next_below(r, (uint64_t)n_pairs);
    if (not_noise == n_pairs - 1) not_noise = 0;  // see above: only matters if every pair is noise
    for (int i = 0; i < n_pairs - 1; i++) {
        int *s = seq + 2 * i, *l = label + 2 * i;
        if (t->frac_noise > 0 && i != not_noise && rng_next_uniform(r) < t->frac_noise) {
            for (int j = 0; j < 2; j++)
                s[j] = ns + (int)rng_next_below(r, (uint64_t)t->noise_vocab_size), l[j] = -1;
            continue;
        }
        int k = (int)rng_next_below(r, (uint64_t)n_keys);
        int seen = value_of[k] >= 0;
        if (!seen) {
            value_of[k] = n_keys + (int)rng_next_below(r, (uint64_t)(ns - n_keys));
            shown[n_shown++] = k;
        }
        s[0] = k, s[1] = value_of[k], l[0] = -1, l[1] = seen ? value_of[k] : -1;
    }
    int k = shown[rng_next_below(r, (uint64_t)n_shown)];
    seq[n - 2] = k, seq[n - 1] = value_of[k], label[n - 2] = -1, label[n - 1] = value_of[k];
    shift_out(T, n, seq, label, split, ids, targets);
    free(seq), free(label), free(value_of), free(shown);
}

// A key or value motif: s distinct symbols of [lo, lo + n) in random order (a uniform draw
// from MAD's list of all s-permutations).
static void draw_motif(Rng *r, int lo, int n, int s, int *out) {
    for (int i = 0; i < s; i++) {
        int v, dup;
        do {  // rejection keeps it uniform over permutations; s <= n (mad_task_check)
            v = lo + (int)rng_next_below(r, (uint64_t)n), dup = 0;
            for (int j = 0; j < i; j++) dup |= out[j] == v;
        } while (dup);
        out[i] = v;
    }
}

typedef struct {
    int klen, k[MAD_MAX_MOTIF], vlen, v[MAD_MAX_MOTIF], shown;
} FuzzyEntry;

static FuzzyEntry *fuzzy_find(FuzzyEntry *e, int n, int klen, const int *k) {
    for (int i = 0; i < n; i++)
        if (e[i].klen == klen && !memcmp(e[i].k, k, sizeof(int) * (size_t)klen)) return e + i;
    return NULL;
}

// fuzzy_recall: keys and values are motifs of 1..k_motif_size (1..v_motif_size) symbols;
// pad V - 1, keys from the lower half of the V - 1 - noise plain symbols, values the upper.
// The probe pair (its key of maximal size when held out, of random size in training) is put
// at a random point, pairs are drawn until no maximal pair plus the probe could still fit, the
// probe pair closes the sequence, and pad tokens fill the front up to T + 1. Held out, every
// key has maximal size (MAD's quirk: training keys are of every size, test keys only of the
// largest) and the values of keys shown before are scored.
static void fuzzy_example(const Task *t, Rng *r, int split, int *ids, int *targets) {
    int T = t->T, V = t->vocab, km = t->k_motif_size, vm = t->v_motif_size;
    int ns = V - 1 - t->noise_vocab_size, n_keys = ns / 2, pad = V - 1,
        train = split == SPLIT_TRAIN;
    int n = T + 1, len = 0;
    int *seq = xmalloc(sizeof(int) * (size_t)n), *label = xmalloc(sizeof(int) * (size_t)n);
    FuzzyEntry *map = xmalloc(sizeof(FuzzyEntry) * (size_t)(T / 2 + 2));
    int n_map = 1;
    FuzzyEntry *probe = map;
    probe->klen = train ? 1 + (int)rng_next_below(r, (uint64_t)km) : km;
    probe->vlen = 1 + (int)rng_next_below(r, (uint64_t)vm);
    draw_motif(r, 0, n_keys, probe->klen, probe->k);
    draw_motif(r, n_keys, ns - n_keys, probe->vlen, probe->v);
    probe->shown = 0;
    int probe_len = probe->klen + probe->vlen;
    int probe_at = (int)rng_next_below(r, (uint64_t)(T - 2 * probe_len)), probe_added = 0;
    while (len < T - probe_len - (km + vm)) {
        int ks = train ? 1 + (int)rng_next_below(r, (uint64_t)km) : km;
        int vs = 1 + (int)rng_next_below(r, (uint64_t)vm);
        FuzzyEntry *put = NULL;
        int scored = 0;
        if (len >= probe_at && !probe_added) {
            put = probe, probe_added = 1;
        } else if (t->frac_noise > 0 && rng_next_uniform(r) < t->frac_noise) {
            for (int j = 0; j < ks + vs; j++, len++)
                seq[len] = ns + (int)rng_next_below(r, (uint64_t)t->noise_vocab_size),
                label[len] = -1;
            continue;
        } else {
            int k[MAD_MAX_MOTIF];
            draw_motif(r, 0, n_keys, ks, k);
            FuzzyEntry *e = fuzzy_find(map, n_map, ks, k);
            if (e == probe) probe_added = 1;
            if (!e) {
                e = map + n_map++;
                e->klen = ks, memcpy(e->k, k, sizeof(int) * (size_t)ks), e->shown = 0;
                e->vlen = vs;
                draw_motif(r, n_keys, ns - n_keys, vs, e->v);
            }
            put = e, scored = e->shown;
        }
        for (int j = 0; j < put->klen; j++, len++) seq[len] = put->k[j], label[len] = -1;
        for (int j = 0; j < put->vlen; j++, len++)
            seq[len] = put->v[j], label[len] = scored ? put->v[j] : -1;
        put->shown = 1;
    }
    for (int j = 0; j < probe->klen; j++, len++) seq[len] = probe->k[j], label[len] = -1;
    for (int j = 0; j < probe->vlen; j++, len++) seq[len] = label[len] = probe->v[j];
    int n_pad = n - len;  // front padding: the pairs move to the end of the row
    memmove(seq + n_pad, seq, sizeof(int) * (size_t)len);
    memmove(label + n_pad, label, sizeof(int) * (size_t)len);
    for (int p = 0; p < n_pad; p++) seq[p] = pad, label[p] = -1;
    shift_out(T, n, seq, label, split, ids, targets);
    free(seq), free(label), free(map);
}

// selective_copy: n tokens from the V - 2 plain symbols, T - 2n - 1 blanks (V - 2) spread
// among them, the copy token V - 1, then n blanks, at which the n tokens are scored in order
// (aligned: position T - n + i outputs token i). Each blank goes in front of a uniformly
// drawn token, as MAD's np.insert at randint(0, n) does, so no blank ever follows the last
// token (MAD's quirk; MAD also draws these slots from numpy's unseeded global stream).
static void selective_copy_example(const Task *t, Rng *r, int *ids, int *targets) {
    int T = t->T, V = t->vocab, n = t->num_tokens_to_copy, blank = V - 2;
    int *before = xmalloc(sizeof(int) * (size_t)n), *tok = xmalloc(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) tok[i] = (int)rng_next_below(r, (uint64_t)(V - 2)), before[i] = 0;
    for (int b = 0; b < T - 2 * n - 1; b++) before[rng_next_below(r, (uint64_t)n)]++;
    int p = 0;
    for (int i = 0; i < n; i++) {
        for (int b = 0; b < before[i]; b++) ids[p++] = blank;
        ids[p++] = tok[i];
    }
    ids[p++] = V - 1;
    for (int i = 0; i < T; i++) targets[i] = -1;
    for (int i = 0; i < n; i++) ids[p] = blank, targets[p++] = tok[i];
    free(before), free(tok);
}

// The memorization task's fixed map, one for the whole dataset (from the seed alone): keys
// [0, K) with K = (V - 1) / 2 onto distinct values of [K, V - 1).
static void memorization_map(const Task *t, int *value_of) {
    int K = (t->vocab - 1) / 2, n_values = t->vocab - 1 - K;
    int *perm = xmalloc(sizeof(int) * (size_t)n_values);
    Rng r = {rng_key(t->seed, 0x3E30, 0, 0), 0};
    for (int i = 0; i < n_values; i++) perm[i] = i;
    for (int i = n_values - 1; i > 0; i--) {
        int j = (int)rng_next_below(&r, (uint64_t)i + 1), tmp = perm[i];
        perm[i] = perm[j], perm[j] = tmp;
    }
    for (int k = 0; k < K; k++) value_of[k] = K + perm[k];
    free(perm);
}

// memorization: T / 2 pairs (key, insert token V - 1); at each insert the key's value under
// the fixed map is scored (the same positions in every split: what is tested is the map, not
// the sequence).
static void memorization_example(const Task *t, Rng *r, int *ids, int *targets) {
    int K = (t->vocab - 1) / 2;
    int *value_of = xmalloc(sizeof(int) * (size_t)K);
    memorization_map(t, value_of);
    for (int i = 0; i < t->T; i++) ids[i] = t->vocab - 1, targets[i] = -1;
    for (int i = 0; i < t->T / 2; i++) {
        int k = (int)rng_next_below(r, (uint64_t)K);
        ids[2 * i] = k, targets[2 * i + 1] = value_of[k];
    }
    free(value_of);
}

// compression: T - 1 tokens of the V - 1 - noise plain symbols (each replaced with probability
// frac_noise by a noise token), then the compression token V - 1; every position's own token
// is its target (MAD returns the inputs as targets, noise tokens included). Trained through
// the encoder-pool-decoder head (model.head: autoencoder): as a causal language model the
// task would be the identity.
static void compression_example(const Task *t, Rng *r, int *ids, int *targets) {
    int T = t->T, V = t->vocab, ns = V - 1 - t->noise_vocab_size;
    for (int i = 0; i < T - 1; i++) {
        ids[i] = (int)rng_next_below(r, (uint64_t)ns);
        if (t->frac_noise > 0 && rng_next_uniform(r) < t->frac_noise)
            ids[i] = ns + (int)rng_next_below(r, (uint64_t)t->noise_vocab_size);
    }
    ids[T - 1] = V - 1;
    for (int i = 0; i < T; i++) targets[i] = ids[i];
}

void mad_example(const Task *t, Rng *r, int split, int *ids, int *targets) {
    switch (t->task) {
        case DATA_TASK_IN_CONTEXT_RECALL:
        case DATA_TASK_NOISY_RECALL:
            recall_example(t, r, split, ids, targets);
            break;
        case DATA_TASK_FUZZY_RECALL:
            fuzzy_example(t, r, split, ids, targets);
            break;
        case DATA_TASK_SELECTIVE_COPY:
            selective_copy_example(t, r, ids, targets);
            break;
        case DATA_TASK_MEMORIZATION:
            memorization_example(t, r, ids, targets);
            break;
        case DATA_TASK_COMPRESSION:
            compression_example(t, r, ids, targets);
            break;
        default:
            break;
    }
}

int mad_task_check(const DataOptions *p, const char *name, char *err, size_t errlen) {
    int64_t V = p->vocab, T = p->seq_len, noise = p->noise_vocab_size;
    int recall = p->task == DATA_TASK_IN_CONTEXT_RECALL || p->task == DATA_TASK_NOISY_RECALL;
    // MAD's memorization and selective copy take noise too; madtrain's do not (yet): refused
    // rather than ignored
    if ((p->task == DATA_TASK_MEMORIZATION || p->task == DATA_TASK_SELECTIVE_COPY) &&
        (noise > 0 || p->frac_noise > 0)) {
        snprintf(err, errlen, "%s does not read data.noise_vocab_size or data.frac_noise", name);
        return -1;
    }
    if (p->frac_noise > 0 && noise < 1 &&
        (recall || p->task == DATA_TASK_FUZZY_RECALL || p->task == DATA_TASK_COMPRESSION)) {
        snprintf(err, errlen, "data.frac_noise (%g) needs data.noise_vocab_size >= 1",
                 p->frac_noise);
        return -1;
    }
    if (recall) {
        if (T % 2 || T < 4 || V - noise < 4) {
            snprintf(err, errlen,
                     "%s needs an even data.seq_len >= 4 (%lld) and data.vocab_size - "
                     "data.noise_vocab_size >= 4 (%lld): keys and values are halves of the rest",
                     name, (long long)T, (long long)(V - noise));
            return -1;
        }
    } else if (p->task == DATA_TASK_FUZZY_RECALL) {
        int64_t n_keys = (V - 1 - noise) / 2, n_values = V - 1 - noise - n_keys;
        int64_t km = p->k_motif_size, vm = p->v_motif_size;
        if (n_keys < km || n_values < vm) {
            snprintf(err, errlen,
                     "fuzzy_recall: data.vocab_size %lld leaves %lld key and %lld value symbols, "
                     "fewer than data.k_motif_size (%lld) / data.v_motif_size (%lld)",
                     (long long)V, (long long)n_keys, (long long)n_values, (long long)km,
                     (long long)vm);
            return -1;
        }
        if (T < 3 * (km + vm) + 1) {
            snprintf(err, errlen,
                     "fuzzy_recall: data.seq_len (%lld) must be at least 3 x (data.k_motif_size "
                     "+ data.v_motif_size) + 1 = %lld",
                     (long long)T, (long long)(3 * (km + vm) + 1));
            return -1;
        }
    } else if (p->task == DATA_TASK_SELECTIVE_COPY) {
        if (T <= 2 * p->num_tokens_to_copy + 1 || V < 3) {
            snprintf(err, errlen,
                     "selective_copy: data.seq_len (%lld) must exceed 2 x "
                     "data.num_tokens_to_copy + 1 = %lld, and data.vocab_size at least 3",
                     (long long)T, (long long)(2 * p->num_tokens_to_copy + 1));
            return -1;
        }
    } else if (p->task == DATA_TASK_MEMORIZATION) {
        if (T % 2 || V < 4) {
            snprintf(err, errlen,
                     "memorization needs an even data.seq_len (%lld) and data.vocab_size >= 4",
                     (long long)T);
            return -1;
        }
    } else if (V - 1 - noise < 1 || T < 2) {
        snprintf(err, errlen,
                 "compression: data.vocab_size - 1 - data.noise_vocab_size must be >= 1");
        return -1;
    }
    return 0;
}
