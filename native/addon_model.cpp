// AddonModel (a loaded llama_model: info, metadata, tokenizer, and the entry points of its jobs),
// AddonLora (a loaded LoRA adapter) and CancelToken, plus their load workers.
#include <cstdio>

#include "addon.h"
#include "backend.h"
#include "ggml-backend.h"

namespace w2s {

// ---- model loading ---------------------------------------------------------------------------------

namespace {

class ModelLoadWorker : public Napi::AsyncWorker {
public:
    ModelLoadWorker(Napi::Env env, std::string path, int32_t n_gpu_layers, bool repack, bool vocab_only, std::string gpu)
        : Napi::AsyncWorker(env, "ModelLoadWorker"), deferred_(Napi::Promise::Deferred::New(env)),
          path_(std::move(path)), n_gpu_layers_(n_gpu_layers), repack_(repack), vocab_only_(vocab_only), gpu_(std::move(gpu)) {}
    Napi::Promise promise() { return deferred_.Promise(); }

    void Execute() override {
        if (ggml_backend_reg_by_name("CPU") == nullptr) {
            fail_ = {ERR_LLAMA, "the ggml backends are not loaded: call init(libDir) first"};
            return;
        }
        llama_model_params mp = llama_model_default_params();
        mp.n_gpu_layers = n_gpu_layers_;
        // The devices llama.cpp may offload to (null-terminated; empty = the CPU only).
        std::vector<ggml_backend_dev_t> devs;
        std::string err;
        if (!pick_gpus(gpu_, devs, err)) {
            fail_ = {"ERR_W2S_BACKEND_UNAVAILABLE", err};
            return;
        }
        devs.push_back(nullptr);
        if (!gpu_.empty()) mp.devices = devs.data();
        mp.use_extra_bufts = repack_;
        mp.vocab_only = vocab_only_;
        // Our own callback replaces the default one, which prints dots to stderr.
        mp.progress_callback = [](float, void *) { return true; };
        clear_log_errors();
        llama_model * m = llama_model_load_from_file(path_.c_str(), mp);
        if (m == nullptr) {
            std::string log = take_log_errors();
            fail_ = {ERR_LLAMA, "llama_model_load_from_file failed for " + path_ + (log.empty() ? "" : ": " + log)};
            return;
        }
        model_ = model_ptr(m, [](llama_model * p) { llama_model_free(p); });
        if (llama_model_has_encoder(m) || !llama_model_has_decoder(m)) {
            char arch[128] = {0};
            llama_model_meta_val_str(m, "general.architecture", arch, sizeof(arch));
            fail_ = {"ERR_W2S_UNSUPPORTED_MODEL",
                     std::string("unsupported architecture '") + arch + "': weak2strong needs a decoder-only model"};
            model_.reset();
        }
    }
    void OnOK() override {
        Napi::Env env = Env();
        if (!fail_.code.empty()) {
            deferred_.Reject(make_error(env, fail_.code, fail_.message).Value());
            return;
        }
        Napi::Object obj = env.GetInstanceData<instance_data>()->model_ctor.New({});
        AddonModel::Unwrap(obj)->model = model_;
        deferred_.Resolve(obj);
    }
    void OnError(const Napi::Error & e) override { deferred_.Reject(e.Value()); }

private:
    Napi::Promise::Deferred deferred_;
    std::string path_;
    int32_t n_gpu_layers_;
    bool repack_;
    bool vocab_only_;
    std::string gpu_;
    model_ptr model_;
    job_failure fail_;
};

class LoraLoadWorker : public Napi::AsyncWorker {
public:
    LoraLoadWorker(Napi::Env env, model_ptr model, std::string path)
        : Napi::AsyncWorker(env, "LoraLoadWorker"), deferred_(Napi::Promise::Deferred::New(env)),
          model_(std::move(model)), path_(std::move(path)) {}
    Napi::Promise promise() { return deferred_.Promise(); }
    void Execute() override {
        clear_log_errors();
        llama_adapter_lora * a = llama_adapter_lora_init(model_.get(), path_.c_str());
        if (a == nullptr) {
            std::string log = take_log_errors();
            message_ = "llama_adapter_lora_init failed for " + path_ + (log.empty() ? "" : ": " + log);
            return;
        }
        lora_ = std::make_shared<lora_handle>();
        lora_->model = model_;
        lora_->adapter = a;
    }
    void OnOK() override {
        Napi::Env env = Env();
        if (!lora_) {
            deferred_.Reject(make_error(env, "ERR_W2S_ADAPTER", message_).Value());
            return;
        }
        Napi::Object obj = env.GetInstanceData<instance_data>()->lora_ctor.New({});
        AddonLora::Unwrap(obj)->lora = lora_;
        deferred_.Resolve(obj);
    }
    void OnError(const Napi::Error & e) override { deferred_.Reject(e.Value()); }

private:
    Napi::Promise::Deferred deferred_;
    model_ptr model_;
    std::string path_;
    std::string message_;
    lora_ptr lora_;
};

std::string meta_string(int32_t (*fn)(const llama_model *, int32_t, char *, size_t), const llama_model * m, int32_t i) {
    std::vector<char> buf(256);
    int32_t n = fn(m, i, buf.data(), buf.size());
    if (n >= static_cast<int32_t>(buf.size())) {
        buf.resize(static_cast<size_t>(n) + 1);
        n = fn(m, i, buf.data(), buf.size());
    }
    return n < 0 ? std::string() : std::string(buf.data(), static_cast<size_t>(n));
}

}  // namespace

// loadModel(path, {gpuLayers, repack, vocabOnly, gpu?}) -> Promise<AddonModel>; gpu: pick_gpus (backend.h)
Napi::Value load_model(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsString() || !info[1].IsObject()) {
        throw make_error(env, ERR_INVALID, "loadModel(path, options) expects a string and an object");
    }
    Napi::Object o = info[1].As<Napi::Object>();
    auto * w = new ModelLoadWorker(env, info[0].As<Napi::String>().Utf8Value(),
                                   o.Get("gpuLayers").As<Napi::Number>().Int32Value(),
                                   o.Get("repack").ToBoolean().Value(), o.Get("vocabOnly").ToBoolean().Value(),
                                   o.Get("gpu").IsString() ? o.Get("gpu").As<Napi::String>().Utf8Value() : std::string());
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
}

// ---- AddonModel ------------------------------------------------------------------------------------

Napi::Function AddonModel::define(Napi::Env env) {
    return DefineClass(env, "AddonModel", {
        InstanceMethod("info", &AddonModel::info),
        InstanceMethod("metadata", &AddonModel::metadata),
        InstanceMethod("tokenize", &AddonModel::tokenize),
        InstanceMethod("tokenizePair", &AddonModel::tokenize_pair),
        InstanceMethod("applyChatTemplate", &AddonModel::apply_chat_template),
        InstanceMethod("detokenize", &AddonModel::detokenize),
        InstanceMethod("loadLora", &AddonModel::load_lora),
        InstanceMethod("sample", &AddonModel::sample),
        InstanceMethod("score", &AddonModel::score),
        InstanceMethod("dispose", &AddonModel::dispose),
    });
}

AddonModel::AddonModel(const Napi::CallbackInfo & info) : Napi::ObjectWrap<AddonModel>(info) {}

model_ptr AddonModel::require(Napi::Env env) const {
    if (!model) throw make_error(env, ERR_DISPOSED, "the model was disposed");
    return model;
}

Napi::Value AddonModel::info(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    llama_model * m = require(env).get();
    const llama_vocab * v = llama_model_get_vocab(m);
    char desc[256] = {0};
    llama_model_desc(m, desc, sizeof(desc));
    Napi::Object o = Napi::Object::New(env);
    o.Set("description", desc);
    o.Set("nVocab", llama_vocab_n_tokens(v));
    o.Set("nCtxTrain", llama_model_n_ctx_train(m));
    o.Set("nEmbd", llama_model_n_embd(m));
    o.Set("nLayer", llama_model_n_layer(m));
    // A vocab-only model has no layers, and llama.cpp aborts on per-layer queries then.
    o.Set("nHead", llama_model_n_layer(m) > 0 ? llama_model_n_head(m) : 0);
    o.Set("nParams", static_cast<double>(llama_model_n_params(m)));
    o.Set("sizeBytes", static_cast<double>(llama_model_size(m)));
    o.Set("bos", llama_vocab_bos(v));
    o.Set("eos", llama_vocab_eos(v));
    o.Set("addBos", llama_vocab_get_add_bos(v));
    return o;
}

Napi::Value AddonModel::metadata(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    llama_model * m = require(env).get();
    Napi::Object o = Napi::Object::New(env);
    const int32_t n = llama_model_meta_count(m);
    for (int32_t i = 0; i < n; ++i) {
        o.Set(meta_string(llama_model_meta_key_by_index, m, i), meta_string(llama_model_meta_val_str_by_index, m, i));
    }
    return o;
}

// tokenize(text, addSpecial, parseSpecial) -> Int32Array. Synchronous: llama.cpp tokenizes ~MB/s, and
// callers tokenize one prompt at a time; batch work tokenizes inside the job workers instead.
Napi::Value AddonModel::tokenize(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    llama_model * m = require(env).get();
    if (info.Length() < 1 || !info[0].IsString()) throw make_error(env, ERR_INVALID, "tokenize(text) expects a string");
    std::vector<llama_token> toks;
    std::string err;
    if (!tokenize_text(llama_model_get_vocab(m), info[0].As<Napi::String>().Utf8Value(), info[1].ToBoolean().Value(),
                       info[2].ToBoolean().Value(), toks, &err)) {
        throw make_error(env, ERR_INVALID, err);
    }
    Napi::Int32Array out = Napi::Int32Array::New(env, toks.size());
    std::copy(toks.begin(), toks.end(), out.Data());
    return out;
}

// tokenizePair(prompt, completion, parseSpecial) -> { tokens: Int32Array, nPrompt }: the boundary rule of
// native/core/tokenize.h, the one that scoring uses, for the trainers. Synchronous like tokenize().
Napi::Value AddonModel::tokenize_pair(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    llama_model * m = require(env).get();
    if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
        throw make_error(env, ERR_INVALID, "tokenizePair(prompt, completion) expects two strings");
    }
    std::vector<llama_token> toks;
    int32_t n_prompt = 0;
    std::string err;
    if (!w2s::tokenize_pair(llama_model_get_vocab(m), info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::String>().Utf8Value(),
                            info.Length() > 2 && info[2].ToBoolean().Value(), toks, n_prompt, err)) {
        throw make_error(env, ERR_INVALID, err);
    }
    Napi::Int32Array tokens = Napi::Int32Array::New(env, toks.size());
    std::copy(toks.begin(), toks.end(), tokens.Data());
    Napi::Object out = Napi::Object::New(env);
    out.Set("tokens", tokens);
    out.Set("nPrompt", Napi::Number::New(env, n_prompt));
    return out;
}

// applyChatTemplate(messages [{role, content}], addAssistant, template?) -> string: llama.cpp's built-in
// templates (llama_chat_apply_template matches the model's tokenizer.chat_template, or a name such as
// 'chatml', against its fixed list; it runs no Jinja). Synchronous: string formatting only.
Napi::Value AddonModel::apply_chat_template(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    llama_model * m = require(env).get();
    if (info.Length() < 2 || !info[0].IsArray()) throw make_error(env, ERR_INVALID, "applyChatTemplate(messages, addAssistant) expects an array");
    Napi::Array arr = info[0].As<Napi::Array>();
    std::vector<std::string> roles, contents;
    for (uint32_t i = 0; i < arr.Length(); ++i) {
        Napi::Object o = arr.Get(i).As<Napi::Object>();
        roles.push_back(o.Get("role").As<Napi::String>().Utf8Value());
        contents.push_back(o.Get("content").As<Napi::String>().Utf8Value());
    }
    std::vector<llama_chat_message> msgs;
    size_t chars = 0;
    for (size_t i = 0; i < roles.size(); ++i) {
        msgs.push_back({roles[i].c_str(), contents[i].c_str()});
        chars += roles[i].size() + contents[i].size();
    }
    std::string named;
    const char * tmpl = nullptr;
    if (info.Length() > 2 && info[2].IsString()) {
        named = info[2].As<Napi::String>().Utf8Value();
        tmpl = named.c_str();
    } else {
        tmpl = llama_model_chat_template(m, nullptr);
        if (tmpl == nullptr) {
            throw make_error(env, ERR_INVALID, "the model has no chat template (tokenizer.chat_template); pass one by name, e.g. template: 'chatml'");
        }
    }
    std::vector<char> buf(2 * chars + 1024);
    int32_t n = llama_chat_apply_template(tmpl, msgs.data(), msgs.size(), info[1].ToBoolean().Value(), buf.data(), static_cast<int32_t>(buf.size()));
    if (n > static_cast<int32_t>(buf.size())) {
        buf.resize(static_cast<size_t>(n));
        n = llama_chat_apply_template(tmpl, msgs.data(), msgs.size(), info[1].ToBoolean().Value(), buf.data(), static_cast<int32_t>(buf.size()));
    }
    if (n < 0) {
        throw make_error(env, "ERR_W2S_UNSUPPORTED_MODEL", "llama.cpp does not know this chat template (llama_chat_apply_template supports a fixed list, "
                                                 "no Jinja); pass a known template by name, e.g. template: 'chatml' or 'llama3'");
    }
    return Napi::String::New(env, buf.data(), static_cast<size_t>(n));
}

// detokenize(Int32Array, renderSpecial) -> string
Napi::Value AddonModel::detokenize(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    llama_model * m = require(env).get();
    if (info.Length() < 1 || !info[0].IsTypedArray()) throw make_error(env, ERR_INVALID, "detokenize(tokens) expects an Int32Array");
    Napi::Int32Array toks = info[0].As<Napi::Int32Array>();
    const llama_vocab * v = llama_model_get_vocab(m);
    const int32_t n_vocab = llama_vocab_n_tokens(v);
    for (size_t i = 0; i < toks.ElementLength(); ++i) {
        if (toks[i] < 0 || toks[i] >= n_vocab) {
            throw make_error(env, ERR_INVALID, "token " + std::to_string(toks[i]) + " at index " + std::to_string(i) +
                                                   " is outside the vocabulary [0, " + std::to_string(n_vocab) + ")");
        }
    }
    std::string text(toks.ElementLength() * 8 + 16, '\0');
    const bool special = info[1].ToBoolean().Value();
    int32_t n = llama_detokenize(v, toks.Data(), static_cast<int32_t>(toks.ElementLength()), text.data(),
                                 static_cast<int32_t>(text.size()), false, special);
    if (n < 0) {
        text.resize(static_cast<size_t>(-n));
        n = llama_detokenize(v, toks.Data(), static_cast<int32_t>(toks.ElementLength()), text.data(),
                             static_cast<int32_t>(text.size()), false, special);
    }
    if (n < 0) throw make_error(env, ERR_LLAMA, "llama_detokenize failed");
    text.resize(static_cast<size_t>(n));
    return Napi::String::New(env, text);
}

Napi::Value AddonModel::load_lora(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    model_ptr m = require(env);
    if (info.Length() < 1 || !info[0].IsString()) throw make_error(env, ERR_INVALID, "loadLora(path) expects a string");
    auto * w = new LoraLoadWorker(env, m, info[0].As<Napi::String>().Utf8Value());
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
}

Napi::Value AddonModel::sample(const Napi::CallbackInfo & info) { return start_sample_job(info, require(info.Env())); }
Napi::Value AddonModel::score(const Napi::CallbackInfo & info) { return start_score_job(info, require(info.Env())); }

Napi::Value AddonModel::dispose(const Napi::CallbackInfo & info) {
    model.reset();  // running jobs and adapters keep their own reference
    return info.Env().Undefined();
}

// ---- AddonLora ---------------------------------------------------------------------------------------

Napi::Function AddonLora::define(Napi::Env env) {
    return DefineClass(env, "AddonLora", {
        InstanceMethod("metadata", &AddonLora::metadata),
        InstanceMethod("dispose", &AddonLora::dispose),
    });
}

AddonLora::AddonLora(const Napi::CallbackInfo & info) : Napi::ObjectWrap<AddonLora>(info) {}

Napi::Value AddonLora::metadata(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!lora) throw make_error(env, ERR_DISPOSED, "the adapter was disposed");
    Napi::Object o = Napi::Object::New(env);
    const int32_t n = llama_adapter_meta_count(lora->adapter);
    char key[256];
    std::vector<char> val(4096);
    for (int32_t i = 0; i < n; ++i) {
        if (llama_adapter_meta_key_by_index(lora->adapter, i, key, sizeof(key)) < 0) continue;
        if (llama_adapter_meta_val_str_by_index(lora->adapter, i, val.data(), val.size()) < 0) continue;
        o.Set(key, val.data());
    }
    return o;
}

Napi::Value AddonLora::dispose(const Napi::CallbackInfo & info) {
    lora.reset();
    return info.Env().Undefined();
}

// ---- CancelToken -------------------------------------------------------------------------------------

Napi::Function CancelToken::define(Napi::Env env) {
    return DefineClass(env, "CancelToken", {InstanceMethod("cancel", &CancelToken::cancel)});
}

CancelToken::CancelToken(const Napi::CallbackInfo & info) : Napi::ObjectWrap<CancelToken>(info) {}

Napi::Value CancelToken::cancel(const Napi::CallbackInfo & info) {
    flag->store(true);
    return info.Env().Undefined();
}

}  // namespace w2s
