// Shared declarations of the Node addon: per-environment instance data (so the addon works in several
// worker_threads at once), the wrapped classes, and error helpers. Only the addon_*.cpp files use N-API.
#pragma once
#include <napi.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "llama.h"
#include "tokenize.h"

namespace w2s {

// Error codes surfaced to TypeScript (lib/native.ts maps them to typed errors).
inline constexpr const char * ERR_LLAMA = "ERR_W2S_LLAMA";              // a llama.cpp call failed
inline constexpr const char * ERR_ABORTED = "ABORT_ERR";                // cancelled through a CancelToken
inline constexpr const char * ERR_DISPOSED = "ERR_W2S_DISPOSED";        // used after dispose()
inline constexpr const char * ERR_INVALID = "ERR_W2S_INVALID_ARGUMENT"; // bad input caught natively
inline constexpr const char * ERR_TOO_LONG = "ERR_W2S_CONTEXT_OVERFLOW";

Napi::Error make_error(Napi::Env env, const std::string & code, const std::string & message);

// A failure inside AsyncWorker::Execute, carried to the JS thread with its code.
struct job_failure {
    std::string code;
    std::string message;
};

// Owns a llama_model; jobs and adapters hold a shared_ptr so a model disposed from JS stays alive until
// the last job that uses it has finished.
using model_ptr = std::shared_ptr<llama_model>;

struct lora_handle {
    model_ptr model;  // keeps the base model alive: adapters must be freed before their model
    llama_adapter_lora * adapter = nullptr;
    ~lora_handle() {
        if (adapter != nullptr) llama_adapter_lora_free(adapter);
    }
};
using lora_ptr = std::shared_ptr<lora_handle>;

class AddonModel;
class AddonLora;
class CancelToken;

struct instance_data {
    Napi::FunctionReference model_ctor;
    Napi::FunctionReference lora_ctor;
    Napi::FunctionReference cancel_ctor;
    Napi::FunctionReference trainer_ctor;
};

class AddonModel : public Napi::ObjectWrap<AddonModel> {
public:
    static Napi::Function define(Napi::Env env);
    explicit AddonModel(const Napi::CallbackInfo & info);
    model_ptr model;  // empty after dispose()
    model_ptr require(Napi::Env env) const;
private:
    Napi::Value info(const Napi::CallbackInfo & info);
    Napi::Value metadata(const Napi::CallbackInfo & info);
    Napi::Value tokenize(const Napi::CallbackInfo & info);
    Napi::Value tokenize_pair(const Napi::CallbackInfo & info);
    Napi::Value apply_chat_template(const Napi::CallbackInfo & info);
    Napi::Value detokenize(const Napi::CallbackInfo & info);
    Napi::Value load_lora(const Napi::CallbackInfo & info);
    Napi::Value sample(const Napi::CallbackInfo & info);
    Napi::Value score(const Napi::CallbackInfo & info);
    Napi::Value dispose(const Napi::CallbackInfo & info);
};

class AddonLora : public Napi::ObjectWrap<AddonLora> {
public:
    static Napi::Function define(Napi::Env env);
    explicit AddonLora(const Napi::CallbackInfo & info);
    lora_ptr lora;
private:
    Napi::Value metadata(const Napi::CallbackInfo & info);
    Napi::Value dispose(const Napi::CallbackInfo & info);
};

// Cancellation flag shared between JS (cancel()) and a running job (polled each step and in llama_decode).
class CancelToken : public Napi::ObjectWrap<CancelToken> {
public:
    static Napi::Function define(Napi::Env env);
    explicit CancelToken(const Napi::CallbackInfo & info);
    std::shared_ptr<std::atomic<bool>> flag = std::make_shared<std::atomic<bool>>(false);
private:
    Napi::Value cancel(const Napi::CallbackInfo & info);
};

// Defined in addon_model.cpp / addon_jobs.cpp.
Napi::Value load_model(const Napi::CallbackInfo & info);
Napi::Value start_sample_job(const Napi::CallbackInfo & info, const model_ptr & model);
Napi::Value start_score_job(const Napi::CallbackInfo & info, const model_ptr & model);

// Defined in addon_trainer.cpp.
Napi::Function define_trainer(Napi::Env env);
Napi::Value create_trainer(const Napi::CallbackInfo & info);

// Defined in bench_llama_opt.cpp: llama.cpp's own trainer as the peer of `w2s bench train`.
Napi::Value bench_llama_opt(const Napi::CallbackInfo & info);

// tokenize_text and tokenize_pair: native/core/tokenize.h.

}  // namespace w2s
