// Sequence scoring: per-token log-probs of a completion given its prompt (prompt tokens masked), through
// llama.cpp's own inference path. Many sequences share one context and each llama_decode call.
#pragma once
#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "context.h"

namespace w2s {

struct score_item {
    std::vector<llama_token> tokens;  // prompt tokens followed by completion tokens
    int32_t n_prompt = 0;             // >= 1: the first completion token is predicted from the last prompt token
};

struct score_output {
    std::vector<float> logprobs;  // (tokens.size() - n_prompt) log p(token_i | tokens_<i), natural log
    double sum = 0.0;
};

struct score_request {
    std::vector<score_item> items;
    int32_t parallel = 16;   // sequences in flight
    int32_t n_batch = 512;   // tokens per llama_decode call
    int32_t n_threads = 1;
    std::vector<adapter_ref> adapters;
};

bool run_scorer(llama_model * model, const score_request & req, const std::atomic<bool> & cancel,
                const std::function<void(int32_t done, int32_t total)> & on_progress,
                std::vector<score_output> & out, std::string & err);

}  // namespace w2s
