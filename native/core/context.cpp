// Creating a llama_context for one job, with LoRA adapters and cancellation wired in.
#include "context.h"

#include "backend.h"

namespace w2s {

static bool abort_cb(void * data) {
    return static_cast<const std::atomic<bool> *>(data)->load(std::memory_order_relaxed);
}

context_ptr make_context(llama_model * model, const context_request & req, std::string & err) {
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = req.n_ctx;
    cp.n_batch = req.n_batch;
    cp.n_ubatch = req.n_batch;
    cp.n_seq_max = req.n_seq_max;
    cp.n_threads = req.n_threads;
    cp.n_threads_batch = req.n_threads;
    // Unified: sequences share one cache, and llama_memory_seq_cp only tags cells (the scorer's choice).
    // Per-sequence streams: attention per token is over its own sequence (the sampler's choice).
    cp.kv_unified = req.unified;
    cp.no_perf = true;
    if (req.precise) {
        cp.type_k = GGML_TYPE_F32;
        cp.type_v = GGML_TYPE_F32;
        cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    }
    if (req.cancel != nullptr) {
        cp.abort_callback = abort_cb;
        cp.abort_callback_data = const_cast<std::atomic<bool> *>(req.cancel);
    }
    clear_log_errors();
    llama_context * ctx = llama_init_from_model(model, cp);
    if (ctx == nullptr) {
        err = "llama_init_from_model failed (n_ctx " + std::to_string(req.n_ctx) + ", n_seq_max " +
              std::to_string(req.n_seq_max) + ")";
        const std::string log = take_log_errors();
        if (!log.empty()) err += ": " + log;
        return nullptr;
    }
    context_ptr out(ctx);
    if (!req.adapters.empty()) {
        std::vector<llama_adapter_lora *> ptrs;
        std::vector<float> scales;
        for (const auto & a : req.adapters) {
            ptrs.push_back(a.adapter);
            scales.push_back(a.scale);
        }
        if (llama_set_adapters_lora(ctx, ptrs.data(), ptrs.size(), scales.data()) != 0) {
            err = "llama_set_adapters_lora failed: " + take_log_errors();
            return nullptr;
        }
    }
    return out;
}

std::string decode_error(int32_t rc) {
    switch (rc) {
        case 1: return "llama_decode found no free KV cells (1): the context is too small for this batch";
        case 2: return "llama_decode was aborted (2)";
        case -1: return "llama_decode rejected the batch as invalid (-1)";
        default: return "llama_decode failed (" + std::to_string(rc) + ")";
    }
}

}  // namespace w2s
