// AddonTrainer: a LoRA training session (native/core/trainer.h) for JS. Every call that computes runs in an
// AsyncWorker (Execute touches no N-API) and resolves a Promise; parameter access for tests is synchronous.
#include <functional>
#include <mutex>

#include "addon.h"
#include "trainer.h"

namespace w2s {
namespace {

struct trainer_handle {
    std::unique_ptr<trainer> t;
    std::mutex mu;  // one native call at a time, even if JS forgets to serialise
};
using trainer_ptr = std::shared_ptr<trainer_handle>;

// Runs `work` on the thread pool; `make` builds the resolved value on the JS thread.
class LambdaWorker : public Napi::AsyncWorker {
public:
    using work_fn = std::function<bool(std::string &)>;
    using make_fn = std::function<Napi::Value(Napi::Env)>;
    LambdaWorker(Napi::Env env, const char * name, const char * code, work_fn work, make_fn make)
        : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)), code_(code),
          work_(std::move(work)), make_(std::move(make)) {}
    Napi::Promise promise() { return deferred_.Promise(); }
    void Execute() override {
        if (!work_(err_) && err_.empty()) err_ = "failed";
    }
    void OnOK() override {
        Napi::Env env = Env();
        if (!err_.empty()) deferred_.Reject(make_error(env, code_, err_).Value());
        else deferred_.Resolve(make_ ? make_(env) : env.Undefined());
    }
    void OnError(const Napi::Error & e) override { deferred_.Reject(e.Value()); }
private:
    Napi::Promise::Deferred deferred_;
    std::string code_;
    work_fn work_;
    make_fn make_;
    std::string err_;
};

Napi::Promise queue(Napi::Env env, const char * name, const char * code, LambdaWorker::work_fn work, LambdaWorker::make_fn make) {
    auto * w = new LambdaWorker(env, name, code, std::move(work), std::move(make));
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
}

train_batch batch_of(const Napi::Object & o) {
    train_batch b;
    b.T = o.Get("T").As<Napi::Number>().Int64Value();
    b.B = o.Get("B").As<Napi::Number>().Int64Value();
    Napi::Int32Array tok = o.Get("tokens").As<Napi::Int32Array>();
    Napi::Int32Array tgt = o.Get("targets").As<Napi::Int32Array>();
    b.tokens.assign(tok.Data(), tok.Data() + tok.ElementLength());
    b.targets.assign(tgt.Data(), tgt.Data() + tgt.ElementLength());
    return b;
}

float num(const Napi::Object & o, const char * key, float fallback) {
    Napi::Value v = o.Get(key);
    return v.IsNumber() ? v.As<Napi::Number>().FloatValue() : fallback;
}

}  // namespace

class AddonTrainer : public Napi::ObjectWrap<AddonTrainer> {
public:
    static Napi::Function define(Napi::Env env) {
        return DefineClass(env, "AddonTrainer", {
            InstanceMethod("info", &AddonTrainer::info),
            InstanceMethod("accumulate", &AddonTrainer::accumulate),
            InstanceMethod("step", &AddonTrainer::step),
            InstanceMethod("logprobs", &AddonTrainer::logprobs),
            InstanceMethod("accumulatePairs", &AddonTrainer::accumulate_pairs),
            InstanceMethod("sequenceLogprobs", &AddonTrainer::sequence_logprobs),
            InstanceMethod("saveAdapter", &AddonTrainer::save_adapter),
            InstanceMethod("saveCheckpoint", &AddonTrainer::save_checkpoint),
            InstanceMethod("loadCheckpoint", &AddonTrainer::load_checkpoint),
            InstanceMethod("getParams", &AddonTrainer::get_params),
            InstanceMethod("setParams", &AddonTrainer::set_params),
            InstanceMethod("getGrads", &AddonTrainer::get_grads),
            InstanceMethod("clearGrads", &AddonTrainer::clear_grads),
            InstanceMethod("graphOps", &AddonTrainer::graph_ops),
            InstanceMethod("plan", &AddonTrainer::plan),
            InstanceMethod("dispose", &AddonTrainer::dispose),
        });
    }
    explicit AddonTrainer(const Napi::CallbackInfo & info) : Napi::ObjectWrap<AddonTrainer>(info) {}
    trainer_ptr handle;

private:
    trainer_ptr use(Napi::Env env) {
        if (!handle) throw make_error(env, ERR_DISPOSED, "the trainer was disposed");
        return handle;
    }
    Napi::Value info(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        trainer_ptr h = use(env);
        std::lock_guard<std::mutex> lock(h->mu);
        const train_hparams & hp = h->t->hparams();
        Napi::Object o = Napi::Object::New(env);
        o.Set("nParams", static_cast<double>(h->t->n_params()));
        o.Set("step", static_cast<double>(h->t->step_count()));
        o.Set("backend", h->t->backend_name());
        o.Set("arch", hp.arch);
        o.Set("nVocab", hp.n_vocab);
        o.Set("nLayer", hp.n_layer);
        o.Set("nEmbd", hp.n_embd);
        o.Set("nCtxTrain", hp.n_ctx_train);
        return o;
    }
    // plan({T, B, pairs}) -> Promise<{weights, lora, compute, checkpoints, checkpointing, device, deviceFree, deviceTotal}>
    Napi::Value plan(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        trainer_ptr h = use(env);
        if (info.Length() < 1 || !info[0].IsObject()) throw make_error(env, ERR_INVALID, "plan({T, B, pairs}) expects an object");
        Napi::Object o = info[0].As<Napi::Object>();
        const int64_t T = o.Get("T").ToNumber().Int64Value(), B = o.Get("B").ToNumber().Int64Value();
        const bool pairs = o.Get("pairs").ToBoolean().Value();
        auto out = std::make_shared<memory_plan>();
        return queue(env, "TrainerPlanWorker", ERR_LLAMA,
            [h, T, B, pairs, out](std::string & err) {
                std::lock_guard<std::mutex> lock(h->mu);
                return h->t->plan(T, B, pairs, *out, err);
            },
            [out](Napi::Env e) {
                Napi::Object r = Napi::Object::New(e);
                r.Set("weights", static_cast<double>(out->weights));
                r.Set("lora", static_cast<double>(out->lora));
                r.Set("compute", static_cast<double>(out->compute));
                r.Set("checkpoints", static_cast<double>(out->checkpoints));
                r.Set("checkpointing", out->checkpointing);
                r.Set("device", out->device);
                r.Set("deviceFree", static_cast<double>(out->device_free));
                r.Set("deviceTotal", static_cast<double>(out->device_total));
                return static_cast<Napi::Value>(r);
            });
    }
    // { ops: { "OP type type": count }, transientBytes } of the last training graph.
    Napi::Value graph_ops(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        trainer_ptr h = use(env);
        std::lock_guard<std::mutex> lock(h->mu);
        Napi::Object ops = Napi::Object::New(env);
        for (const auto & [sig, n] : h->t->last_graph_ops()) ops.Set(sig, n);
        Napi::Object o = Napi::Object::New(env);
        o.Set("ops", ops);
        o.Set("transientBytes", static_cast<double>(h->t->last_transient_bytes()));
        o.Set("computeBytes", static_cast<double>(h->t->compute_bytes()));
        return o;
    }
    Napi::Value accumulate(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        trainer_ptr h = use(env);
        auto batch = std::make_shared<train_batch>(batch_of(info[0].As<Napi::Object>()));
        const float scale = num(info[0].As<Napi::Object>(), "lossScale", 1.0f);
        auto loss = std::make_shared<double>(0.0);
        auto n = std::make_shared<int64_t>(0);
        return queue(env, "TrainerAccumulateWorker", ERR_LLAMA,
            [h, batch, scale, loss, n](std::string & err) {
                std::lock_guard<std::mutex> lock(h->mu);
                return h->t->accumulate(*batch, scale, *loss, *n, err);
            },
            [loss, n](Napi::Env e) {
                Napi::Object o = Napi::Object::New(e);
                o.Set("lossSum", *loss);
                o.Set("nTargets", static_cast<double>(*n));
                return o;
            });
    }
    Napi::Value step(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        trainer_ptr h = use(env);
        Napi::Object o = info[0].As<Napi::Object>();
        adamw_params p;
        p.lr = num(o, "lr", p.lr);
        p.beta1 = num(o, "beta1", p.beta1);
        p.beta2 = num(o, "beta2", p.beta2);
        p.eps = num(o, "eps", p.eps);
        p.weight_decay = num(o, "weightDecay", p.weight_decay);
        p.clip = num(o, "clip", p.clip);
        auto norm = std::make_shared<double>(0.0);
        auto step = std::make_shared<int64_t>(0);
        return queue(env, "TrainerStepWorker", "ERR_W2S_TRAIN_NONFINITE",
            [h, p, norm, step](std::string & err) {
                std::lock_guard<std::mutex> lock(h->mu);
                const bool ok = h->t->step(p, *norm, err);
                *step = h->t->step_count();
                return ok;
            },
            [norm, step](Napi::Env e) {
                Napi::Object r = Napi::Object::New(e);
                r.Set("gradNorm", *norm);
                r.Set("step", static_cast<double>(*step));
                return r;
            });
    }
    Napi::Value logprobs(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        trainer_ptr h = use(env);
        auto batch = std::make_shared<train_batch>(batch_of(info[0].As<Napi::Object>()));
        const bool use_lora = info[0].As<Napi::Object>().Get("useLora").ToBoolean().Value();
        auto out = std::make_shared<std::vector<double>>();
        return queue(env, "TrainerLogprobsWorker", ERR_LLAMA,
            [h, batch, use_lora, out](std::string & err) {
                std::lock_guard<std::mutex> lock(h->mu);
                return h->t->logprobs(*batch, use_lora, *out, err);
            },
            [out](Napi::Env e) {
                Napi::Float64Array a = Napi::Float64Array::New(e, out->size());
                std::copy(out->begin(), out->end(), a.Data());
                return a;
            });
    }
    // accumulatePairs({T, B, tokens, targets, kind: 'dpo' | 'orpo', beta, lambda, refLogps?, lossScale})
    //   -> Promise<{lossSum, logps: Float64Array}>
    Napi::Value accumulate_pairs(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        trainer_ptr h = use(env);
        Napi::Object o = info[0].As<Napi::Object>();
        auto batch = std::make_shared<train_batch>(batch_of(o));
        pref_params p;
        const std::string kind = o.Get("kind").ToString().Utf8Value();
        if (kind != "dpo" && kind != "orpo") throw make_error(env, ERR_INVALID, "accumulatePairs: kind must be 'dpo' or 'orpo', got '" + kind + "'");
        p.kind = kind == "dpo" ? pref_loss::dpo : pref_loss::orpo;
        p.beta = num(o, "beta", p.beta);
        p.lambda = num(o, "lambda", p.lambda);
        const float scale = num(o, "lossScale", 1.0f);
        auto ref = std::make_shared<std::vector<double>>();
        if (o.Get("refLogps").IsTypedArray()) {
            Napi::Float64Array a = o.Get("refLogps").As<Napi::Float64Array>();
            ref->assign(a.Data(), a.Data() + a.ElementLength());
        }
        auto res = std::make_shared<pref_result>();
        return queue(env, "TrainerAccumulatePairsWorker", ERR_LLAMA,
            [h, batch, p, ref, scale, res](std::string & err) {
                std::lock_guard<std::mutex> lock(h->mu);
                return h->t->accumulate_pairs(*batch, p, *ref, scale, *res, err);
            },
            [res](Napi::Env e) {
                Napi::Object r = Napi::Object::New(e);
                r.Set("lossSum", res->loss_sum);
                Napi::Float64Array a = Napi::Float64Array::New(e, res->logps.size());
                std::copy(res->logps.begin(), res->logps.end(), a.Data());
                r.Set("logps", a);
                return r;
            });
    }
    // sequenceLogprobs({T, B, tokens, targets, useLora}) -> Promise<Float64Array> (Σ log p per sequence)
    Napi::Value sequence_logprobs(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        trainer_ptr h = use(env);
        auto batch = std::make_shared<train_batch>(batch_of(info[0].As<Napi::Object>()));
        const bool use_lora = info[0].As<Napi::Object>().Get("useLora").ToBoolean().Value();
        auto out = std::make_shared<std::vector<double>>();
        return queue(env, "TrainerSequenceLogprobsWorker", ERR_LLAMA,
            [h, batch, use_lora, out](std::string & err) {
                std::lock_guard<std::mutex> lock(h->mu);
                return h->t->sequence_logprobs(*batch, use_lora, *out, err);
            },
            [out](Napi::Env e) {
                Napi::Float64Array a = Napi::Float64Array::New(e, out->size());
                std::copy(out->begin(), out->end(), a.Data());
                return a;
            });
    }
    Napi::Value save_adapter(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        trainer_ptr h = use(env);
        const std::string path = info[0].As<Napi::String>().Utf8Value();
        return queue(env, "TrainerSaveAdapterWorker", ERR_LLAMA,
            [h, path](std::string & err) {
                std::lock_guard<std::mutex> lock(h->mu);
                return h->t->save_adapter(path, err);
            }, nullptr);
    }
    Napi::Value save_checkpoint(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        trainer_ptr h = use(env);
        const std::string path = info[0].As<Napi::String>().Utf8Value();
        const std::string state = info[1].As<Napi::String>().Utf8Value();
        return queue(env, "TrainerSaveCheckpointWorker", ERR_LLAMA,
            [h, path, state](std::string & err) {
                std::lock_guard<std::mutex> lock(h->mu);
                return h->t->save_checkpoint(path, state, err);
            }, nullptr);
    }
    Napi::Value load_checkpoint(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        trainer_ptr h = use(env);
        const std::string path = info[0].As<Napi::String>().Utf8Value();
        auto state = std::make_shared<std::string>();
        return queue(env, "TrainerLoadCheckpointWorker", "ERR_W2S_CHECKPOINT",
            [h, path, state](std::string & err) {
                std::lock_guard<std::mutex> lock(h->mu);
                return h->t->load_checkpoint(path, *state, err);
            },
            [state](Napi::Env e) { return Napi::String::New(e, *state); });
    }
    Napi::Value get_params(const Napi::CallbackInfo & info) {
        trainer_ptr h = use(info.Env());
        std::lock_guard<std::mutex> lock(h->mu);
        std::vector<float> v = h->t->get_params();
        Napi::Float32Array a = Napi::Float32Array::New(info.Env(), v.size());
        std::copy(v.begin(), v.end(), a.Data());
        return a;
    }
    Napi::Value set_params(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        trainer_ptr h = use(env);
        std::lock_guard<std::mutex> lock(h->mu);
        Napi::Float32Array a = info[0].As<Napi::Float32Array>();
        if (a.ElementLength() != h->t->n_params()) throw make_error(env, ERR_INVALID, "setParams: wrong number of values");
        h->t->set_params(std::vector<float>(a.Data(), a.Data() + a.ElementLength()));
        return env.Undefined();
    }
    Napi::Value get_grads(const Napi::CallbackInfo & info) {
        trainer_ptr h = use(info.Env());
        std::lock_guard<std::mutex> lock(h->mu);
        std::vector<float> v = h->t->get_grads();
        Napi::Float32Array a = Napi::Float32Array::New(info.Env(), v.size());
        std::copy(v.begin(), v.end(), a.Data());
        return a;
    }
    Napi::Value clear_grads(const Napi::CallbackInfo & info) {
        trainer_ptr h = use(info.Env());
        std::lock_guard<std::mutex> lock(h->mu);
        h->t->clear_grads();
        return info.Env().Undefined();
    }
    Napi::Value dispose(const Napi::CallbackInfo & info) {
        handle.reset();  // a running job keeps its own reference
        return info.Env().Undefined();
    }
};

// createTrainer(modelPath, options) -> Promise<AddonTrainer>
Napi::Value create_trainer(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsString() || !info[1].IsObject()) {
        throw make_error(env, ERR_INVALID, "createTrainer(modelPath, options) expects a string and an object");
    }
    const std::string path = info[0].As<Napi::String>().Utf8Value();
    Napi::Object o = info[1].As<Napi::Object>();
    trainer_params p;
    p.rank = o.Get("rank").As<Napi::Number>().Int32Value();
    p.alpha = num(o, "alpha", 16.0f);
    p.dropout = num(o, "dropout", 0.0f);
    p.targets = o.Get("targets").As<Napi::Number>().Uint32Value();
    p.seed = static_cast<uint64_t>(o.Get("seed").As<Napi::Number>().DoubleValue());
    p.n_threads = o.Get("threads").As<Napi::Number>().Int32Value();
    if (o.Get("initAdapter").IsString()) p.init_adapter = o.Get("initAdapter").As<Napi::String>().Utf8Value();
    if (o.Get("gpu").IsString()) p.gpu = o.Get("gpu").As<Napi::String>().Utf8Value();
    if (o.Get("frozenGrad").IsString()) {
        const std::string m = o.Get("frozenGrad").As<Napi::String>().Utf8Value();
        if (m != "mul_mat" && m != "out_prod") throw make_error(env, ERR_INVALID, "frozenGrad must be 'mul_mat' or 'out_prod', got '" + m + "'");
        p.frozen_grad = m == "out_prod" ? frozen_grad_mode::out_prod : frozen_grad_mode::mul_mat;
    }
    if (o.Get("head").IsString()) {
        const std::string m = o.Get("head").As<Napi::String>().Utf8Value();
        if (m != "chunked" && m != "dense") throw make_error(env, ERR_INVALID, "head must be 'chunked' or 'dense', got '" + m + "'");
        p.head = m == "dense" ? head_mode::dense : head_mode::chunked;
    }
    if (o.Get("checkpointing").IsString()) {
        const std::string m = o.Get("checkpointing").As<Napi::String>().Utf8Value();
        if (m != "auto" && m != "on" && m != "off") throw make_error(env, ERR_INVALID, "checkpointing must be 'auto', 'on' or 'off', got '" + m + "'");
        p.checkpoint = m == "on" ? trainer_params::checkpointing::on : m == "off" ? trainer_params::checkpointing::off : trainer_params::checkpointing::auto_;
    }
    if (o.Get("smoothForward").IsBoolean()) p.smooth_forward = o.Get("smoothForward").As<Napi::Boolean>().Value();
    if (o.Get("cpuOutProd").IsBoolean()) p.cpu_out_prod = o.Get("cpuOutProd").As<Napi::Boolean>().Value();
    if (o.Get("cpuGemm").IsBoolean()) p.cpu_gemm = o.Get("cpuGemm").As<Napi::Boolean>().Value();
    for (const auto & [key, field] : {std::pair<const char *, size_t *>{"headChunkBytes", &p.head_chunk_bytes},
                                      std::pair<const char *, size_t *>{"transposeChunkBytes", &p.transpose_chunk_bytes},
                                      std::pair<const char *, size_t *>{"checkpointAutoBytes", &p.checkpoint_auto_bytes}}) {
        Napi::Value v = o.Get(key);
        if (v.IsUndefined()) continue;
        const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
        if (!(d >= 1 && d <= 9.0e15)) throw make_error(env, ERR_INVALID, std::string(key) + " must be a positive number of bytes");
        *field = static_cast<size_t>(d);
    }
    auto out = std::make_shared<trainer_ptr>();
    Napi::FunctionReference * ctor = &env.GetInstanceData<instance_data>()->trainer_ctor;
    return queue(env, "TrainerCreateWorker", "ERR_W2S_TRAIN_SETUP",
        [path, p, out](std::string & err) {
            auto t = trainer::create(path, p, err);
            if (!t) return false;
            *out = std::make_shared<trainer_handle>();
            (*out)->t = std::move(t);
            return true;
        },
        [out, ctor](Napi::Env e) {
            Napi::Object obj = ctor->New({});
            AddonTrainer::Unwrap(obj)->handle = *out;
            return static_cast<Napi::Value>(obj);
        });
}

Napi::Function define_trainer(Napi::Env env) { return AddonTrainer::define(env); }

}  // namespace w2s
