// The YAML config loader and the command-line overrides. Input: YAML text, then (after a NUL
// byte or a line `---overrides---`) key=value lines applied as command-line overrides. A
// config that loads is validated, written back as YAML and loaded again: the second load must
// succeed and write exactly the same text, and validate the same way (the resolved config a
// run writes, and a checkpoint stores, is what a resume reads).
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/config.h"

static char *yaml_text(const Config *c, size_t *len) {
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    if (!f) abort();
    config_write_yaml(c, f);
    fclose(f);
    return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = 0;
    char *overrides = NULL;
    size_t yaml_len = strlen(text);
    if (yaml_len < size) overrides = text + yaml_len + 1;
    char *marker = strstr(text, "---overrides---\n");
    if (marker && (marker == text || marker[-1] == '\n')) {
        *marker = 0;
        overrides = marker + strlen("---overrides---\n");
    }

    static Config c, back;
    char err[1024], err2[1024];
    config_defaults(&c);
    if (config_load_string(&c, text, "fuzz.yaml", err, sizeof(err))) goto done;
    for (char *save = NULL, *line = overrides ? strtok_r(overrides, "\n", &save) : NULL; line;
         line = strtok_r(NULL, "\n", &save))
        config_override(&c, line, err, sizeof(err));  // a refused override leaves c unchanged
    int valid = config_validate(&c, 1, err, sizeof(err));

    size_t len1 = 0, len2 = 0;
    char *yaml1 = yaml_text(&c, &len1);
    config_defaults(&back);
    if (config_load_string(&back, yaml1, "written.yaml", err2, sizeof(err2))) {
        fprintf(stderr, "fuzz_config: the written config does not load: %s\n--- written:\n%s", err2,
                yaml1);
        abort();
    }
    char *yaml2 = yaml_text(&back, &len2);
    if (len1 != len2 || memcmp(yaml1, yaml2, len1)) {
        fprintf(stderr,
                "fuzz_config: written -> loaded -> written differs\n--- first:\n%s"
                "--- second:\n%s",
                yaml1, yaml2);
        abort();
    }
    int valid2 = config_validate(&back, 1, err2, sizeof(err2));
    if (valid != valid2 || (valid && strcmp(err, err2))) {
        fprintf(stderr, "fuzz_config: validation differs after the round trip: '%s' vs '%s'\n",
                valid ? err : "ok", valid2 ? err2 : "ok");
        abort();
    }
    free(yaml1);
    free(yaml2);
done:
    free(text);
    return 0;
}
