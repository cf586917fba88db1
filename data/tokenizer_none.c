// data/tokenizer.h without SentencePiece (CMake did not find it): prep refuses the subword
// tokenizers with a line saying how to get them; nothing else calls these.
#include <stdio.h>

#include "tokenizer.h"

int subword_available(void) {
    return 0;
}

int subword_train(const char *text_path, const char *model_path, const char *type, int vocab_size,
                  int threads, char *err, size_t errlen) {
    (void)text_path, (void)model_path, (void)type, (void)vocab_size, (void)threads;
    snprintf(err, errlen, "built without SentencePiece");
    return -1;
}

SubwordTokenizer *subword_open(const char *model_path, char *err, size_t errlen) {
    snprintf(err, errlen, "%s: built without SentencePiece", model_path);
    return NULL;
}

int subword_size(const SubwordTokenizer *t) {
    (void)t;
    return 0;
}

int subword_eos(const SubwordTokenizer *t) {
    (void)t;
    return 0;
}

const char *subword_piece(const SubwordTokenizer *t, int id) {
    (void)t, (void)id;
    return "";
}

int64_t subword_encode(SubwordTokenizer *t, const char *text, size_t n, int *out, int64_t cap,
                       char *err, size_t errlen) {
    (void)t, (void)text, (void)n, (void)out, (void)cap;
    snprintf(err, errlen, "built without SentencePiece");
    return -1;
}

void subword_close(SubwordTokenizer *t) {
    (void)t;
}
