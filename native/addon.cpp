// Registers the addon's classes and functions; nothing else lives here.
#include "addon.h"

#include "backend.h"
#include "batch_sampler.h"

namespace w2s {

Napi::Error make_error(Napi::Env env, const std::string & code, const std::string & message) {
    Napi::Error e = Napi::Error::New(env, message);
    e.Set("code", Napi::String::New(env, code));
    return e;
}

// init(libDir): loads the ggml backend plugins from libDir (once per process). Cheap after the first call.
static Napi::Value init(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsString()) {
        throw make_error(env, ERR_INVALID, "init(libDir) expects a folder path string");
    }
    std::string err;
    if (!backend_init(info[0].As<Napi::String>().Utf8Value(), err)) throw make_error(env, ERR_LLAMA, err);
    Napi::Object out = Napi::Object::New(env);
    out.Set("devices", backend_devices());
    out.Set("systemInfo", llama_print_system_info());
    return out;
}

// defaults(): the native request structs' default values, so the TS option docs can be checked against them.
static Napi::Value defaults(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    const batch_sample_request d;
    Napi::Object s = Napi::Object::New(env);
    s.Set("temperature", d.sampling.temperature);
    s.Set("topP", d.sampling.top_p);
    s.Set("topK", d.sampling.top_k);
    s.Set("n", d.n);
    s.Set("maxTokens", d.max_tokens);
    s.Set("parallel", d.parallel);
    s.Set("batchSize", d.n_batch);
    Napi::Object out = Napi::Object::New(env);
    out.Set("sample", s);
    return out;
}

static Napi::Object register_addon(Napi::Env env, Napi::Object exports) {
    auto * data = new instance_data();
    env.SetInstanceData<instance_data>(data);
    data->model_ctor = Napi::Persistent(AddonModel::define(env));
    data->lora_ctor = Napi::Persistent(AddonLora::define(env));
    data->cancel_ctor = Napi::Persistent(CancelToken::define(env));
    data->trainer_ctor = Napi::Persistent(define_trainer(env));
    exports.Set("init", Napi::Function::New(env, init, "init"));
    exports.Set("defaults", Napi::Function::New(env, defaults, "defaults"));
    exports.Set("loadModel", Napi::Function::New(env, load_model, "loadModel"));
    exports.Set("createTrainer", Napi::Function::New(env, create_trainer, "createTrainer"));
    exports.Set("benchLlamaOpt", Napi::Function::New(env, bench_llama_opt, "benchLlamaOpt"));
    exports.Set("CancelToken", data->cancel_ctor.Value());
    exports.Set("AddonModel", data->model_ctor.Value());
    exports.Set("AddonLora", data->lora_ctor.Value());
    return exports;
}

}  // namespace w2s

static Napi::Object init_weak2strong(Napi::Env env, Napi::Object exports) { return w2s::register_addon(env, exports); }

NODE_API_MODULE(weak2strong, init_weak2strong)
