// The long-running jobs of a model, as AsyncProgressWorkers resolving Promises: SampleWorker (batched
// sampling) and ScoreWorker (sequence log-probs). Constructors copy every input on the JS thread;
// Execute() touches no N-API; progress reaches JS coalesced (only the latest report is delivered).
#include <chrono>

#include "addon.h"
#include "backend.h"
#include "batch_sampler.h"
#include "scorer.h"

namespace w2s {
namespace {

std::shared_ptr<std::atomic<bool>> cancel_flag_of(const Napi::Value & v) {
    if (v.IsObject()) {
        Napi::Object o = v.As<Napi::Object>();
        if (o.InstanceOf(o.Env().GetInstanceData<instance_data>()->cancel_ctor.Value())) {
            return CancelToken::Unwrap(o)->flag;
        }
    }
    return std::make_shared<std::atomic<bool>>(false);
}

std::vector<adapter_ref> adapters_of(Napi::Env env, const Napi::Value & v, std::vector<lora_ptr> & keep) {
    std::vector<adapter_ref> out;
    if (!v.IsArray()) return out;
    Napi::Array arr = v.As<Napi::Array>();
    Napi::Function lora_ctor = env.GetInstanceData<instance_data>()->lora_ctor.Value();
    for (uint32_t i = 0; i < arr.Length(); ++i) {
        Napi::Object e = arr.Get(i).As<Napi::Object>();
        Napi::Value l = e.Get("lora");
        if (!l.IsObject() || !l.As<Napi::Object>().InstanceOf(lora_ctor)) {
            throw make_error(env, ERR_INVALID, "adapters[" + std::to_string(i) + "].lora is not a loaded adapter");
        }
        lora_ptr lp = AddonLora::Unwrap(l.As<Napi::Object>())->lora;
        if (!lp) throw make_error(env, ERR_DISPOSED, "adapters[" + std::to_string(i) + "] was disposed");
        keep.push_back(lp);
        out.push_back({lp->adapter, e.Get("scale").As<Napi::Number>().FloatValue()});
    }
    return out;
}

int32_t int_of(const Napi::Object & o, const char * key, int32_t fallback) {
    Napi::Value v = o.Get(key);
    return v.IsNumber() ? v.As<Napi::Number>().Int32Value() : fallback;
}

const char * reason_name(finish_reason r) {
    switch (r) {
        case finish_reason::stop: return "stop";
        case finish_reason::eos: return "eos";
        default: return "length";
    }
}

// Shared plumbing: deferred promise, optional JS progress callback, cancellation, failure with a code.
template <typename Progress>
class job_worker : public Napi::AsyncProgressWorker<Progress> {
public:
    job_worker(Napi::Env env, const char * name, const Napi::Value & on_progress, const Napi::Value & token)
        : Napi::AsyncProgressWorker<Progress>(env, name), deferred_(Napi::Promise::Deferred::New(env)),
          cancel_(cancel_flag_of(token)) {
        if (on_progress.IsFunction()) progress_cb_ = Napi::Persistent(on_progress.As<Napi::Function>());
    }
    Napi::Promise promise() { return deferred_.Promise(); }
    // Whether a report should go to JS now: never without a callback, else at most every 50 ms, and always
    // the last one. Each Send wakes the JS thread; at one per decode step (100+ per second) those wakes
    // land on the cores that ggml's workers spin on and stall a step at its barrier.
    bool progress_due(bool last) {
        if (progress_cb_.IsEmpty()) return false;
        const auto now = std::chrono::steady_clock::now();
        if (!last && now - last_sent_ < std::chrono::milliseconds(50)) return false;
        last_sent_ = now;
        return true;
    }
    void OnError(const Napi::Error & e) override { deferred_.Reject(e.Value()); }

protected:
    void fail(const std::string & code, const std::string & message) { fail_ = {code, message}; }
    // Resolves with `make()` unless Execute failed.
    template <typename Make>
    void settle(Make make) {
        Napi::Env env = this->Env();
        if (!fail_.code.empty()) {
            deferred_.Reject(make_error(env, fail_.code, fail_.message).Value());
        } else {
            deferred_.Resolve(make(env));
        }
    }
    void failed_run(const std::string & err) {
        if (cancel_->load()) fail(ERR_ABORTED, "the operation was aborted");
        else fail(ERR_LLAMA, err);
    }
    Napi::Promise::Deferred deferred_;
    Napi::FunctionReference progress_cb_;
    std::shared_ptr<std::atomic<bool>> cancel_;
    job_failure fail_;
    std::chrono::steady_clock::time_point last_sent_{};
};

class SampleWorker : public job_worker<sample_progress> {
public:
    SampleWorker(Napi::Env env, model_ptr model, const Napi::Object & r, const Napi::Value & on_progress,
                 const Napi::Value & token)
        : job_worker(env, "SampleWorker", on_progress, token), model_(std::move(model)) {
        Napi::Array prompts = r.Get("prompts").As<Napi::Array>();
        for (uint32_t i = 0; i < prompts.Length(); ++i) texts_.push_back(prompts.Get(i).As<Napi::String>().Utf8Value());
        Napi::Array stops = r.Get("stops").As<Napi::Array>();
        for (uint32_t i = 0; i < stops.Length(); ++i) req_.stops.push_back(stops.Get(i).As<Napi::String>().Utf8Value());
        req_.n = int_of(r, "n", 1);
        req_.sampling.temperature = r.Get("temperature").As<Napi::Number>().FloatValue();
        req_.sampling.top_p = r.Get("topP").As<Napi::Number>().FloatValue();
        req_.sampling.top_k = int_of(r, "topK", 0);
        req_.seed = static_cast<uint64_t>(r.Get("seed").As<Napi::Number>().DoubleValue());
        req_.max_tokens = int_of(r, "maxTokens", 256);
        req_.parallel = int_of(r, "parallel", 16);
        req_.n_ctx_seq = int_of(r, "contextSize", 0);
        req_.n_kv_cells = static_cast<uint32_t>(int_of(r, "kvCells", 0));
        req_.n_batch = int_of(r, "batchSize", 512);
        req_.n_threads = int_of(r, "threads", 1);
        req_.adapters = adapters_of(env, r.Get("adapters"), keep_);
        parse_special_ = r.Get("parseSpecial").ToBoolean().Value();
        req_.high_precision = r.Get("highPrecision").ToBoolean().Value();
        req_.want_token_ids = r.Has("tokenIds") && r.Get("tokenIds").ToBoolean().Value();
        req_.want_logprobs = r.Has("logprobs") && r.Get("logprobs").ToBoolean().Value();
        req_.share_prefix = !r.Has("sharePrefix") || r.Get("sharePrefix").ToBoolean().Value();
        req_.flash_attn = !r.Has("flashAttention") || r.Get("flashAttention").ToBoolean().Value();
    }

    void Execute(const ExecutionProgress & progress) override {
        const llama_vocab * vocab = llama_model_get_vocab(model_.get());
        if (req_.n_ctx_seq <= 0) req_.n_ctx_seq = llama_model_n_ctx_train(model_.get());
        req_.prompts.resize(texts_.size());
        for (size_t i = 0; i < texts_.size(); ++i) {
            std::string terr;
            if (!tokenize_text(vocab, texts_[i], true, parse_special_, req_.prompts[i], &terr)) {
                return fail(ERR_INVALID, "prompt " + std::to_string(i) + ": " + terr);
            }
            const size_t len = req_.prompts[i].size();
            if (len == 0) return fail(ERR_INVALID, "prompt " + std::to_string(i) + " is empty after tokenization "
                                                   "(the model adds no BOS token): give it some text");
            if (len >= static_cast<size_t>(req_.n_ctx_seq)) {
                return fail(ERR_TOO_LONG, "prompt " + std::to_string(i) + " has " + std::to_string(len) +
                                              " tokens, which leaves no room in the context of " +
                                              std::to_string(req_.n_ctx_seq) + " tokens");
            }
        }
        std::string err;
        const bool ok = run_batch_sampler(model_.get(), req_, *cancel_,
            [&](const sample_progress & p) {
                if (progress_due(p.finished >= p.total)) progress.Send(&p, 1);
            }, results_, err);
        if (!ok) failed_run(err);
    }
    void OnProgress(const sample_progress * p, size_t count) override {
        if (progress_cb_.IsEmpty() || count == 0) return;
        Napi::Env env = Env();
        Napi::Object o = Napi::Object::New(env);
        o.Set("tokens", static_cast<double>(p->tokens));
        o.Set("promptTokens", static_cast<double>(p->prompt_tokens));
        o.Set("finished", p->finished);
        o.Set("total", p->total);
        progress_cb_.Call({o});
    }
    void OnOK() override {
        settle([this](Napi::Env env) {
            Napi::Array arr = Napi::Array::New(env, results_.size());
            for (size_t i = 0; i < results_.size(); ++i) {
                const sample_output & s = results_[i];
                Napi::Object o = Napi::Object::New(env);
                o.Set("promptIndex", s.prompt_index);
                o.Set("sampleIndex", s.sample_index);
                o.Set("text", Napi::String::New(env, s.text));
                o.Set("tokens", s.n_tokens);
                o.Set("finishReason", reason_name(s.reason));
                // Plain arrays, not typed ones: samples are serialized to JSON as they are.
                if (req_.want_token_ids) {
                    Napi::Array ids = Napi::Array::New(env, s.token_ids.size());
                    for (size_t k = 0; k < s.token_ids.size(); ++k) ids.Set(static_cast<uint32_t>(k), s.token_ids[k]);
                    o.Set("tokenIds", ids);
                }
                if (req_.want_logprobs) {
                    Napi::Array lps = Napi::Array::New(env, s.logprobs.size());
                    for (size_t k = 0; k < s.logprobs.size(); ++k) lps.Set(static_cast<uint32_t>(k), static_cast<double>(s.logprobs[k]));
                    o.Set("logprobs", lps);
                }
                arr.Set(static_cast<uint32_t>(i), o);
            }
            return arr;
        });
    }

private:
    model_ptr model_;
    std::vector<lora_ptr> keep_;
    std::vector<std::string> texts_;
    bool parse_special_ = false;
    batch_sample_request req_;
    std::vector<sample_output> results_;
};

struct score_progress {
    int32_t done = 0;
    int32_t total = 0;
};

class ScoreWorker : public job_worker<score_progress> {
public:
    ScoreWorker(Napi::Env env, model_ptr model, const Napi::Object & r, const Napi::Value & on_progress,
                const Napi::Value & token)
        : job_worker(env, "ScoreWorker", on_progress, token), model_(std::move(model)) {
        Napi::Array items = r.Get("items").As<Napi::Array>();
        for (uint32_t i = 0; i < items.Length(); ++i) {
            Napi::Object it = items.Get(i).As<Napi::Object>();
            pairs_.emplace_back(it.Get("prompt").As<Napi::String>().Utf8Value(),
                                it.Get("completion").As<Napi::String>().Utf8Value());
        }
        req_.parallel = int_of(r, "parallel", 16);
        req_.n_batch = int_of(r, "batchSize", 512);
        req_.n_threads = int_of(r, "threads", 1);
        n_ctx_ = int_of(r, "contextSize", 0);
        req_.adapters = adapters_of(env, r.Get("adapters"), keep_);
        parse_special_ = r.Get("parseSpecial").ToBoolean().Value();
    }

    void Execute(const ExecutionProgress & progress) override {
        const llama_vocab * vocab = llama_model_get_vocab(model_.get());
        if (n_ctx_ <= 0) n_ctx_ = llama_model_n_ctx_train(model_.get());
        req_.items.resize(pairs_.size());
        for (size_t i = 0; i < pairs_.size(); ++i) {
            score_item & it = req_.items[i];
            // The boundary rule shared with training (tokenize.h): the joint tokens, split after the prompt's.
            std::string terr;
            if (!tokenize_pair(vocab, pairs_[i].first, pairs_[i].second, parse_special_, it.tokens, it.n_prompt, terr)) {
                return fail(ERR_INVALID, "item " + std::to_string(i) + ": " + terr);
            }
            if (it.n_prompt == 0) {
                return fail(ERR_INVALID, "item " + std::to_string(i) + ": the prompt has no tokens (the model adds no "
                                         "BOS token), so the first completion token has nothing to be predicted from");
            }
            if (it.tokens.size() > static_cast<size_t>(n_ctx_)) {
                return fail(ERR_TOO_LONG, "item " + std::to_string(i) + " has " + std::to_string(it.tokens.size()) +
                                              " tokens, more than the context of " + std::to_string(n_ctx_));
            }
        }
        std::string err;
        const bool ok = run_scorer(model_.get(), req_, *cancel_, [&](int32_t done, int32_t total) {
            score_progress p{done, total};
            if (progress_due(done >= total)) progress.Send(&p, 1);
        }, results_, err);
        if (!ok) failed_run(err);
    }
    void OnProgress(const score_progress * p, size_t count) override {
        if (progress_cb_.IsEmpty() || count == 0) return;
        Napi::Object o = Napi::Object::New(Env());
        o.Set("done", p->done);
        o.Set("total", p->total);
        progress_cb_.Call({o});
    }
    void OnOK() override {
        settle([this](Napi::Env env) {
            Napi::Array arr = Napi::Array::New(env, results_.size());
            for (size_t i = 0; i < results_.size(); ++i) {
                const score_output & s = results_[i];
                Napi::Float32Array lps = Napi::Float32Array::New(env, s.logprobs.size());
                std::copy(s.logprobs.begin(), s.logprobs.end(), lps.Data());
                Napi::Object o = Napi::Object::New(env);
                o.Set("logprobs", lps);
                o.Set("sum", s.sum);
                o.Set("tokens", static_cast<double>(s.logprobs.size()));
                o.Set("promptTokens", req_.items[i].n_prompt);
                arr.Set(static_cast<uint32_t>(i), o);
            }
            return arr;
        });
    }

private:
    model_ptr model_;
    std::vector<lora_ptr> keep_;
    std::vector<std::pair<std::string, std::string>> pairs_;
    int32_t n_ctx_ = 0;
    bool parse_special_ = false;
    score_request req_;
    std::vector<score_output> results_;
};

}  // namespace

// model.sample(request, onProgress?, cancelToken?) -> Promise<SampleResult[]>
Napi::Value start_sample_job(const Napi::CallbackInfo & info, const model_ptr & model) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) throw make_error(env, ERR_INVALID, "sample(request) expects an object");
    auto * w = new SampleWorker(env, model, info[0].As<Napi::Object>(), info[1], info[2]);
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
}

// model.score(request, onProgress?, cancelToken?) -> Promise<ScoreResult[]>
Napi::Value start_score_job(const Napi::CallbackInfo & info, const model_ptr & model) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) throw make_error(env, ERR_INVALID, "score(request) expects an object");
    auto * w = new ScoreWorker(env, model, info[0].As<Napi::Object>(), info[1], info[2]);
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
}

}  // namespace w2s
