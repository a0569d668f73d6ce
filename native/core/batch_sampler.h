// The batched sampling loop (decode -> sample -> stop-check -> refill) over one llama_context holding many
// sequences, each in its own KV stream: continuous batching, a prompt decoded once for its n samples, and
// attention per token over its own sequence only.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "context.h"
#include "sampling.h"

namespace w2s {

enum class finish_reason { stop, length, eos };

struct batch_sample_request {
    std::vector<std::vector<llama_token>> prompts;  // tokenized prompts (BOS included when the model adds it)
    int32_t n = 1;                                  // samples per prompt
    sampling_params sampling;
    uint64_t seed = 0;
    int32_t max_tokens = 256;                       // new tokens per sample
    std::vector<std::string> stops;                 // generation ends before the first occurrence of any
    int32_t parallel = 16;                          // sequences decoded together
    int32_t n_ctx_seq = 0;                          // positions one sequence may reach (prompt + generated)
    uint32_t n_kv_cells = 0;                        // KV cells in total; 0 = derived from the work
    int32_t n_batch = 512;
    int32_t n_threads = 1;
    std::vector<adapter_ref> adapters;
    bool high_precision = false;                    // F32 KV cache, no flash attention (see context_request)
    bool want_token_ids = false;                    // keep each sample's token ids
    bool want_logprobs = false;                     // keep log p(token) of each sampled token (see sample_output)
    bool share_prefix = true;                       // decode the prompts' common prefix once (batch_sampler.cpp)
    bool flash_attn = true;                         // false: plain attention (see context_request)
};

struct sample_output {
    int32_t prompt_index = 0;
    int32_t sample_index = 0;
    std::string text;      // UTF-8 bytes, stop string and EOS excluded
    int32_t n_tokens = 0;  // generated tokens (EOS not counted)
    finish_reason reason = finish_reason::length;
    // With want_token_ids / want_logprobs: the tokens whose text starts inside `text` (a stop string's tokens
    // are dropped; a token that straddles the stop's start is kept), and for each, log p under the model's
    // raw distribution (softmax of the logits at temperature 1, before top-k/top-p), in nats.
    std::vector<llama_token> token_ids;
    std::vector<float> logprobs;
};

struct sample_progress {
    int64_t tokens = 0;    // generated so far
    int64_t prompt_tokens = 0;  // prompt tokens decoded so far (a shared prefix counts once)
    int32_t finished = 0;  // samples finished so far
    int32_t total = 0;     // samples requested
};

// Runs the whole request; results are ordered by (prompt_index, sample_index).
// Returns false with `err` set on failure; `cancel` (polled every step and inside llama_decode) stops it.
bool run_batch_sampler(llama_model * model, const batch_sample_request & req, const std::atomic<bool> & cancel,
                       const std::function<void(const sample_progress &)> & on_progress,
                       std::vector<sample_output> & out, std::string & err);

// Sizing of a request (exposed for tests and memory estimates): sequences decoded together, holder
// streams for shared prompts (n > 1), the common prefix decoded once (its own stream), KV cells per stream
// and in total.
int32_t sampler_parallel(const batch_sample_request & req);
int32_t sampler_holders(const batch_sample_request & req);
int32_t sampler_shared_prefix(const batch_sample_request & req);  // tokens decoded once for every prompt; 0 = none
uint32_t sampler_cells_per_stream(const batch_sample_request & req);
uint32_t default_kv_cells(const batch_sample_request & req);

}  // namespace w2s
