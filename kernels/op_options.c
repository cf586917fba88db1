// Parsing and formatting of ops' own options (OpOption), shared by the config loader (keys
// mixer.*) and the test suites (OpTest.opts), so a value is validated the same way wherever
// it comes from. Precision-free: compiled once (the float pass of the numeric library).
#ifndef MT_DOUBLE
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

int op_choice_index(const char *choices, const char *value) {
    const char *p = choices;
    for (int i = 0; p; i++) {
        size_t n = strcspn(p, "|");
        if (strlen(value) == n && !strncmp(p, value, n)) return i;
        p = strchr(p, '|');
        if (p) p++;
    }
    return -1;
}

int op_option_parse(const OpOption *o, const char *value, void *block, char *err, size_t errlen) {
    char *field = (char *)block + o->offset, *end = NULL;
    errno = 0;
    switch (o->type) {
        case OPT_INT:
        case OPT_FLOAT: {
            double d = strtod(value, &end);
            int is_int = o->type == OPT_INT;
            if (!*value || *end || errno || !isfinite(d) || (is_int && d != floor(d))) {
                snprintf(err, errlen, "key 'mixer.%s' expects %s, got '%s'", o->key,
                         is_int ? "an integer" : "a number", value);
                return -1;
            }
            if (d < o->lo || d > o->hi) {
                snprintf(err, errlen, "key 'mixer.%s' = %s is out of range [%.15g, %.15g]", o->key,
                         value, o->lo, o->hi);
                return -1;
            }
            if (is_int) {
                int v = (int)d;
                memcpy(field, &v, sizeof(v));
            } else {
                memcpy(field, &d, sizeof(d));
            }
            return 0;
        }
        case OPT_BOOL:
        case OPT_ENUM: {
            int is_bool = o->type == OPT_BOOL;
            int v = op_choice_index(is_bool ? "false|true|no|yes|off|on|0|1" : o->choices, value);
            if (v < 0) {
                if (is_bool)
                    snprintf(err, errlen, "key 'mixer.%s' expects true or false, got '%s'", o->key,
                             value);
                else
                    snprintf(err, errlen, "key 'mixer.%s' expects one of %s, got '%s'", o->key,
                             o->choices, value);
                return -1;
            }
            if (is_bool) v %= 2;
            memcpy(field, &v, sizeof(v));
            return 0;
        }
    }
    return -1;
}

void op_option_format(const OpOption *o, const void *block, char *out, size_t n) {
    const char *field = (const char *)block + o->offset;
    int i;
    double d;
    switch (o->type) {
        case OPT_FLOAT:
            memcpy(&d, field, sizeof(d)), snprintf(out, n, "%.17g", d);
            break;
        case OPT_INT:
            memcpy(&i, field, sizeof(i)), snprintf(out, n, "%d", i);
            break;
        case OPT_BOOL:
            memcpy(&i, field, sizeof(i)), snprintf(out, n, "%s", i ? "true" : "false");
            break;
        case OPT_ENUM: {
            memcpy(&i, field, sizeof(i));
            const char *p = o->choices;
            for (int k = 0; k < i && p; k++) p = strchr(p, '|'), p = p ? p + 1 : NULL;
            snprintf(out, n, "%.*s", p ? (int)strcspn(p, "|") : 0, p ? p : "");
            break;
        }
    }
}

const OpOption *op_option_find(const OpOption *opts, const char *key) {
    for (const OpOption *o = opts; o && o->key; o++)
        if (!strcmp(o->key, key)) return o;
    return NULL;
}

int op_option_int(const OpOption *opts, const char *key, const OpShape *s, int absent) {
    const OpOption *o = op_option_find(opts, key);
    if (!o || o->type == OPT_FLOAT) return absent;
    int v;
    memcpy(&v, s->opt.bytes + o->offset, sizeof(v));
    return v;
}

// "key=value key=value" into the block; unknown keys are an error naming them.
static int apply_list(const OpOption *opts, const char *list, const char *what, OpShape *s,
                      char *err, size_t errlen) {
    if (!list) return 0;
    const char *p = list;
    while (*p) {
        while (*p == ' ') p++;
        if (!*p) break;
        size_t n = strcspn(p, " ");
        const char *eq = memchr(p, '=', n);
        if (!eq) {
            snprintf(err, errlen, "%s: '%.*s' is not key=value", what, (int)n, p);
            return -1;
        }
        char key[64], value[64];
        snprintf(key, sizeof(key), "%.*s", (int)(eq - p), p);
        snprintf(value, sizeof(value), "%.*s", (int)(p + n - eq - 1), eq + 1);
        const OpOption *o = op_option_find(opts, key);
        if (!o) {
            snprintf(err, errlen, "%s: the op has no option '%s'", what, key);
            return -1;
        }
        if (op_option_parse(o, value, s->opt.bytes, err, errlen)) return -1;
        p += n;
    }
    return 0;
}

int op_options_apply(const OpOption *opts, const char *fixed, const char *overrides, int seq_len,
                     OpShape *s, char *err, size_t errlen) {
    memset(s->opt.bytes, 0, sizeof(s->opt.bytes));
    for (const OpOption *o = opts; o && o->key; o++)
        if (op_option_parse(o, o->def, s->opt.bytes, err, errlen)) return -1;
    if (apply_list(opts, overrides, "options", s, err, errlen)) return -1;
    if (apply_list(opts, fixed, "fixed options", s, err, errlen)) return -1;
    for (const OpOption *o = opts; o && o->key; o++) {
        int v;
        if (!(o->flags & OPT_ZERO_IS_SEQ_LEN)) continue;
        memcpy(&v, s->opt.bytes + o->offset, sizeof(v));
        if (!v) memcpy(s->opt.bytes + o->offset, &seq_len, sizeof(seq_len));
    }
    return 0;
}
#endif
