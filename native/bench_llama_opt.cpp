// benchLlamaOpt: the peer of `w2s bench train` — llama.cpp's own trainer (llama_opt_init + llama_opt_epoch,
// full fine-tune, AdamW) on a token stream, timed over the epoch only. Mirrors examples/training/finetune.cpp
// without libllama-common (our own dataset builder). Bad input rejects the promise; it never reaches a
// GGML_ASSERT (which would abort Node).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "addon.h"
#include "backend.h"
#include "ggml-opt.h"
#include "gguf.h"

namespace w2s {
namespace {

struct opt_bench_job {
    std::string path;
    std::vector<llama_token> tokens;
    std::string budget_adapter;  // see "node budget" below
    int64_t n_ctx = 0, n_batch = 0, n_ubatch = 0, steps = 0;
    int32_t threads = 1;
    float lr = 1e-4f;
    // results
    double seconds = 0.0, loss = 0.0;
    int64_t n_tokens = 0;
    std::vector<double> step_seconds;  // per AdamW step, so a noisy machine can be seen and discounted
};

// llama_opt_epoch's callback has no user data: one benchmark at a time records ubatch end times here.
std::mutex g_marks_mu;
std::vector<int64_t> g_marks;  // µs
void mark_ubatch(bool, ggml_opt_context_t, ggml_opt_dataset_t, ggml_opt_result_t, int64_t, int64_t, int64_t) {
    g_marks.push_back(ggml_time_us());
}

// Tensors in a GGUF file (llama.cpp's model.n_tensors() for a model; 2 per adapted matrix for an adapter); -1 on error.
int64_t gguf_tensor_count(const std::string & path) {
    gguf_context * g = gguf_init_from_file(path.c_str(), {true, nullptr});
    if (!g) return -1;
    const int64_t n = gguf_get_n_tensors(g);
    gguf_free(g);
    return n;
}

ggml_opt_optimizer_params constant_lr(void * ud) {
    ggml_opt_optimizer_params p = ggml_opt_get_default_optimizer_params(nullptr);
    p.adamw.alpha = *static_cast<const float *>(ud);
    p.adamw.wd = 0.0f;  // same as the LoRA run (weightDecay 0)
    return p;
}

// Returns an error message, or "" on success. All llama.cpp asserts on this path are checked first.
std::string run_opt_bench(opt_bench_job & j) {
    if (ggml_backend_reg_by_name("CPU") == nullptr) return "the ggml backends are not loaded: call init(libDir) first";
    llama_model_params mp = llama_model_default_params();
    mp.load_mode = LLAMA_LOAD_MODE_NONE;  // the optimizer writes the weights in place: no read-only mmap
    mp.use_extra_bufts = false;           // repacked weights have no OUT_PROD (native-notes.md)
    mp.progress_callback = [](float, void *) { return true; };
    clear_log_errors();
    std::unique_ptr<llama_model, void (*)(llama_model *)> model(llama_model_load_from_file(j.path.c_str(), mp), llama_model_free);
    if (!model) return "llama_model_load_from_file failed for " + j.path + ": " + take_log_errors();

    // Full fine-tuning updates every weight with AdamW: only F32 weights (general.file_type 0) can take it.
    char ftype[32] = {0};
    if (llama_model_meta_val_str(model.get(), "general.file_type", ftype, sizeof(ftype)) < 0 || std::strcmp(ftype, "0") != 0) {
        return std::string("llama_opt full fine-tuning needs an all-F32 model (general.file_type 0), got '") + ftype + "'";
    }
    const int32_t n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model.get()));
    for (size_t i = 0; i < j.tokens.size(); ++i) {
        if (j.tokens[i] < 0 || j.tokens[i] >= n_vocab) return "token id out of range at index " + std::to_string(i);
    }

    // Node budget. llama.cpp sizes every graph for inference: max(1024, 8·n_tensors) nodes, + 6 per adapted
    // matrix of each LoRA adapter loaded on the model. llama_opt_epoch's backward graph needs more for llama
    // models of more than ~8 layers and overflows with a GGML_ASSERT (abort). Measured on 10 layers: forward
    // 355 nodes, training 1025..1084; we require 120·n_layer + 100 (conservative) and make up the difference
    // by loading `budget_adapter` (a LoRA of this model) as often as needed, never attaching it to the context:
    // the graphs computed are unchanged.
    char arch[64] = {0};
    llama_model_meta_val_str(model.get(), "general.architecture", arch, sizeof(arch));
    if (std::strcmp(arch, "llama") != 0) return std::string("only llama-architecture models are supported (node budget calibrated on llama), got '") + arch + "'";
    const int64_t need = 120 * static_cast<int64_t>(llama_model_n_layer(model.get())) + 100;
    int64_t have = std::max<int64_t>(1024, 8 * gguf_tensor_count(j.path));
    std::vector<std::unique_ptr<llama_adapter_lora, void (*)(llama_adapter_lora *)>> budget;
    if (have < need) {
        const int64_t per = j.budget_adapter.empty() ? 0 : 6 * (gguf_tensor_count(j.budget_adapter) / 2);
        if (per <= 0) {
            return "llama.cpp's graph budget (" + std::to_string(have) + " nodes) is too small for training this model (needs ~" +
                   std::to_string(need) + "); pass budgetAdapter: a LoRA adapter GGUF of this model";
        }
        for (; have < need; have += per) {
            budget.emplace_back(llama_adapter_lora_init(model.get(), j.budget_adapter.c_str()), llama_adapter_lora_free);
            if (!budget.back()) return "llama_adapter_lora_init failed for " + j.budget_adapter + ": " + take_log_errors();
        }
    }

    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = static_cast<uint32_t>(j.n_ctx);
    cp.n_batch = static_cast<uint32_t>(j.n_batch);
    cp.n_ubatch = static_cast<uint32_t>(j.n_ubatch);
    cp.n_threads = cp.n_threads_batch = j.threads;
    cp.type_k = cp.type_v = GGML_TYPE_F32;  // OUT_PROD has no F16 source (finetune.cpp forces this too)
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;  // FLASH_ATTN_EXT has no backward pass
    std::unique_ptr<llama_context, void (*)(llama_context *)> ctx(llama_init_from_model(model.get(), cp), llama_free);
    if (!ctx) return "llama_init_from_model failed: " + take_log_errors();
    if (llama_n_ctx(ctx.get()) != static_cast<uint32_t>(j.n_ctx) || llama_n_batch(ctx.get()) != static_cast<uint32_t>(j.n_batch) ||
        llama_n_ubatch(ctx.get()) != static_cast<uint32_t>(j.n_ubatch)) {
        return "the context rounded n_ctx/n_batch/n_ubatch to " + std::to_string(llama_n_ctx(ctx.get())) + "/" +
               std::to_string(llama_n_batch(ctx.get())) + "/" + std::to_string(llama_n_ubatch(ctx.get())) + " (use multiples of 256)";
    }

    // Warm-up decode, as finetune.cpp's common_init does: it also sets the CPU backend's thread count, which
    // ggml_opt_eval (running on the context's scheduler without llama's graph_compute) would not set.
    {
        std::vector<llama_token> w(j.tokens.begin(), j.tokens.begin() + 8);
        if (llama_decode(ctx.get(), llama_batch_get_one(w.data(), static_cast<int32_t>(w.size()))) != 0) return "warm-up llama_decode failed";
        llama_memory_clear(llama_get_memory(ctx.get()), true);
    }

    // Dataset: datapoint i = tokens[i·n_ctx, +n_ctx), labels = the next tokens (finetune.cpp's layout, stride n_ctx).
    const int64_t ndata = j.steps * j.n_batch / j.n_ctx;
    ggml_opt_dataset_t ds = ggml_opt_dataset_init(GGML_TYPE_I32, GGML_TYPE_I32, j.n_ctx, j.n_ctx, ndata, 1);
    std::unique_ptr<ggml_opt_dataset, void (*)(ggml_opt_dataset_t)> dataset(ds, ggml_opt_dataset_free);
    auto * data = static_cast<llama_token *>(ggml_opt_dataset_data(ds)->data);
    auto * labels = static_cast<llama_token *>(ggml_opt_dataset_labels(ds)->data);
    for (int64_t i = 0; i < ndata; ++i) {
        std::memcpy(data + i * j.n_ctx, j.tokens.data() + i * j.n_ctx, j.n_ctx * sizeof(llama_token));
        std::memcpy(labels + i * j.n_ctx, j.tokens.data() + i * j.n_ctx + 1, j.n_ctx * sizeof(llama_token));
    }

    // opt_period = n_batch / n_ubatch physical batches per AdamW step.
    llama_opt_params op{};
    op.n_ctx_train = 0;
    op.param_filter = llama_opt_param_filter_all;
    op.get_opt_pars = constant_lr;
    op.get_opt_pars_ud = &j.lr;
    op.optimizer_type = GGML_OPT_OPTIMIZER_TYPE_ADAMW;
    llama_opt_init(ctx.get(), model.get(), op);

    ggml_opt_result_t train = ggml_opt_result_init();
    ggml_opt_result_t eval = ggml_opt_result_init();
    std::lock_guard<std::mutex> lock(g_marks_mu);
    g_marks.clear();
    g_marks.reserve(static_cast<size_t>(ndata * j.n_ctx / j.n_ubatch));
    const int64_t t0 = ggml_time_us();
    llama_opt_epoch(ctx.get(), ds, train, eval, ndata, mark_ubatch, nullptr);
    j.seconds = static_cast<double>(ggml_time_us() - t0) / 1e6;
    const size_t period = static_cast<size_t>(j.n_batch / j.n_ubatch);
    for (size_t i = period - 1; i < g_marks.size(); i += period) {  // i: last ubatch of a step
        const int64_t start = i < period ? t0 : g_marks[i - period];
        j.step_seconds.push_back(static_cast<double>(g_marks[i] - start) / 1e6);
    }
    double unc = 0.0;
    ggml_opt_result_loss(train, &j.loss, &unc);
    ggml_opt_result_free(train);
    ggml_opt_result_free(eval);
    j.n_tokens = ndata * j.n_ctx;
    return "";
}

class OptBenchWorker : public Napi::AsyncWorker {
public:
    OptBenchWorker(Napi::Env env, std::unique_ptr<opt_bench_job> job)
        : Napi::AsyncWorker(env, "BenchLlamaOptWorker"), deferred_(Napi::Promise::Deferred::New(env)), job_(std::move(job)) {}
    Napi::Promise promise() { return deferred_.Promise(); }
    void Execute() override { err_ = run_opt_bench(*job_); }
    void OnOK() override {
        Napi::Env env = Env();
        if (!err_.empty()) {
            deferred_.Reject(make_error(env, ERR_LLAMA, "benchLlamaOpt: " + err_).Value());
            return;
        }
        Napi::Object o = Napi::Object::New(env);
        o.Set("seconds", job_->seconds);
        o.Set("tokens", static_cast<double>(job_->n_tokens));
        o.Set("steps", static_cast<double>(job_->steps));
        o.Set("loss", job_->loss);
        Napi::Float64Array st = Napi::Float64Array::New(env, job_->step_seconds.size());
        std::copy(job_->step_seconds.begin(), job_->step_seconds.end(), st.Data());
        o.Set("stepSeconds", st);
        deferred_.Resolve(o);
    }
    void OnError(const Napi::Error & e) override { deferred_.Reject(e.Value()); }
private:
    Napi::Promise::Deferred deferred_;
    std::unique_ptr<opt_bench_job> job_;
    std::string err_;
};

int64_t int_opt(const Napi::Object & o, const char * key, int64_t fallback) {
    Napi::Value v = o.Get(key);
    return v.IsNumber() ? v.As<Napi::Number>().Int64Value() : fallback;
}

}  // namespace

// benchLlamaOpt(modelPath, {tokens: Int32Array, nCtx, nBatch?, nUbatch?, steps, threads, lr, budgetAdapter?})
//   -> Promise<{seconds, tokens, steps, loss, stepSeconds: Float64Array}>
// nCtx: tokens per datapoint (one causal sequence); nBatch (default nCtx): tokens per AdamW step, divides
// nCtx; nUbatch (default nBatch): tokens per physical batch, divides nBatch. Needs steps·nBatch/nCtx
// datapoints, i.e. that many·nCtx + 1 tokens. budgetAdapter: see "node budget" in run_opt_bench.
Napi::Value bench_llama_opt(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    auto reject = [&env](const std::string & msg) {
        auto d = Napi::Promise::Deferred::New(env);
        d.Reject(make_error(env, ERR_INVALID, "benchLlamaOpt: " + msg).Value());
        return d.Promise();
    };
    if (info.Length() < 2 || !info[0].IsString() || !info[1].IsObject()) return reject("expects (modelPath: string, options: object)");
    Napi::Object o = info[1].As<Napi::Object>();
    if (!o.Get("tokens").IsTypedArray() || o.Get("tokens").As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
        return reject("options.tokens must be an Int32Array");
    }
    auto j = std::make_unique<opt_bench_job>();
    j->path = info[0].As<Napi::String>().Utf8Value();
    Napi::Int32Array tok = o.Get("tokens").As<Napi::Int32Array>();
    j->tokens.assign(tok.Data(), tok.Data() + tok.ElementLength());
    j->n_ctx = int_opt(o, "nCtx", 0);
    j->n_batch = int_opt(o, "nBatch", j->n_ctx);
    j->n_ubatch = int_opt(o, "nUbatch", j->n_batch);
    j->steps = int_opt(o, "steps", 0);
    j->threads = static_cast<int32_t>(int_opt(o, "threads", 1));
    if (o.Get("budgetAdapter").IsString()) j->budget_adapter = o.Get("budgetAdapter").As<Napi::String>().Utf8Value();
    Napi::Value lr = o.Get("lr");
    j->lr = lr.IsNumber() ? lr.As<Napi::Number>().FloatValue() : 1e-4f;
    if (j->n_ctx < 8 || j->n_ctx > (1 << 20)) return reject("nCtx must be in [8, 2^20]");
    if (j->n_batch <= 0 || j->n_ctx % j->n_batch != 0) return reject("nBatch must divide nCtx");
    if (j->n_ubatch <= 0 || j->n_batch % j->n_ubatch != 0) return reject("nUbatch must divide nBatch");
    if (j->steps <= 0 || j->steps > (1 << 24) || (j->steps * j->n_batch) % j->n_ctx != 0) return reject("steps must be in [1, 2^24] with steps·nBatch a multiple of nCtx");
    if (j->threads < 1 || j->threads > 1024) return reject("threads must be in [1, 1024]");
    if (!std::isfinite(j->lr) || j->lr <= 0.0f) return reject("lr must be a positive number");
    const int64_t need = j->steps * j->n_batch + 1;
    if (static_cast<int64_t>(j->tokens.size()) < need) {
        return reject("needs " + std::to_string(need) + " tokens, got " + std::to_string(j->tokens.size()));
    }
    auto * w = new OptBenchWorker(env, std::move(j));
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
}

}  // namespace w2s
