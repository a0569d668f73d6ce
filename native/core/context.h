// Creating a llama_context for one job (sampling or scoring) with adapters applied, and RAII helpers.
// One job owns its context for its whole run: no context is shared between concurrent jobs.
#pragma once
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "llama.h"

namespace w2s {

struct adapter_ref {
    llama_adapter_lora * adapter = nullptr;
    float scale = 1.0f;
};

struct context_request {
    uint32_t n_ctx = 0;      // KV cells in total (split evenly between the streams when !unified)
    uint32_t n_batch = 512;  // tokens per llama_decode call
    uint32_t n_seq_max = 1;  // distinct sequence ids used by the job
    int32_t n_threads = 1;
    std::vector<adapter_ref> adapters;
    const std::atomic<bool> * cancel = nullptr;  // checked by llama.cpp between graph nodes (CPU)
    // Exact mode for scoring: F32 KV cache and plain attention (no flash attention), so log-probs match
    // the training graph (which has the same precision) instead of carrying F16 KV rounding (~1e-4).
    bool precise = false;
    // One KV cache shared by all sequences (each token attends over every cell, masked), or one stream per
    // sequence id (each token attends over its own sequence's cells only; cross-stream copies move data).
    bool unified = true;
    // false: plain attention (KQ matmul, masked softmax, V·KQ) on the F16 KV cache; true: llama.cpp's choice
    // (flash attention where the device runs it). lib/model/attention.ts says when plain is faster.
    bool flash_attn = true;
};

// Frees the context, then the CPU thread pool it computed on (when it had one).
struct context_deleter {
    struct ggml_threadpool * pool = nullptr;
    void (*free_pool)(struct ggml_threadpool *) = nullptr;
    void operator()(llama_context * c) const {
        llama_free(c);
        if (pool != nullptr && free_pool != nullptr) free_pool(pool);
    }
};
using context_ptr = std::unique_ptr<llama_context, context_deleter>;

// Returns nullptr with `err` set (naming the llama call that failed) on failure.
context_ptr make_context(llama_model * model, const context_request & req, std::string & err);

// Thin owner of a llama_batch sized for `n_tokens` entries of one sequence id each.
class batch_buffer {
public:
    explicit batch_buffer(int32_t n_tokens) : b_(llama_batch_init(n_tokens, 0, 1)), cap_(n_tokens) {}
    ~batch_buffer() { llama_batch_free(b_); }
    batch_buffer(const batch_buffer &) = delete;
    batch_buffer & operator=(const batch_buffer &) = delete;
    void clear() { b_.n_tokens = 0; }
    int32_t size() const { return b_.n_tokens; }
    int32_t capacity() const { return cap_; }
    // Appends one token; returns its index in the batch.
    int32_t add(llama_token t, llama_pos pos, llama_seq_id seq, bool want_logits) {
        const int32_t i = b_.n_tokens++;
        b_.token[i] = t;
        b_.pos[i] = pos;
        b_.n_seq_id[i] = 1;
        b_.seq_id[i][0] = seq;
        b_.logits[i] = want_logits ? 1 : 0;
        return i;
    }
    const llama_batch & get() const { return b_; }
private:
    llama_batch b_;
    int32_t cap_;
};

// Maps llama_decode's return code to a message.
std::string decode_error(int32_t rc);

}  // namespace w2s
