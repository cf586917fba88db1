// A strict reader of the python pickles CIFAR is distributed in: protocol 2 as Python 2's
// cPickle wrote the official batches (and protocols 0 and 1, which Python 2 used for small
// files and by default), and protocols 2 to 5 as Python 3's pickle.dump writes a
// dict of bytes / numpy arrays / lists. Unpickling can run arbitrary code, so this is no
// general unpickler: it builds plain values, and the only calls it evaluates are the handful
// numpy and Python 3 use to rebuild arrays and bytes (numpy's _reconstruct, dtype, scalar,
// _frombuffer and _codecs.encode); any other call or opcode is refused by name.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image_sources.h"
#include "util.h"

typedef enum {
    PV_NONE,
    PV_BOOL,
    PV_INT,
    PV_FLOAT,
    PV_BYTES,
    PV_STR,
    PV_LIST,
    PV_TUPLE,
    PV_DICT,
    PV_GLOBAL,
    PV_ARRAY,
    PV_DTYPE,
} PvKind;

typedef struct Pv {
    PvKind kind;
    int64_t i;
    const unsigned char *b;  // BYTES, STR (UTF-8), ARRAY data: into the file or the arena
    size_t len;
    struct Pv **items;  // LIST, TUPLE, DICT (key, value, key, value, ...)
    size_t n, cap;
    char module[64], name[64];  // GLOBAL
    char dtype[4];              // ARRAY, DTYPE: kind + size ("u1", "i8"), order in dtype[3]
    int64_t shape[4];
    int ndim;
} Pv;

typedef struct {
    const unsigned char *buf;
    size_t len, at;
    const char *path;
    void **arena;  // every allocation, freed together
    size_t n_arena, cap_arena;
    Pv **stack;
    size_t sp, cap_stack;
    size_t *marks;
    size_t n_marks, cap_marks;
    Pv **memo;
    size_t cap_memo, n_memo;  // n_memo: keys set (MEMOIZE's next key)
    char *err;
    size_t errlen;
} Unpickler;

static void *alloc(Unpickler *u, size_t n) {
    if (u->n_arena == u->cap_arena) {
        u->cap_arena = u->cap_arena ? 2 * u->cap_arena : 256;
        u->arena = xrealloc(u->arena, sizeof(void *) * u->cap_arena);
    }
    return u->arena[u->n_arena++] = xcalloc(1, n ? n : 1);
}

static Pv *new_pv(Unpickler *u, PvKind kind) {
    Pv *v = alloc(u, sizeof(Pv));
    v->kind = kind;
    return v;
}

static void add_item(Unpickler *u, Pv *c, Pv *item) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 8;
        Pv **grown = alloc(u, sizeof(Pv *) * cap);
        if (c->n) memcpy(grown, c->items, sizeof(Pv *) * c->n);
        c->items = grown, c->cap = cap;
    }
    c->items[c->n++] = item;
}

static int fail(Unpickler *u, const char *what) {
    snprintf(u->err, u->errlen, "%s: %s (at byte %zu of the pickle)", u->path, what, u->at);
    return -1;
}

static int need(Unpickler *u, size_t n) {
    return n > u->len - u->at ? fail(u, "truncated pickle") : 0;
}

static uint64_t le(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static int push(Unpickler *u, Pv *v) {
    if (u->sp == u->cap_stack) {
        u->cap_stack = u->cap_stack ? 2 * u->cap_stack : 64;
        u->stack = xrealloc(u->stack, sizeof(Pv *) * u->cap_stack);
    }
    u->stack[u->sp++] = v;
    return 0;
}

static Pv *pop(Unpickler *u) {
    if (u->sp == 0 || (u->n_marks && u->sp == u->marks[u->n_marks - 1])) {
        fail(u, "damaged pickle: stack underflow");
        return NULL;
    }
    return u->stack[--u->sp];
}

static Pv *top(Unpickler *u) {
    if (u->sp == 0) {
        fail(u, "damaged pickle: empty stack");
        return NULL;
    }
    return u->stack[u->sp - 1];
}

// The items above the last MARK, removed from the stack (with the mark).
static int pop_mark(Unpickler *u, size_t *from) {
    if (!u->n_marks) return fail(u, "damaged pickle: no MARK");
    *from = u->marks[--u->n_marks];
    return 0;
}

static int memo_put(Unpickler *u, size_t idx) {
    if (idx > (1u << 26)) return fail(u, "memo index out of range");
    if (idx >= u->cap_memo) {
        size_t cap = idx * 2 + 64;
        u->memo = xrealloc(u->memo, sizeof(Pv *) * cap);
        memset(u->memo + u->cap_memo, 0, sizeof(Pv *) * (cap - u->cap_memo));
        u->cap_memo = cap;
    }
    Pv *v = top(u);
    if (!v) return -1;
    u->n_memo += !u->memo[idx];
    u->memo[idx] = v;
    return 0;
}

static int memo_get(Unpickler *u, size_t idx) {
    if (idx >= u->cap_memo || !u->memo[idx]) return fail(u, "damaged pickle: unknown memo key");
    return push(u, u->memo[idx]);
}

static Pv *bytes_pv(Unpickler *u, PvKind kind, size_t n) {
    if (need(u, n)) return NULL;
    Pv *v = new_pv(u, kind);
    v->b = u->buf + u->at, v->len = n;
    u->at += n;
    return v;
}

static int is_str(const Pv *v, const char *s) {
    return v && (v->kind == PV_STR || v->kind == PV_BYTES) && v->len == strlen(s) &&
           !memcmp(v->b, s, v->len);
}

static int is_global(const Pv *v, const char *module, const char *name) {
    return v->kind == PV_GLOBAL && !strcmp(v->module, module) && !strcmp(v->name, name);
}

static int is_numpy(const Pv *v, const char *sub, const char *name) {
    char a[64], b[64];
    snprintf(a, sizeof(a), "numpy.core.%s", sub);
    snprintf(b, sizeof(b), "numpy._core.%s", sub);  // numpy >= 2 pickles under this name
    return is_global(v, a, name) || is_global(v, b, name);
}

// "u1", "<i8", "|u1", "int64": a dtype name as numpy.dtype() takes it.
static int parse_dtype(Unpickler *u, const Pv *s, Pv *out) {
    char name[32] = "";
    if (!s || (s->kind != PV_STR && s->kind != PV_BYTES) || s->len >= sizeof(name))
        return fail(u, "numpy.dtype() with a non-string type");
    memcpy(name, s->b, s->len);
    const char *p = name;
    if (*p == '<' || *p == '|' || *p == '=') p++;
    static const struct {
        const char *alias, *code;
    } aliases[] = {{"uint8", "u1"},   {"int8", "i1"},    {"int16", "i2"}, {"uint16", "u2"},
                   {"int32", "i4"},   {"uint32", "u4"},  {"int64", "i8"}, {"uint64", "u8"},
                   {"float32", "f4"}, {"float64", "f8"}, {"B", "u1"},     {"b", "i1"}};
    for (size_t i = 0; i < sizeof(aliases) / sizeof(*aliases); i++)
        if (!strcmp(p, aliases[i].alias)) p = aliases[i].code;
    if (strlen(p) != 2 || !strchr("uif", p[0]) || !strchr("1248", p[1])) {
        char msg[96];
        snprintf(msg, sizeof(msg), "numpy dtype '%s' is not an integer or float type", name);
        return fail(u, msg);
    }
    out->dtype[0] = p[0], out->dtype[1] = p[1], out->dtype[3] = '<';
    return 0;
}

// UTF-8 text whose code points are all < 256, as the bytes they stand for: Python 3 pickles
// bytes at protocol 2 as _codecs.encode(text, 'latin1').
static Pv *latin1(Unpickler *u, const Pv *s) {
    unsigned char *out = alloc(u, s->len);
    size_t n = 0;
    for (size_t i = 0; i < s->len; i++) {
        unsigned c = s->b[i];
        if (c >= 0x80) {
            if ((c & 0xE0) != 0xC0 || i + 1 >= s->len || c > 0xC3) {
                fail(u, "_codecs.encode of text outside latin-1");
                return NULL;
            }
            c = (c & 0x1F) << 6 | (s->b[++i] & 0x3F);
        }
        out[n++] = (unsigned char)c;
    }
    Pv *v = new_pv(u, PV_BYTES);
    v->b = out, v->len = n;
    return v;
}

static int reduce(Unpickler *u) {
    Pv *args = pop(u), *fn = args ? pop(u) : NULL;
    if (!fn) return -1;
    if (fn->kind != PV_GLOBAL || args->kind != PV_TUPLE)
        return fail(u, "REDUCE of something that is not a named function");
    Pv **a = args->items;
    size_t n = args->n;
    if (is_global(fn, "_codecs", "encode") && n == 2 && a[0]->kind == PV_STR &&
        (is_str(a[1], "latin1") || is_str(a[1], "latin-1"))) {
        Pv *v = latin1(u, a[0]);
        return v ? push(u, v) : -1;
    }
    if ((is_global(fn, "builtins", "bytes") || is_global(fn, "__builtin__", "bytes")) && n == 0)
        return push(u, new_pv(u, PV_BYTES));
    if (is_numpy(fn, "multiarray", "_reconstruct")) return push(u, new_pv(u, PV_ARRAY));
    if (is_global(fn, "numpy", "dtype") && n >= 1) {
        Pv *d = new_pv(u, PV_DTYPE);
        return parse_dtype(u, a[0], d) ? -1 : push(u, d);
    }
    if (is_numpy(fn, "multiarray", "scalar") && n == 2 && a[0]->kind == PV_DTYPE &&
        a[1]->kind == PV_BYTES) {
        int size = a[0]->dtype[1] - '0';
        if (a[0]->dtype[0] == 'f' || a[1]->len != (size_t)size)
            return fail(u, "a numpy scalar that is not an integer");
        uint64_t raw = le(a[1]->b, size);
        Pv *v = new_pv(u, PV_INT);
        v->i = a[0]->dtype[0] == 'i' && size < 8 && (raw >> (8 * size - 1) & 1)
                   ? (int64_t)(raw | ~0ull << (8 * size))
                   : (int64_t)raw;
        return push(u, v);
    }
    if (is_numpy(fn, "numeric", "_frombuffer") && n == 4 && a[0]->kind == PV_BYTES &&
        a[1]->kind == PV_DTYPE && a[2]->kind == PV_TUPLE) {
        if (!is_str(a[3], "C") && a[2]->n > 1) return fail(u, "a Fortran-order numpy array");
        Pv *v = new_pv(u, PV_ARRAY);
        memcpy(v->dtype, a[1]->dtype, sizeof(v->dtype));
        if (a[2]->n > 4) return fail(u, "a numpy array of more than 4 dimensions");
        v->ndim = (int)a[2]->n;
        for (int i = 0; i < v->ndim; i++) v->shape[i] = a[2]->items[i]->i;
        v->b = a[0]->b, v->len = a[0]->len;
        return push(u, v);
    }
    char msg[256];
    snprintf(msg, sizeof(msg),
             "calls %s.%s, which a CIFAR batch does not (refused: unpickling can run code)",
             fn->module, fn->name);
    return fail(u, msg);
}

static int build(Unpickler *u) {
    Pv *state = pop(u), *obj = state ? top(u) : NULL;
    if (!obj) return -1;
    if (obj->kind == PV_DTYPE) {  // (version, byte order, ...)
        if (state->kind != PV_TUPLE || state->n < 2 || !is_str(state->items[1], ">")) return 0;
        return obj->dtype[1] == '1' ? 0 : fail(u, "a big-endian numpy array");
    }
    if (obj->kind != PV_ARRAY || state->kind != PV_TUPLE || state->n != 5)
        return fail(u, "BUILD of something other than a numpy array or dtype");
    Pv **s = state->items;  // (version, shape, dtype, is_fortran, raw data)
    if (s[1]->kind != PV_TUPLE || s[2]->kind != PV_DTYPE || s[1]->n > 4)
        return fail(u, "a numpy array state without shape and dtype");
    if (s[4]->kind != PV_BYTES) return fail(u, "a numpy array of Python objects");
    obj->ndim = (int)s[1]->n;
    for (int i = 0; i < obj->ndim; i++) {
        if (s[1]->items[i]->kind != PV_INT || s[1]->items[i]->i < 0)
            return fail(u, "a numpy array with a non-integer shape");
        obj->shape[i] = s[1]->items[i]->i;
    }
    if (s[3]->kind == PV_BOOL && s[3]->i && obj->ndim > 1)
        return fail(u, "a Fortran-order numpy array");
    memcpy(obj->dtype, s[2]->dtype, sizeof(obj->dtype));
    obj->b = s[4]->b, obj->len = s[4]->len;
    return 0;
}

static int read_line(Unpickler *u, char *out, size_t n) {
    const unsigned char *nl = memchr(u->buf + u->at, '\n', u->len - u->at);
    if (!nl) return fail(u, "truncated pickle");
    size_t len = (size_t)(nl - (u->buf + u->at));
    if (len >= n) return fail(u, "a global name too long for a CIFAR batch");
    memcpy(out, u->buf + u->at, len);
    out[len] = 0;
    u->at += len + 1;
    return 0;
}

// ---- protocol 0's text opcodes (Python 2 wrote small pickles such as batches.meta so) ----
// The rest of the line, without its newline; NULL when there is no newline.
static const unsigned char *text_line(Unpickler *u, size_t *len) {
    const unsigned char *start = u->buf + u->at, *nl = memchr(start, '\n', u->len - u->at);
    if (!nl) {
        fail(u, "truncated pickle");
        return NULL;
    }
    *len = (size_t)(nl - start);
    u->at += *len + 1;
    return start;
}

static int text_int(Unpickler *u, int64_t *v) {
    size_t len;
    const unsigned char *p = text_line(u, &len);
    if (!p) return -1;
    char num[32];
    if (len && p[len - 1] == 'L') len--;  // LONG: 12L
    if (len == 0 || len >= sizeof(num)) return fail(u, "damaged integer in a text pickle");
    memcpy(num, p, len);
    num[len] = 0;
    char *end;
    *v = strtoll(num, &end, 10);
    return *end ? fail(u, "damaged integer in a text pickle") : 0;
}

static int hexval(int c) {
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

// STRING: a Python 2 repr, quoted, with backslash escapes; the bytes it stands for.
static Pv *text_string(Unpickler *u) {
    size_t len;
    const unsigned char *p = text_line(u, &len);
    if (!p) return NULL;
    if (len < 2 || (p[0] != '\'' && p[0] != '"') || p[len - 1] != p[0]) {
        fail(u, "damaged string in a text pickle");
        return NULL;
    }
    unsigned char *out = alloc(u, len);
    size_t n = 0;
    for (size_t i = 1; i + 1 < len; i++) {
        unsigned c = p[i];
        if (c != '\\') {
            out[n++] = (unsigned char)c;
            continue;
        }
        if (++i + 1 >= len + 1) break;
        c = p[i];
        const char *simple = strchr("ntr\\'\"abfv", (int)c);
        if (simple && c) {
            static const char map[] = "\n\t\r\\'\"\a\b\f\v";
            out[n++] = (unsigned char)map[simple - "ntr\\'\"abfv"];
        } else if (c == 'x' && i + 2 < len - 1 + 1 && hexval(p[i + 1]) >= 0 &&
                   hexval(p[i + 2]) >= 0) {
            out[n++] = (unsigned char)(hexval(p[i + 1]) * 16 + hexval(p[i + 2]));
            i += 2;
        } else if (c >= '0' && c <= '7') {
            unsigned v = c - '0';
            for (int k = 0; k < 2 && i + 1 < len - 1 && p[i + 1] >= '0' && p[i + 1] <= '7'; k++)
                v = v * 8 + (p[++i] - '0');
            out[n++] = (unsigned char)v;
        } else {
            fail(u, "unknown escape in a text pickle string");
            return NULL;
        }
    }
    Pv *v = new_pv(u, PV_BYTES);
    v->b = out, v->len = n;
    return v;
}

// UNICODE: raw-unicode-escape (latin-1 bytes, \uXXXX and \UXXXXXXXX), as UTF-8.
static Pv *text_unicode(Unpickler *u) {
    size_t len;
    const unsigned char *p = text_line(u, &len);
    if (!p) return NULL;
    unsigned char *out = alloc(u, 4 * len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        uint32_t c = p[i];
        int digits = c == '\\' && i + 1 < len ? (p[i + 1] == 'u' ? 4 : p[i + 1] == 'U' ? 8 : 0) : 0;
        if (digits && i + 1 + (size_t)digits < len) {
            uint32_t v = 0;
            for (int k = 0; k < digits; k++) {
                int h = hexval(p[i + 2 + k]);
                if (h < 0) {
                    fail(u, "damaged \\u escape in a text pickle");
                    return NULL;
                }
                v = v * 16 + (uint32_t)h;
            }
            c = v, i += 1 + (size_t)digits;
        }
        if (c < 0x80) {
            out[n++] = (unsigned char)c;
        } else if (c < 0x800) {
            out[n++] = (unsigned char)(0xC0 | c >> 6), out[n++] = (unsigned char)(0x80 | (c & 63));
        } else if (c < 0x10000) {
            out[n++] = (unsigned char)(0xE0 | c >> 12);
            out[n++] = (unsigned char)(0x80 | ((c >> 6) & 63));
            out[n++] = (unsigned char)(0x80 | (c & 63));
        } else {
            out[n++] = (unsigned char)(0xF0 | (c >> 18 & 7));
            out[n++] = (unsigned char)(0x80 | ((c >> 12) & 63));
            out[n++] = (unsigned char)(0x80 | ((c >> 6) & 63));
            out[n++] = (unsigned char)(0x80 | (c & 63));
        }
    }
    Pv *v = new_pv(u, PV_STR);
    v->b = out, v->len = n;
    return v;
}

static int collect(Unpickler *u, PvKind kind) {
    size_t from;
    if (pop_mark(u, &from)) return -1;
    Pv *c = new_pv(u, kind);
    for (size_t i = from; i < u->sp; i++) add_item(u, c, u->stack[i]);
    u->sp = from;
    return push(u, c);
}

static int run(Unpickler *u, Pv **result) {
    for (;;) {
        if (need(u, 1)) return -1;
        size_t op_at = u->at;
        unsigned op = u->buf[u->at++];
        Pv *v = NULL, *w = NULL, *x = NULL;
        size_t from;
        int rc = 0;
        switch (op) {
            case 0x80:  // PROTO
                if (need(u, 1)) return -1;
                if (u->buf[u->at] < 2 || u->buf[u->at] > 5)
                    return fail(u, "pickle protocol outside 0..5");
                u->at++;
                break;
            case 0x95:  // FRAME: a length hint
                if (need(u, 8)) return -1;
                u->at += 8;
                break;
            case '.':  // STOP
                *result = pop(u);
                return *result ? 0 : -1;
            case '}':
                rc = push(u, new_pv(u, PV_DICT));
                break;
            case ']':
                rc = push(u, new_pv(u, PV_LIST));
                break;
            case ')':
                rc = push(u, new_pv(u, PV_TUPLE));
                break;
            case '(':  // MARK
                if (u->n_marks == u->cap_marks) {
                    u->cap_marks = u->cap_marks ? 2 * u->cap_marks : 16;
                    u->marks = xrealloc(u->marks, sizeof(size_t) * u->cap_marks);
                }
                u->marks[u->n_marks++] = u->sp;
                break;
            case 't':
                rc = collect(u, PV_TUPLE);
                break;
            case 'l':
                rc = collect(u, PV_LIST);
                break;
            case 'd':
                rc = collect(u, PV_DICT);
                if (!rc && top(u)->n % 2) return fail(u, "DICT of an odd number of items");
                break;
            case 0x85:
            case 0x86:
            case 0x87: {  // TUPLE1..3
                size_t k = op - 0x84;
                if (u->sp < k + (u->n_marks ? u->marks[u->n_marks - 1] : 0))
                    return fail(u, "damaged pickle: stack underflow");
                v = new_pv(u, PV_TUPLE);
                for (size_t i = u->sp - k; i < u->sp; i++) add_item(u, v, u->stack[i]);
                u->sp -= k;
                rc = push(u, v);
                break;
            }
            case 'q':
                if (need(u, 1)) return -1;
                rc = memo_put(u, u->buf[u->at++]);
                break;
            case 'r':
                if (need(u, 4)) return -1;
                rc = memo_put(u, (size_t)le(u->buf + u->at, 4));
                u->at += 4;
                break;
            case 0x94:                        // MEMOIZE
                rc = memo_put(u, u->n_memo);  // keys in order: the next is the count so far
                break;
            case 'h':
                if (need(u, 1)) return -1;
                rc = memo_get(u, u->buf[u->at++]);
                break;
            case 'j':
                if (need(u, 4)) return -1;
                rc = memo_get(u, (size_t)le(u->buf + u->at, 4));
                u->at += 4;
                break;
            case 'c':  // GLOBAL module\nname\n
                v = new_pv(u, PV_GLOBAL);
                rc = read_line(u, v->module, sizeof(v->module)) ||
                             read_line(u, v->name, sizeof(v->name))
                         ? -1
                         : push(u, v);
                break;
            case 0x93:  // STACK_GLOBAL
                w = pop(u), x = w ? pop(u) : NULL;
                if (!x) return -1;
                if (x->kind != PV_STR || w->kind != PV_STR || x->len >= 64 || w->len >= 64)
                    return fail(u, "STACK_GLOBAL of non-strings");
                v = new_pv(u, PV_GLOBAL);
                memcpy(v->module, x->b, x->len), memcpy(v->name, w->b, w->len);
                rc = push(u, v);
                break;
            case 'R':
                rc = reduce(u);
                break;
            case 'b':
                rc = build(u);
                break;
            case 's':
                w = pop(u), x = w ? pop(u) : NULL, v = x ? top(u) : NULL;
                if (!v) return -1;
                if (v->kind != PV_DICT) return fail(u, "SETITEM on a non-dict");
                add_item(u, v, x), add_item(u, v, w);
                break;
            case 'u':
            case 'e':
                if (pop_mark(u, &from)) return -1;
                v = from > 0 ? u->stack[from - 1] : NULL;
                if (!v || v->kind != (op == 'u' ? PV_DICT : PV_LIST) ||
                    (op == 'u' && (u->sp - from) % 2))
                    return fail(u, op == 'u' ? "SETITEMS on a non-dict" : "APPENDS on a non-list");
                for (size_t i = from; i < u->sp; i++) add_item(u, v, u->stack[i]);
                u->sp = from;
                break;
            case 'a':
                w = pop(u), v = w ? top(u) : NULL;
                if (!v) return -1;
                if (v->kind != PV_LIST) return fail(u, "APPEND on a non-list");
                add_item(u, v, w);
                break;
            case 'J':
            case 'K':
            case 'M': {
                int n = op == 'J' ? 4 : op == 'K' ? 1 : 2;
                if (need(u, (size_t)n)) return -1;
                v = new_pv(u, PV_INT);
                uint64_t raw = le(u->buf + u->at, n);
                v->i = op == 'J' ? (int32_t)raw : (int64_t)raw;
                u->at += (size_t)n;
                rc = push(u, v);
                break;
            }
            case 0x8a: {  // LONG1: little-endian two's complement of n bytes
                if (need(u, 1)) return -1;
                int n = u->buf[u->at++];
                if (n > 8) return fail(u, "an integer wider than 64 bits");
                if (need(u, (size_t)n)) return -1;
                uint64_t raw = le(u->buf + u->at, n);
                if (n > 0 && n < 8 && (raw >> (8 * n - 1) & 1)) raw |= ~0ull << (8 * n);
                v = new_pv(u, PV_INT);
                v->i = (int64_t)raw;
                u->at += (size_t)n;
                rc = push(u, v);
                break;
            }
            case 'S':
            case 'V':
                v = op == 'S' ? text_string(u) : text_unicode(u);
                rc = v ? push(u, v) : -1;
                break;
            case 'I':  // INT (I01 / I00: True / False)
            case 'L': {
                int64_t iv;
                if (text_int(u, &iv)) return -1;
                v = new_pv(u, PV_INT);
                v->i = iv;
                rc = push(u, v);
                break;
            }
            case 'F': {
                size_t len;
                if (!text_line(u, &len)) return -1;
                rc = push(u, new_pv(u, PV_FLOAT));
                break;
            }
            case 'p':
            case 'g': {
                int64_t idx;
                if (text_int(u, &idx)) return -1;
                if (idx < 0) return fail(u, "negative memo key");
                rc = op == 'p' ? memo_put(u, (size_t)idx) : memo_get(u, (size_t)idx);
                break;
            }
            case 'N':
                rc = push(u, new_pv(u, PV_NONE));
                break;
            case 0x88:
            case 0x89:
                v = new_pv(u, PV_BOOL);
                v->i = op == 0x88;
                rc = push(u, v);
                break;
            case 'G':
                if (need(u, 8)) return -1;
                u->at += 8;
                rc = push(u, new_pv(u, PV_FLOAT));
                break;
            case 'U':   // SHORT_BINSTRING (Python 2 str: bytes)
            case 'C':   // SHORT_BINBYTES
            case 0x8c:  // SHORT_BINUNICODE
                if (need(u, 1)) return -1;
                v = bytes_pv(u, op == 0x8c ? PV_STR : PV_BYTES, u->buf[u->at++]);
                rc = v ? push(u, v) : -1;
                break;
            case 'T':  // BINSTRING
            case 'B':  // BINBYTES
            case 'X':  // BINUNICODE
                if (need(u, 4)) return -1;
                u->at += 4;
                v = bytes_pv(u, op == 'X' ? PV_STR : PV_BYTES, (size_t)le(u->buf + u->at - 4, 4));
                rc = v ? push(u, v) : -1;
                break;
            case 0x8d:  // BINUNICODE8
            case 0x8e:  // BINBYTES8
            case 0x96:  // BYTEARRAY8 (protocol 5 arrays, in-band)
                if (need(u, 8)) return -1;
                u->at += 8;
                v = bytes_pv(u, op == 0x8d ? PV_STR : PV_BYTES, (size_t)le(u->buf + u->at - 8, 8));
                rc = v ? push(u, v) : -1;
                break;
            default: {
                char msg[96];
                u->at = op_at;
                snprintf(msg, sizeof(msg),
                         "pickle opcode 0x%02x, which a CIFAR batch does not use (refused)", op);
                return fail(u, msg);
            }
        }
        if (rc) return -1;
    }
}

static Pv *dict_get(const Pv *d, const char *key) {
    for (size_t i = 0; i + 1 < d->n; i += 2)
        if (is_str(d->items[i], key)) return d->items[i + 1];
    return NULL;
}

// An integer list or 1-D integer numpy array as int32 values; -1 when it is neither.
static int int_values(const Pv *v, int64_t *n, int32_t **out) {
    if (v->kind == PV_LIST) {
        *out = xmalloc(sizeof(int32_t) * (v->n + 1));
        for (size_t i = 0; i < v->n; i++) {
            if (v->items[i]->kind != PV_INT || v->items[i]->i < INT32_MIN ||
                v->items[i]->i > INT32_MAX) {
                free(*out);
                return -1;
            }
            (*out)[i] = (int32_t)v->items[i]->i;
        }
        *n = (int64_t)v->n;
        return 0;
    }
    if (v->kind != PV_ARRAY || v->ndim != 1 || v->dtype[0] == 'f') return -1;
    int size = v->dtype[1] - '0';
    if (v->len != (size_t)v->shape[0] * (size_t)size) return -1;
    *out = xmalloc(sizeof(int32_t) * (size_t)(v->shape[0] + 1));
    for (int64_t i = 0; i < v->shape[0]; i++) {
        uint64_t raw = le(v->b + (size_t)i * (size_t)size, size);
        int64_t x = v->dtype[0] == 'i' && size < 8 && (raw >> (8 * size - 1) & 1)
                        ? (int64_t)(raw | ~0ull << (8 * size))
                        : (int64_t)raw;
        (*out)[i] = x < INT32_MIN || x > INT32_MAX ? -1 : (int32_t)x;
    }
    *n = v->shape[0];
    return 0;
}

void pickle_batch_free(PickleBatch *b) {
    for (int i = 0; b->names && i < b->n_names; i++) free(b->names[i]);
    free(b->names), free(b->data), free(b->labels);
    memset(b, 0, sizeof(*b));
}

int pickle_read_cifar(const unsigned char *buf, size_t len, const char *path, const char *label_key,
                      const char *names_key, PickleBatch *out, char *err, size_t errlen) {
    memset(out, 0, sizeof(*out));
    Unpickler u = {.buf = buf, .len = len, .path = path, .err = err, .errlen = errlen};
    Pv *root = NULL;
    // Protocols 2+ open with PROTO (0x80); 0 and 1 open with a MARK or an empty container.
    int rc = len < 2 || !strchr("\x80(}]", buf[0] ? buf[0] : 'x')
                 ? fail(&u, "not a python pickle (a CIFAR batch is one)")
                 : run(&u, &root);
    if (!rc && root->kind != PV_DICT)
        rc = fail(&u, "the pickle holds no dict (a CIFAR batch is one)");
    if (!rc && names_key) {
        Pv *names = dict_get(root, names_key);
        if (!names || names->kind != PV_LIST) {
            snprintf(err, errlen, "%s: no list '%s' in the pickled dict", path, names_key);
            rc = -1;
        } else {
            out->names = xcalloc(names->n + 1, sizeof(char *));
            for (size_t i = 0; i < names->n && !rc; i++) {
                Pv *s = names->items[i];
                if (s->kind != PV_STR && s->kind != PV_BYTES) {
                    snprintf(err, errlen, "%s: '%s' holds a non-string", path, names_key);
                    rc = -1;
                    break;
                }
                out->names[i] = xcalloc(s->len + 1, 1);
                memcpy(out->names[i], s->b, s->len);
                out->n_names = (int)i + 1;
            }
        }
    }
    if (!rc && label_key) {
        Pv *data = dict_get(root, "data"), *labels = dict_get(root, label_key);
        if (!data || !labels) {
            snprintf(err, errlen,
                     "%s: the pickled dict has no '%s' (a CIFAR batch has data and %s)", path,
                     !data ? "data" : label_key, label_key);
            rc = -1;
        } else if (data->kind == PV_ARRAY && (data->dtype[0] != 'u' || data->dtype[1] != '1')) {
            snprintf(err, errlen, "%s: 'data' is a numpy array of %c%c, not uint8", path,
                     data->dtype[0], data->dtype[1]);
            rc = -1;
        } else if (data->kind != PV_ARRAY && data->kind != PV_BYTES) {
            snprintf(err, errlen, "%s: 'data' is neither a uint8 numpy array nor bytes", path);
            rc = -1;
        } else {
            size_t elems = 1;
            for (int i = 0; i < data->ndim; i++) elems *= (size_t)data->shape[i];
            if (data->kind == PV_ARRAY && elems != data->len) {
                snprintf(err, errlen, "%s: 'data' holds %zu bytes but its shape says %zu", path,
                         data->len, elems);
                rc = -1;
            } else if (data->len % 3072) {
                snprintf(err, errlen,
                         "%s: 'data' holds %zu bytes, not a whole number of 32x32x3 "
                         "images (3072 bytes each)",
                         path, data->len);
                rc = -1;
            } else if (int_values(labels, &out->n, &out->labels)) {
                snprintf(err, errlen, "%s: '%s' is not a list or 1-D array of integers", path,
                         label_key);
                rc = -1;
            } else if ((size_t)out->n * 3072 != data->len) {
                snprintf(err, errlen, "%s: %lld labels for %zu images", path, (long long)out->n,
                         data->len / 3072);
                rc = -1;
            } else {
                out->row = 3072;
                out->data = xmalloc(data->len + 1);
                memcpy(out->data, data->b, data->len);
            }
        }
    }
    for (size_t i = 0; i < u.n_arena; i++) free(u.arena[i]);
    free(u.arena), free(u.stack), free(u.marks), free(u.memo);
    if (rc) pickle_batch_free(out);
    return rc;
}
