// Tokenization shared by every job: text to tokens without letting a C++ exception out of llama.cpp, and the
// one rule for a (prompt, completion) boundary that scoring, SFT, DPO and ORPO all use.
#pragma once

#include <string>
#include <vector>

#include "llama.h"

namespace w2s {

// Tokenizes `text` (BOS/EOS as the vocabulary adds them when add_special). Returns false with `err` set when
// llama.cpp cannot encode it (e.g. a SentencePiece vocabulary without byte tokens meets an unknown character:
// llama.cpp throws std::out_of_range there); never throws.
bool tokenize_text(const llama_vocab * vocab, const std::string & text, bool add_special, bool parse_special,
                   std::vector<llama_token> & out, std::string * err = nullptr);

// The boundary rule. P = tokens(prompt, BOS), J = tokens(prompt + completion, BOS): the tokens the model sees
// for the whole text. The context is the longest common prefix of P and J (all of P unless the prompt's last
// tokens merge with the completion's first characters, e.g. a prompt ending in a space under SentencePiece);
// the completion is the rest of J, so a merged boundary token is scored and trained as part of the completion.
// This never adds a token the model would not produce (tokenizing the completion alone adds SentencePiece's
// dummy "▁" prefix). `tokens` = J, `n_prompt` = the context length. An empty completion gives J == P.
bool tokenize_pair(const llama_vocab * vocab, const std::string & prompt, const std::string & completion,
                   bool parse_special, std::vector<llama_token> & tokens, int32_t & n_prompt, std::string & err);

}  // namespace w2s
