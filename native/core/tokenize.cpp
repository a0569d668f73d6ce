// Tokenization helpers: exception-safe llama_tokenize and the prompt/completion boundary rule (tokenize.h).
#include "tokenize.h"

#include <algorithm>
#include <cstdio>
#include <exception>

namespace w2s {

namespace {

// Length of the UTF-8 sequence that starts with byte `c` (1 for stray continuation bytes).
size_t utf8_len(unsigned char c) {
    return c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 1;
}

// Names the first character of `text` that llama.cpp cannot tokenize on its own: "U+1F600 '😀' at byte 12".
std::string first_unencodable(const llama_vocab * vocab, const std::string & text, bool parse_special) {
    std::vector<llama_token> scratch(64);
    for (size_t i = 0; i < text.size();) {
        const size_t n = std::min(utf8_len(static_cast<unsigned char>(text[i])), text.size() - i);
        const std::string ch = text.substr(i, n);
        try {
            llama_tokenize(vocab, ch.data(), static_cast<int32_t>(n), scratch.data(), static_cast<int32_t>(scratch.size()), false, parse_special);
        } catch (const std::exception &) {
            uint32_t cp = static_cast<unsigned char>(ch[0]) & (n == 1 ? 0x7f : n == 2 ? 0x1f : n == 3 ? 0x0f : 0x07);
            for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(ch[k]) & 0x3f);
            char code[16];
            std::snprintf(code, sizeof code, "U+%04X", cp);
            return std::string(code) + " '" + ch + "' at byte " + std::to_string(i);
        }
        i += n;
    }
    return "this text";
}

}  // namespace

bool tokenize_text(const llama_vocab * vocab, const std::string & text, bool add_special, bool parse_special,
                   std::vector<llama_token> & out, std::string * err) {
    try {
        // A token never spans less than one byte, so text.size() + specials bounds the count.
        out.resize(text.size() + 8);
        int32_t n = llama_tokenize(vocab, text.data(), static_cast<int32_t>(text.size()), out.data(),
                                   static_cast<int32_t>(out.size()), add_special, parse_special);
        if (n < 0) {
            out.resize(static_cast<size_t>(-n));
            n = llama_tokenize(vocab, text.data(), static_cast<int32_t>(text.size()), out.data(),
                               static_cast<int32_t>(out.size()), add_special, parse_special);
        }
        if (n < 0) {
            if (err) *err = "llama_tokenize failed";
            return false;
        }
        out.resize(static_cast<size_t>(n));
        return true;
    } catch (const std::exception & e) {
        // llama.cpp's SPM tokenizer looks up byte tokens with map::at: a vocabulary without them throws.
        if (err) *err = "the model's vocabulary cannot encode " + first_unencodable(vocab, text, parse_special) +
                        " (llama_tokenize: " + e.what() + "); remove or replace it, or use a model whose vocabulary has byte tokens";
        return false;
    }
}

bool tokenize_pair(const llama_vocab * vocab, const std::string & prompt, const std::string & completion,
                   bool parse_special, std::vector<llama_token> & tokens, int32_t & n_prompt, std::string & err) {
    std::vector<llama_token> p;
    if (!tokenize_text(vocab, prompt, true, parse_special, p, &err)) return false;
    if (completion.empty()) {
        tokens = std::move(p);
        n_prompt = static_cast<int32_t>(tokens.size());
        return true;
    }
    if (!tokenize_text(vocab, prompt + completion, true, parse_special, tokens, &err)) return false;
    const size_t limit = std::min(p.size(), tokens.size());
    size_t k = 0;
    while (k < limit && p[k] == tokens[k]) ++k;
    n_prompt = static_cast<int32_t>(k);
    return true;
}

}  // namespace w2s
