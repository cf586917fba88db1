// SentencePiece behind data/tokenizer.h (see there for why).
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstdio>
#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer.h"

struct SubwordTokenizer {
    sentencepiece::SentencePieceProcessor sp;
    std::vector<int> ids;
};

static void set_err(char *err, size_t errlen, const std::string &what) {
    std::snprintf(err, errlen, "%s", what.c_str());
}

extern "C" int subword_available(void) {
    return 1;
}

extern "C" int subword_train(const char *text_path, const char *model_path, const char *type,
                             int vocab_size, int threads, char *err, size_t errlen) {
    std::string prefix = std::string(model_path) + ".tmp";
    // Training samples and shuffles sentences with this seed: the same corpus gives the same
    // model, run after run.
    sentencepiece::SetRandomGeneratorSeed(1234);
    std::unordered_map<std::string, std::string> args = {
        {"input", text_path},
        {"model_prefix", prefix},
        {"model_type", type},
        {"vocab_size", std::to_string(vocab_size)},
        // every character of the corpus gets a piece (byte fallback is for open vocabularies)
        {"character_coverage", "1.0"},
        {"unk_id", "0"},
        {"eos_id", "1"},
        {"bos_id", "-1"},
        {"pad_id", "-1"},
        {"unk_piece", "<spm_unk>"},
        {"eos_piece", "<eos>"},
        {"user_defined_symbols", "<unk>"},
        {"input_sentence_size", "10000000"},
        {"shuffle_input_sentence", "true"},
        {"num_threads", std::to_string(threads > 0 ? threads : 1)},
        {"minloglevel", "2"},
    };
    auto st = sentencepiece::SentencePieceTrainer::Train(args);
    if (!st.ok()) {
        set_err(err, errlen,
                std::string("SentencePiece training on ") + text_path + ": " + st.ToString());
        std::remove((prefix + ".model").c_str());
        std::remove((prefix + ".vocab").c_str());
        return -1;
    }
    std::remove((prefix + ".vocab").c_str());  // prep writes vocab.txt itself, one piece a line
    if (std::rename((prefix + ".model").c_str(), model_path)) {
        set_err(err, errlen, std::string("cannot write ") + model_path);
        std::remove((prefix + ".model").c_str());
        return -1;
    }
    return 0;
}

extern "C" SubwordTokenizer *subword_open(const char *model_path, char *err, size_t errlen) {
    auto *t = new SubwordTokenizer;
    auto st = t->sp.Load(model_path);
    if (!st.ok()) {
        set_err(err, errlen,
                std::string(model_path) + ": not a SentencePiece model: " + st.ToString());
        delete t;
        return nullptr;
    }
    return t;
}

extern "C" int subword_size(const SubwordTokenizer *t) {
    return t->sp.GetPieceSize();
}
extern "C" int subword_eos(const SubwordTokenizer *t) {
    return t->sp.eos_id();
}
extern "C" const char *subword_piece(const SubwordTokenizer *t, int id) {
    return t->sp.IdToPiece(id).c_str();
}

extern "C" int64_t subword_encode(SubwordTokenizer *t, const char *text, size_t n, int *out,
                                  int64_t cap, char *err, size_t errlen) {
    auto st = t->sp.Encode(std::string(text, n), &t->ids);
    if (!st.ok()) {
        set_err(err, errlen, "SentencePiece: " + st.ToString());
        return -1;
    }
    if ((int64_t)t->ids.size() > cap) {
        set_err(err, errlen, "a line encodes to more ids than prep buffers");
        return -1;
    }
    for (size_t i = 0; i < t->ids.size(); i++) out[i] = t->ids[i];
    return (int64_t)t->ids.size();
}

extern "C" void subword_close(SubwordTokenizer *t) {
    delete t;
}
