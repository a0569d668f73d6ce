// Creating a llama_context for one job, with LoRA adapters and cancellation wired in.
#include "context.h"

#include "backend.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"

namespace w2s {

static bool abort_cb(void * data) {
    return static_cast<const std::atomic<bool> *>(data)->load(std::memory_order_relaxed);
}

// A persistent CPU thread pool for one context (nullptr with one thread, or when the CPU plugin does not
// export one). Without it ggml makes and joins a disposable pool for every graph: a llama_decode of 8
// tokens (~9 ms here) started a fresh worker thread each time, and the worker's core idled while we
// sampled. The pool's workers poll for the next graph (ggml's default level, 50) before they sleep, so
// they are running when it arrives. Measured on the 2-vCPU EPYC, 2 threads, interleaved pairs: p8 −7% to
// +20% (ten pairs, median +6%), p16 +4–13%, p64 +1–7% (three pairs each).
static ggml_threadpool * make_pool(int32_t n_threads, void (**free_out)(ggml_threadpool *)) {
    if (n_threads <= 1) return nullptr;
    ggml_backend_dev_t dev = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    ggml_backend_reg_t reg = dev ? ggml_backend_dev_backend_reg(dev) : nullptr;
    if (reg == nullptr) return nullptr;
    auto * fn_new = reinterpret_cast<decltype(ggml_threadpool_new) *>(ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_new"));
    auto * fn_free = reinterpret_cast<decltype(ggml_threadpool_free) *>(ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_free"));
    if (fn_new == nullptr || fn_free == nullptr) return nullptr;
    ggml_threadpool_params tpp;
    ggml_threadpool_params_init(&tpp, n_threads);
    ggml_threadpool * pool = fn_new(&tpp);
    if (pool != nullptr) *free_out = fn_free;
    return pool;
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
    if (!req.flash_attn) cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
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
    context_deleter del;
    del.pool = make_pool(req.n_threads, &del.free_pool);
    context_ptr out(ctx, del);
    // The same pool for single-token and prompt batches: they run one after another, never at once.
    if (del.pool != nullptr) llama_attach_threadpool(ctx, del.pool, del.pool);
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
