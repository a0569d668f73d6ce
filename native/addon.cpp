// Registers the addon's classes and functions; nothing else lives here.
#include "addon.h"

#include "backend.h"
#include "batch_sampler.h"
#include "train_model.h"

namespace w2s {

Napi::Error make_error(Napi::Env env, const std::string & code, const std::string & message) {
    Napi::Error e = Napi::Error::New(env, message);
    e.Set("code", Napi::String::New(env, code));
    return e;
}

// init(libDir, fallbackDirs?, cpuBackend?) -> { cpuSource, devices, systemInfo, loadLog, deviceList }: loads the
// ggml backend plugins from libDir (once per process; fallbackDirs, cpuBackend: see backend_init). Cheap after
// the first call.
static Napi::Value init(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsString()) {
        throw make_error(env, ERR_INVALID, "init(libDir) expects a folder path string");
    }
    std::vector<std::string> fallback;
    if (info.Length() > 1 && info[1].IsArray()) {
        Napi::Array a = info[1].As<Napi::Array>();
        for (uint32_t i = 0; i < a.Length(); ++i) {
            if (a.Get(i).IsString()) fallback.push_back(a.Get(i).As<Napi::String>().Utf8Value());
        }
    }
    const std::string cpu_backend = info.Length() > 2 && info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "";
    std::string err, log, cpu_source;
    if (!backend_init(info[0].As<Napi::String>().Utf8Value(), err, fallback, &log, cpu_backend, &cpu_source)) throw make_error(env, ERR_LLAMA, err);
    Napi::Object out = Napi::Object::New(env);
    out.Set("cpuSource", cpu_source);
    out.Set("devices", backend_devices());
    out.Set("systemInfo", llama_print_system_info());
    out.Set("loadLog", log);
    // Every device with its backend, type and memory (bytes): what `gpu` options choose from.
    Napi::Array list = Napi::Array::New(env);
    for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
        ggml_backend_dev_t d = ggml_backend_dev_get(i);
        size_t free = 0, total = 0;
        ggml_backend_dev_memory(d, &free, &total);
        const auto t = ggml_backend_dev_type(d);
        Napi::Object o = Napi::Object::New(env);
        o.Set("name", ggml_backend_dev_name(d));
        o.Set("description", ggml_backend_dev_description(d));
        o.Set("backend", ggml_backend_reg_name(ggml_backend_dev_backend_reg(d)));
        o.Set("type", t == GGML_BACKEND_DEVICE_TYPE_GPU ? "gpu" : t == GGML_BACKEND_DEVICE_TYPE_IGPU ? "igpu" : t == GGML_BACKEND_DEVICE_TYPE_CPU ? "cpu" : "accel");
        o.Set("memoryFree", static_cast<double>(free));
        o.Set("memoryTotal", static_cast<double>(total));
        list.Set(static_cast<uint32_t>(i), o);
    }
    out.Set("deviceList", list);
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

// quantizeRows(typeName, Float32Array, nPerRow) -> Uint8Array: ggml's own quantizer (the reference rows
// llama-quantize writes, without an importance matrix), for the types JS does not encode (K-quants).
static Napi::Value quantize_rows(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsString() || !info[1].IsTypedArray() || !info[2].IsNumber()) {
        throw make_error(env, ERR_INVALID, "quantizeRows(type, Float32Array, nPerRow) expects a type name, a Float32Array and a row length");
    }
    const std::string name = info[0].As<Napi::String>().Utf8Value();
    ggml_type type = GGML_TYPE_COUNT;
    for (int t = 0; t < GGML_TYPE_COUNT; ++t) {
        const char * n = ggml_type_name(static_cast<ggml_type>(t));
        if (n && name == n && ggml_get_type_traits(static_cast<ggml_type>(t))->blck_size > 0) type = static_cast<ggml_type>(t);
    }
    if (type == GGML_TYPE_COUNT || !ggml_is_quantized(type) || ggml_quantize_requires_imatrix(type) ||
        ggml_get_type_traits(type)->to_float == nullptr) {
        throw make_error(env, ERR_INVALID, "quantizeRows: '" + name + "' is not a quantized type ggml can write without an importance matrix");
    }
    Napi::Float32Array src = info[1].As<Napi::Float32Array>();
    const int64_t n_per_row = info[2].As<Napi::Number>().Int64Value();
    const int64_t blck = ggml_blck_size(type);
    if (n_per_row <= 0 || n_per_row % blck != 0 || static_cast<int64_t>(src.ElementLength()) % n_per_row != 0) {
        throw make_error(env, ERR_INVALID, "quantizeRows: rows of " + std::to_string(n_per_row) + " values must be a multiple of " + name +
                                                "'s block of " + std::to_string(blck) + " and divide the " + std::to_string(src.ElementLength()) + " values");
    }
    const int64_t nrows = static_cast<int64_t>(src.ElementLength()) / n_per_row;
    Napi::Uint8Array out = Napi::Uint8Array::New(env, ggml_row_size(type, n_per_row) * nrows);
    ggml_quantize_init(type);
    ggml_quantize_chunk(type, src.Data(), out.Data(), 0, nrows, n_per_row, nullptr);
    return out;
}

// trainingSupport() -> [{ device, description, types: [ggml type names a frozen base may have] }]: the
// engine's own op check (type_trainable_on) on every registered ggml device.
static Napi::Value training_support(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    const ggml_type types[] = {GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16, GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q4_1,
                               GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K};
    Napi::Array out = Napi::Array::New(env);
    for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
        ggml_backend_dev_t dev = ggml_backend_dev_get(i);
        Napi::Object d = Napi::Object::New(env);
        d.Set("device", ggml_backend_dev_name(dev));
        d.Set("description", ggml_backend_dev_description(dev));
        Napi::Array ok = Napi::Array::New(env);
        for (ggml_type t : types) {
            if (type_trainable_on(dev, t, false)) ok.Set(ok.Length(), ggml_type_name(t));
        }
        d.Set("types", ok);
        out.Set(static_cast<uint32_t>(i), d);
    }
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
    exports.Set("trainingSupport", Napi::Function::New(env, training_support, "trainingSupport"));
    exports.Set("quantizeRows", Napi::Function::New(env, quantize_rows, "quantizeRows"));
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
