// The trainer's console log (rank 0) and metrics.jsonl, one JSON object a line: train, eval,
// aux, skipped, checkpoint and summary events.
#define _GNU_SOURCE  // vasprintf
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train_internal.h"
#include "util.h"

const char *json_escape(const char *s, char *out, size_t n) {
    size_t k = 0;
    for (; *s && k + 7 < n; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            out[k++] = '\\', out[k++] = (char)c;
        else if (c < 0x20)
            k += (size_t)snprintf(out + k, n - k, "\\u%04x", c);
        else
            out[k++] = (char)c;
    }
    out[k] = 0;
    return out;
}

// One JSON object per line. Strings come in escaped (json_escape); a number printf writes as
// nan or inf (a diverged loss) becomes null, so every line stays valid JSON.
void jsonl(Logger *lg, const char *fmt, ...) {
    if (!lg->metrics) return;
    va_list ap;
    va_start(ap, fmt);
    char *line = NULL;
    int len = vasprintf(&line, fmt, ap);
    va_end(ap);
    if (len < 0) return;
    int in_str = 0;
    for (int i = 0; i < len; i++) {
        char c = line[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0;
            fputc(c, lg->metrics);
            if (c == '\\' && i < len) fputc(line[i], lg->metrics);
            continue;
        }
        if (c == '"') in_str = 1;
        if (c == ':') {
            int j = i + 1 + (line[i + 1] == '-');
            if (!strncmp(line + j, "nan", 3) || !strncmp(line + j, "inf", 3)) {
                fputs(":null", lg->metrics);
                i = j + 2;
                continue;
            }
        }
        fputc(c, lg->metrics);
    }
    free(line);
    fputc('\n', lg->metrics);
    fflush(lg->metrics);
}

void log_open(Logger *lg, const Config *cfg, Comm *comm, int append) {
    memset(lg, 0, sizeof(*lg));
    if (comm->rank) return;
    char path[1100];
    snprintf(path, sizeof(path), "%s/metrics.jsonl", cfg->run_dir);
    // A resumed run continues the same metrics file, as a requeued job continues its log.
    lg->metrics = fopen(path, append ? "a" : "w");
    if (!lg->metrics)
        comm_fatal(comm, MT_EXIT_FAIL, "cannot write '%s': %s", path, strerror(errno));
}

void log_close(Logger *lg) {
    if (lg->metrics) fclose(lg->metrics);
    lg->metrics = NULL;
}

void log_header(const Config *cfg, const Comm *comm, int threads, const char *device,
                const ModelConfig *mc, size_t n_params, const char *task, int T, int mb,
                int64_t steps) {
    if (comm->rank) return;
    printf("madtrain %s | %d rank(s) x %d thread(s) | %s\n", MADTRAIN_VERSION, comm->world, threads,
           device);
    printf("model: %d layers, d_model %d, %d heads, mixer %s, mlp %s, %zu parameters\n",
           mc->n_layers, mc->d_model, mc->n_heads, cfg->mixer,
           config_enum_name("model.mlp", mc->mlp), n_params);
    printf("task: %s, T %d, vocab %d | batch %lld (%d per rank x %lld micro-steps) | %lld steps\n",
           task, T, mc->vocab_size, (long long)cfg->batch_size, mb, (long long)cfg->grad_accum,
           (long long)steps);
    if (mc->cp.size > 1)
        printf(
            "context: %d group(s) of %d ranks, each rank a slice of %d tokens of every sequence "
            "(parallel.context)\n",
            comm->world / mc->cp.size, mc->cp.size, T / mc->cp.size);
    fflush(stdout);
}

void log_step(Logger *lg, Interval *iv, int64_t step, int64_t steps, int64_t first_step, double lr,
              double grad_norm, const TrainState *st) {
    double now = now_seconds(), elapsed = now - lg->t_start;
    double tps = (st->tokens - iv->tokens_last) / (now - iv->t_last);
    double loss = iv->sums[1] > 0 ? iv->sums[0] / iv->sums[1] : 0;
    double acc = iv->sums[3] > 0 ? iv->sums[2] / iv->sums[3] : 0;
    // images: acc is top-1, and top-5 follows it
    char top5[48] = "", top5_json[48] = "";
    if (iv->images) {
        double t5 = iv->sums[3] > 0 ? iv->sums[4] / iv->sums[3] : 0;
        snprintf(top5, sizeof(top5), " | top5 %.4f", t5);
        snprintf(top5_json, sizeof(top5_json), ",\"acc_top5\":%.6g", t5);
    }
    char el[32], eta[32];
    format_duration(elapsed, el, sizeof(el));
    format_duration(elapsed / (step + 1 - first_step) * (steps - step - 1), eta, sizeof(eta));
    printf(
        "step %6lld/%lld | loss %.4f | acc %.4f%s | lr %.2e | gnorm %.3f | %.0f tok/s | "
        "elapsed %s | eta %s\n",
        (long long)step + 1, (long long)steps, loss, acc, top5, lr, grad_norm, tps, el, eta);
    fflush(stdout);
    jsonl(lg,
          "{\"event\":\"train\",\"step\":%lld,\"loss\":%.6g,\"acc\":%.6g%s,\"lr\":%.6g,"
          "\"grad_norm\":%.6g,\"tokens\":%lld,\"tokens_per_s\":%.6g,\"elapsed_s\":%.6f,"
          "\"skipped_steps\":%lld}",
          (long long)step + 1, loss, acc, top5_json, lr, grad_norm, (long long)st->tokens, tps,
          elapsed, (long long)st->skipped_steps);
    iv->t_last = now, iv->tokens_last = st->tokens;
}

// Language modelling: the mean loss is in nats per scored token; perplexity and bits per token
// are the figures papers report.
void log_eval(Logger *lg, int64_t step, const char *name, int is_lm, const EvalResult *e) {
    char esc[256];
    char levels[64 * MAX_EVAL_LEVELS] = "", levels_json[64 * MAX_EVAL_LEVELS] = "";
    for (int l = 0; l < e->n_levels; l++) {
        if (isnan(e->level_acc[l])) continue;  // a level (length bucket) with no position
        size_t k = strlen(levels), kj = strlen(levels_json);
        snprintf(levels + k, sizeof(levels) - k, " | L%d %.4f", l + 1, e->level_acc[l]);
        snprintf(levels_json + kj, sizeof(levels_json) - kj, ",\"acc_level_%d\":%.6g", l + 1,
                 e->level_acc[l]);
    }
    if (e->images) {  // top-5 next to top-1 (acc), in the line and in metrics.jsonl
        size_t k = strlen(levels), kj = strlen(levels_json);
        snprintf(levels + k, sizeof(levels) - k, " | top5 %.4f", e->acc_top5);
        snprintf(levels_json + kj, sizeof(levels_json) - kj, ",\"acc_top5\":%.6g", e->acc_top5);
    }
    if (is_lm) {
        double ppl = exp(e->loss), bits = e->loss / log(2.0);
        printf("eval  %6lld | %s loss %.4f | ppl %.2f | bits/token %.4f | %lld tokens\n",
               (long long)step, name, e->loss, ppl, bits, (long long)e->scored);
        jsonl(lg,
              "{\"event\":\"eval\",\"split\":\"%s\",\"step\":%lld,\"loss\":%.6g,\"ppl\":%.6g,"
              "\"bits_per_token\":%.6g,\"acc\":%.6g,\"tokens\":%lld,\"examples\":%lld}",
              json_escape(name, esc, sizeof(esc)), (long long)step, e->loss, ppl, bits, e->acc,
              (long long)e->scored, (long long)e->examples);
    } else {
        printf(
            "eval  %6lld | %s loss %.4f | %s acc %.4f | micro %.4f | macro %.4f%s | %lld "
            "examples\n",
            (long long)step, name, e->loss, name, e->acc, e->acc_micro, e->acc_macro, levels,
            (long long)e->examples);
        jsonl(lg,
              "{\"event\":\"eval\",\"split\":\"%s\",\"step\":%lld,\"loss\":%.6g,\"acc\":%.6g,"
              "\"acc_micro\":%.6g,\"acc_macro\":%.6g,\"examples\":%lld%s}",
              json_escape(name, esc, sizeof(esc)), (long long)step, e->loss, e->acc, e->acc_micro,
              e->acc_macro, (long long)e->examples, levels_json);
    }
    fflush(stdout);
}

void log_summary(Logger *lg, const Comm *comm, const TrainState *st, int64_t first_step,
                 double wall, int64_t tokens_per_step, double test_acc, double test_loss,
                 size_t n_params, const char *status) {
    int64_t done = st->step - first_step;
    double tps = wall > 0 ? done * tokens_per_step / wall : 0;
    if (!strcmp(status, "preempted"))
        printf("stopped by signal at step %lld: checkpoint written, exit 0 (status: preempted)\n",
               (long long)st->step);
    printf(
        "done: %lld steps in %.1fs, %.0f tok/s, test acc %.4f, test loss %.4f, "
        "skipped %lld step(s)\n",
        (long long)done, wall, tps, test_acc, test_loss, (long long)st->skipped_steps);
    jsonl(lg,
          "{\"event\":\"summary\",\"step\":%lld,\"steps_this_run\":%lld,\"wall_s\":%.3f,"
          "\"tokens\":%lld,\"tokens_per_s\":%.6g,\"test_acc\":%.6g,\"test_loss\":%.6g,"
          "\"params\":%zu,\"skipped_steps\":%lld,\"world\":%d,\"status\":\"%s\"}",
          (long long)st->step, (long long)done, wall, (long long)st->tokens, tps, test_acc,
          test_loss, n_params, (long long)st->skipped_steps, comm->world, status);
}
