// Subword tokenizers for `madtrain prep wikitext --tokenizer bpe|unigram`: SentencePiece
// (Kudo & Richardson 2018), the library behind the tokenizers of T5, Llama and many others,
// trained offline on the training split and saved beside the shards (tokenizer.model), so a
// corpus becomes shards with a ~32K vocabulary and no download happens at run time.
// A C interface over the C++ library (data/tokenizer_spm.cc), built when CMake finds
// SentencePiece (Debian: libsentencepiece-dev); without it subword_available() is 0 and prep
// says how to get it.
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct SubwordTokenizer SubwordTokenizer;

int subword_available(void);
// Trains a `type` (bpe | unigram) model of vocab_size pieces on the text file and writes it to
// model_path (atomically: a temporary name, then a rename). <unk> in the text (WikiText's
// marker) is kept as one piece; the model's own ids: 0 unknown, 1 end of line, no bos or pad.
// 0, or -1 with one line in err.
int subword_train(const char *text_path, const char *model_path, const char *type, int vocab_size,
                  int threads, char *err, size_t errlen);
SubwordTokenizer *subword_open(const char *model_path, char *err, size_t errlen);
int subword_size(const SubwordTokenizer *t);  // pieces (the vocabulary)
int subword_eos(const SubwordTokenizer *t);   // the end-of-line id
const char *subword_piece(const SubwordTokenizer *t, int id);
// Appends the ids of text[0, n) to out (at most cap); returns how many, or -1 (with err) when
// the text does not encode or the ids do not fit.
int64_t subword_encode(SubwordTokenizer *t, const char *text, size_t n, int *out, int64_t cap,
                       char *err, size_t errlen);
void subword_close(SubwordTokenizer *t);

#ifdef __cplusplus
}
#endif
