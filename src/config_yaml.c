// The config's YAML text, both ways, through libyaml: the reader (nested mappings become
// dotted keys; a repeated key is refused) and the writer (the emitter, so every string
// round-trips). The keys and their parsing are config.c's.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "config.h"

// libyaml event stream -> dotted keys. Mappings nest (model: {d_model: 64} is model.d_model);
// a sequence value is joined with commas (model.mixer: [softmax, linear]).
// The keys a file has set and where, to refuse the second of two (a YAML mapping with a
// repeated key is an error the spec names, and "last one wins" would hide a typo).
typedef struct {
    char **key;
    size_t *line, n, cap;
} SeenKeys;

static int seen_add(SeenKeys *s, const char *key, size_t line, const char *path, char *err,
                    size_t errlen) {
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->key[i], key)) {
            snprintf(err, errlen, "%s:%zu: key '%s' is given twice (first at line %zu)", path, line,
                     key, s->line[i]);
            return -1;
        }
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->key = realloc(s->key, sizeof(char *) * s->cap);
        s->line = realloc(s->line, sizeof(size_t) * s->cap);
    }
    s->key[s->n] = malloc(strlen(key) + 1);
    strcpy(s->key[s->n], key);
    s->line[s->n++] = line;
    return 0;
}

// A key, or the value list of a sequence, kept in a buffer that grows (no length limit of
// its own: config_set then judges the value).
static void append(char **buf, size_t *cap, const char *sep, const char *text) {
    size_t have = *buf ? strlen(*buf) : 0, need = have + strlen(sep) + strlen(text) + 1;
    if (need > *cap) {
        *cap = need * 2;
        *buf = realloc(*buf, *cap);
        if (!have) (*buf)[0] = 0;
    }
    strcat(strcat(*buf, have ? sep : ""), text);
}

static int load_yaml(Config *c, yaml_parser_t *parser, const char *path, char *err, size_t errlen) {
    char prefix[8][128];  // key path of the open mappings
    int depth = 0, expect_key[8] = {0}, in_seq = 0, rc = 0, done = 0;
    char *seq_buf = NULL, seq_key[256] = "";
    size_t seq_cap = 0, seq_line = 0;
    SeenKeys seen = {0};
    while (!done && !rc) {
        yaml_event_t ev;
        if (!yaml_parser_parse(parser, &ev)) {
            snprintf(err, errlen, "%s:%zu:%zu: invalid YAML: %s", path,
                     parser->problem_mark.line + 1, parser->problem_mark.column + 1,
                     parser->problem ? parser->problem : "?");
            rc = -1;
            break;
        }
        size_t line = ev.start_mark.line + 1;
        char full[256];
        full[0] = 0;
        if (depth > 0) {
            for (int i = 1; i < depth; i++)
                snprintf(full + strlen(full), sizeof(full) - strlen(full), "%s.", prefix[i]);
            snprintf(full + strlen(full), sizeof(full) - strlen(full), "%s", prefix[depth]);
        }
        switch (ev.type) {
            case YAML_STREAM_END_EVENT:
                done = 1;
                break;
            case YAML_MAPPING_START_EVENT:
                if (in_seq) {
                    snprintf(err, errlen, "%s:%zu: key '%s' expects a list of names, not mappings",
                             path, line, seq_key);
                    rc = -1;
                } else if (depth >= 7) {
                    snprintf(err, errlen, "%s:%zu: mappings nested too deeply", path, line);
                    rc = -1;
                } else {
                    depth++;
                    expect_key[depth] = 1;
                    prefix[depth][0] = 0;
                }
                break;
            case YAML_MAPPING_END_EVENT:
                depth--;
                if (depth > 0) expect_key[depth] = 1;
                break;
            case YAML_SEQUENCE_START_EVENT:
                if (depth == 0 || expect_key[depth] || in_seq) {
                    snprintf(err, errlen, "%s:%zu: unexpected list", path, line);
                    rc = -1;
                } else {
                    in_seq = 1;
                    if (seq_buf) seq_buf[0] = 0;
                    append(&seq_buf, &seq_cap, "", "");
                    snprintf(seq_key, sizeof(seq_key), "%s", full);
                    seq_line = line;
                }
                break;
            case YAML_SEQUENCE_END_EVENT: {
                in_seq = 0;
                char where[300];
                snprintf(where, sizeof(where), "%s:%zu", path, seq_line);
                if (seen_add(&seen, seq_key, seq_line, path, err, errlen) ||
                    config_set(c, seq_key, seq_buf, where, err, errlen))
                    rc = -1;
                expect_key[depth] = 1;
                break;
            }
            case YAML_SCALAR_EVENT: {
                const char *v = (const char *)ev.data.scalar.value;
                if (depth == 0) {
                    if (*v) {  // a document that is a bare scalar
                        snprintf(err, errlen, "%s:%zu: expected a mapping of keys", path, line);
                        rc = -1;
                    }
                } else if (in_seq) {
                    append(&seq_buf, &seq_cap, ",", v);
                } else if (expect_key[depth]) {
                    if (strlen(v) >= sizeof(prefix[depth])) {
                        snprintf(err, errlen, "%s:%zu: key '%.40s...' is too long to be a key",
                                 path, line, v);
                        rc = -1;
                    }
                    snprintf(prefix[depth], sizeof(prefix[depth]), "%s", v);
                    expect_key[depth] = 0;
                } else {
                    char where[300];
                    snprintf(where, sizeof(where), "%s:%zu", path, line);
                    if (seen_add(&seen, full, line, path, err, errlen) ||
                        config_set(c, full, v, where, err, errlen))
                        rc = -1;
                    expect_key[depth] = 1;
                }
                break;
            }
            default:
                break;
        }
        yaml_event_delete(&ev);
    }
    for (size_t i = 0; i < seen.n; i++) free(seen.key[i]);
    free(seen.key), free(seen.line), free(seq_buf);
    return rc;
}

int config_load_file(Config *c, const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot read config file '%s': %s", path, strerror(errno));
        return -1;
    }
    yaml_parser_t parser;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    int rc = load_yaml(c, &parser, path, err, errlen);
    yaml_parser_delete(&parser);
    fclose(f);
    return rc;
}

int config_load_string(Config *c, const char *yaml, const char *name, char *err, size_t errlen) {
    yaml_parser_t parser;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, strlen(yaml));
    int rc = load_yaml(c, &parser, name, err, errlen);
    yaml_parser_delete(&parser);
    return rc;
}

// Floats in a form every YAML 1.1 and 1.2 loader reads as a float: a '.' in the mantissa
// ("1e-06" alone is a string to PyYAML), round-tripping exactly (%.17g).
static void format_float(double d, char *out, size_t n) {
    char buf[40];
    snprintf(buf, sizeof(buf), "%.17g", d);
    char *e = strchr(buf, 'e');
    if (strchr(buf, '.'))
        snprintf(out, n, "%s", buf);
    else if (e)
        snprintf(out, n, "%.*s.0%s", (int)(e - buf), buf, e);
    else
        snprintf(out, n, "%s.0", buf);
}

static int emit_scalar(yaml_emitter_t *em, const char *value, int quoted) {
    yaml_event_t ev;
    yaml_scalar_event_initialize(
        &ev, NULL, NULL, (yaml_char_t *)value, (int)strlen(value), 1, 1,
        quoted ? YAML_DOUBLE_QUOTED_SCALAR_STYLE : YAML_PLAIN_SCALAR_STYLE);
    return yaml_emitter_emit(em, &ev);
}

// One key's value: numbers and booleans plain; names (enums, options that are not numbers)
// and strings double-quoted, so "on" or "no" stay strings and any character round-trips;
// the mixer list as a flow sequence.
static int emit_value(yaml_emitter_t *em, const Config *c, const ConfigKey *k) {
    const char *field = (const char *)c + k->offset;
    char buf[64];
    switch (k->type) {
        case KEY_INT:
            snprintf(buf, sizeof(buf), "%lld", (long long)*(const int64_t *)field);
            break;
        case KEY_FLOAT:
            format_float(*(const double *)field, buf, sizeof(buf));
            break;
        case KEY_BOOL:
            snprintf(buf, sizeof(buf), "%s", *(const int *)field ? "true" : "false");
            break;
        case KEY_ENUM:
            return emit_scalar(em, config_enum_name(k->name, *(const int *)field), 1);
        case KEY_STR:
            return emit_scalar(em, field, 1);
        case KEY_OPTION:
            if (k->opt->type == OPT_FLOAT) {
                format_float(strtod(field, NULL), buf, sizeof(buf));
                break;
            }
            return emit_scalar(em, field, k->opt->type == OPT_ENUM);
        case KEY_MIXERS: {
            yaml_event_t ev;
            yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_FLOW_SEQUENCE_STYLE);
            if (!yaml_emitter_emit(em, &ev)) return 0;
            char *list = malloc(strlen(field) + 1);
            strcpy(list, field);
            int ok = 1;
            for (char *save = NULL, *t = strtok_r(list, ", ", &save); t && ok;
                 t = strtok_r(NULL, ", ", &save))
                ok = emit_scalar(em, t, 0);
            free(list);
            yaml_sequence_end_event_initialize(&ev);
            return ok && yaml_emitter_emit(em, &ev);
        }
    }
    return emit_scalar(em, buf, 0);
}

static int write_file_handler(void *f, unsigned char *buffer, size_t size) {
    return fwrite(buffer, 1, size, f) == size;
}

// libyaml's emitter writes the text, so every string round-trips (quotes, backslashes, line
// breaks). Keys are grouped by their section (the part before the dot) in table order, so each
// section is one mapping even where the table interleaves them.
void config_write_yaml(const Config *c, FILE *f) {
    int n_keys;
    const ConfigKey *keys = config_keys(&n_keys);
    yaml_emitter_t em;
    yaml_event_t ev;
    yaml_emitter_initialize(&em);
    yaml_emitter_set_output(&em, write_file_handler, f);
    yaml_emitter_set_unicode(&em, 1);
    yaml_emitter_set_width(&em, -1);
    int ok = 1;
    yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
    ok = ok && yaml_emitter_emit(&em, &ev);
    yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1);
    ok = ok && yaml_emitter_emit(&em, &ev);
    yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE);
    ok = ok && yaml_emitter_emit(&em, &ev);
    for (int i = 0; i < n_keys && ok; i++) {
        const char *dot = strchr(keys[i].name, '.');
        size_t sl = dot ? (size_t)(dot - keys[i].name) : 0;
        int first = 1;  // first key of its section in the table?
        for (int j = 0; j < i && first; j++)
            first = !(dot && !strncmp(keys[j].name, keys[i].name, sl + 1));
        if (!first) continue;
        if (!dot) {
            ok = emit_scalar(&em, keys[i].name, 0) && emit_value(&em, c, &keys[i]);
            continue;
        }
        char section[64];
        snprintf(section, sizeof(section), "%.*s", (int)sl, keys[i].name);
        ok = emit_scalar(&em, section, 0);
        yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE);
        ok = ok && yaml_emitter_emit(&em, &ev);
        for (int j = i; j < n_keys && ok; j++)
            if (!strncmp(keys[j].name, keys[i].name, sl + 1))
                ok = emit_scalar(&em, keys[j].name + sl + 1, 0) && emit_value(&em, c, &keys[j]);
        yaml_mapping_end_event_initialize(&ev);
        ok = ok && yaml_emitter_emit(&em, &ev);
    }
    yaml_mapping_end_event_initialize(&ev);
    ok = ok && yaml_emitter_emit(&em, &ev);
    yaml_document_end_event_initialize(&ev, 1);
    ok = ok && yaml_emitter_emit(&em, &ev);
    yaml_stream_end_event_initialize(&ev);
    ok = ok && yaml_emitter_emit(&em, &ev);
    yaml_emitter_flush(&em);
    // A failed write (full disk) shows in ferror(f), which every caller checks.
    if (!ok)
        fprintf(stderr, "madtrain: warning: writing the config: %s\n",
                em.problem ? em.problem : "emitter error");
    yaml_emitter_delete(&em);
}

int config_yaml_writer(FILE *f, void *ctx) {
    config_write_yaml(ctx, f);
    return ferror(f) ? -1 : 0;
}
