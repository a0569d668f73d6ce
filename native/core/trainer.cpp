// LoRA training session: graphs are rebuilt per call (shapes change with T and B) and run through the
// backend scheduler; parameters, gradient accumulators and moments stay in their own buffers.
#include "trainer.h"

#include <cmath>
#include <cstring>

#include "backend.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "train_graph.h"

namespace w2s {
namespace {

// A no_alloc context for one graph's tensor metadata, freed at scope exit.
struct compute_ctx {
    ggml_context * ctx;
    explicit compute_ctx(size_t graph_size)
        : ctx(ggml_init({ggml_tensor_overhead() * graph_size * 2 + ggml_graph_overhead_custom(graph_size, true), nullptr, true})) {}
    ~compute_ctx() { ggml_free(ctx); }
};

void set_threads(ggml_backend_t backend, int n) {
    ggml_backend_dev_t dev = ggml_backend_get_device(backend);
    ggml_backend_reg_t reg = dev ? ggml_backend_dev_backend_reg(dev) : nullptr;
    if (!reg) return;
    auto fn = reinterpret_cast<void (*)(ggml_backend_t, int)>(ggml_backend_reg_get_proc_address(reg, "ggml_backend_set_n_threads"));
    if (fn) fn(backend, n);
}

}  // namespace

trainer::~trainer() {
    lora_.reset();
    model_.reset();
    if (sched_) ggml_backend_sched_free(sched_);
    if (backend_ && backend_ != cpu_) ggml_backend_free(backend_);
    if (cpu_) ggml_backend_free(cpu_);
}

std::unique_ptr<trainer> trainer::create(const std::string & model_path, const trainer_params & p, std::string & err) {
    std::unique_ptr<trainer> t(new trainer());
    t->params_ = p;
    t->cpu_ = ggml_backend_init_by_type(GGML_BACKEND_DEVICE_TYPE_CPU, nullptr);
    if (!t->cpu_) {
        err = "ggml_backend_init_by_type(CPU) failed: are the backends loaded?";
        return nullptr;
    }
    set_threads(t->cpu_, p.n_threads);
    // A GPU when the build has one (from-source CUDA builds); the CPU otherwise.
    ggml_backend_dev_t gpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_GPU);
    t->backend_ = gpu ? ggml_backend_dev_init(gpu, nullptr) : nullptr;
    if (!t->backend_) t->backend_ = t->cpu_;

    t->model_ = load_train_model(model_path, t->backend_, err);
    if (!t->model_) return nullptr;
    if (!p.init_adapter.empty()) {
        t->lora_ = load_lora_adapter(*t->model_, p.init_adapter, t->backend_, err);
    } else {
        t->lora_ = create_lora(*t->model_, p.rank, p.alpha, p.targets, p.seed, t->backend_, err);
    }
    if (!t->lora_) return nullptr;

    t->graph_size_ = 4096 + static_cast<size_t>(t->model_->hp.n_layer) * 1024;
    ggml_backend_t backends[2] = {t->backend_, t->cpu_};
    const int n_backends = t->backend_ == t->cpu_ ? 1 : 2;
    t->sched_ = ggml_backend_sched_new(backends, nullptr, n_backends, t->graph_size_, false, true);
    if (!t->sched_) {
        err = "ggml_backend_sched_new failed";
        return nullptr;
    }
    return t;
}

std::string trainer::backend_name() const { return ggml_backend_name(backend_); }

size_t trainer::n_params() const {
    size_t n = 0;
    for (const auto & p : lora_->pairs) n += ggml_nelements(p.a) + ggml_nelements(p.b);
    return n;
}

bool trainer::check_batch(const train_batch & b, std::string & err) const {
    const size_t n = static_cast<size_t>(b.T * b.B);
    if (b.T <= 0 || b.B <= 0 || b.tokens.size() != n || b.targets.size() != n) {
        err = "batch shape mismatch: T " + std::to_string(b.T) + ", B " + std::to_string(b.B) + ", " +
              std::to_string(b.tokens.size()) + " tokens, " + std::to_string(b.targets.size()) + " targets";
        return false;
    }
    const int32_t n_vocab = model_->hp.n_vocab;
    for (size_t i = 0; i < n; ++i) {
        if (b.tokens[i] < 0 || b.tokens[i] >= n_vocab || b.targets[i] < -1 || b.targets[i] >= n_vocab) {
            err = "token id out of range [0, " + std::to_string(n_vocab) + ") at batch index " + std::to_string(i);
            return false;
        }
    }
    return true;
}

bool trainer::accumulate(const train_batch & batch, float loss_scale, double & loss_sum, int64_t & n_targets, std::string & err) {
    if (!check_batch(batch, err)) return false;
    const int64_t V = model_->hp.n_vocab;
    std::vector<int32_t> rows;
    for (size_t i = 0; i < batch.targets.size(); ++i) {
        if (batch.targets[i] >= 0) rows.push_back(static_cast<int32_t>(i));
    }
    const int64_t N = static_cast<int64_t>(rows.size());
    n_targets = N;
    loss_sum = 0.0;
    if (N == 0) return true;

    compute_ctx cc(graph_size_);
    graph_inputs in;
    ggml_tensor * logits = build_logits(cc.ctx, *model_, lora_.get(), lora_->scale(), batch.T, batch.B, N, params_.dropout > 0.0f, in);
    // Cross-entropy against one-hot labels of the N target rows; ggml's loss is their mean, so N·loss is
    // the sum of -log p(target).
    ggml_tensor * labels = ggml_new_tensor_2d(cc.ctx, GGML_TYPE_F32, V, N);
    ggml_set_input(labels);
    ggml_tensor * ce = ggml_cross_entropy_loss(cc.ctx, logits, labels);
    ggml_tensor * loss = ggml_scale(cc.ctx, ce, static_cast<float>(N) * loss_scale);
    ggml_set_output(ce);
    ggml_set_loss(loss);

    ggml_cgraph * gf = ggml_new_graph_custom(cc.ctx, graph_size_, true);
    ggml_build_forward_expand(gf, loss);
    // Gradients of our parameters go straight into the persistent accumulators (added in place).
    std::vector<ggml_tensor *> accs(ggml_graph_n_nodes(gf), nullptr);
    for (int i = 0; i < ggml_graph_n_nodes(gf); ++i) {
        ggml_tensor * node = ggml_graph_node(gf, i);
        for (const auto & p : lora_->pairs) {
            if (node == p.a) accs[i] = p.ga;
            if (node == p.b) accs[i] = p.gb;
        }
    }
    ggml_build_backward_expand(cc.ctx, gf, accs.data());

    ggml_backend_sched_reset(sched_);
    if (!ggml_backend_sched_alloc_graph(sched_, gf)) {
        err = "ggml_backend_sched_alloc_graph failed (out of memory for T " + std::to_string(batch.T) + " × B " +
              std::to_string(batch.B) + "?)";
        return false;
    }
    set_graph_inputs(in, batch.tokens, rows, batch.T, batch.B, params_.dropout, params_.seed + static_cast<uint64_t>(step_), micro_);
    std::vector<float> onehot(static_cast<size_t>(V * N), 0.0f);
    for (int64_t i = 0; i < N; ++i) onehot[static_cast<size_t>(i * V + batch.targets[rows[i]])] = 1.0f;
    ggml_backend_tensor_set(labels, onehot.data(), 0, onehot.size() * sizeof(float));
    const float one = 1.0f;
    ggml_backend_tensor_set(ggml_graph_get_grad_acc(gf, loss), &one, 0, sizeof(float));
    if (ggml_backend_sched_graph_compute(sched_, gf) != GGML_STATUS_SUCCESS) {
        err = "ggml_backend_sched_graph_compute failed";
        return false;
    }
    float ce_mean = 0.0f;
    ggml_backend_tensor_get(ce, &ce_mean, 0, sizeof(float));
    loss_sum = static_cast<double>(ce_mean) * static_cast<double>(N);
    micro_ += 1;
    return true;
}

bool trainer::step(const adamw_params & p, double & grad_norm, std::string & err) {
    // 1. Global gradient norm (one scalar back to the host).
    {
        compute_ctx cc(graph_size_);
        ggml_tensor * sum = nullptr;
        for (const auto & pr : lora_->pairs) {
            for (ggml_tensor * g : {pr.ga, pr.gb}) {
                ggml_tensor * s = ggml_sum(cc.ctx, ggml_sqr(cc.ctx, g));
                sum = sum ? ggml_add(cc.ctx, sum, s) : s;
            }
        }
        ggml_set_output(sum);
        ggml_cgraph * gf = ggml_new_graph_custom(cc.ctx, graph_size_, false);
        ggml_build_forward_expand(gf, sum);
        ggml_backend_sched_reset(sched_);
        if (!ggml_backend_sched_alloc_graph(sched_, gf) || ggml_backend_sched_graph_compute(sched_, gf) != GGML_STATUS_SUCCESS) {
            err = "computing the gradient norm failed";
            return false;
        }
        float sq = 0.0f;
        ggml_backend_tensor_get(sum, &sq, 0, sizeof(float));
        grad_norm = std::sqrt(static_cast<double>(sq));
    }
    if (!std::isfinite(grad_norm)) {
        err = "the gradient is not finite (norm " + std::to_string(grad_norm) + "); the step was not applied";
        clear_grads();
        return false;
    }
    // 2. AdamW with the clipped gradient: g · min(1, clip / norm).
    const float gscale = p.clip > 0.0f && grad_norm > p.clip ? static_cast<float>(p.clip / grad_norm) : 1.0f;
    step_ += 1;
    {
        compute_ctx cc(graph_size_);
        ggml_tensor * hp = ggml_new_tensor_1d(cc.ctx, GGML_TYPE_F32, 7);
        ggml_set_input(hp);
        ggml_cgraph * gf = ggml_new_graph_custom(cc.ctx, graph_size_, false);
        for (const auto & pr : lora_->pairs) {
            ggml_build_forward_expand(gf, ggml_opt_step_adamw(cc.ctx, pr.a, ggml_scale(cc.ctx, pr.ga, gscale), pr.ma, pr.va, hp));
            ggml_build_forward_expand(gf, ggml_opt_step_adamw(cc.ctx, pr.b, ggml_scale(cc.ctx, pr.gb, gscale), pr.mb, pr.vb, hp));
        }
        ggml_backend_sched_reset(sched_);
        if (!ggml_backend_sched_alloc_graph(sched_, gf)) {
            err = "allocating the optimizer graph failed";
            return false;
        }
        const float t = static_cast<float>(step_);
        const float h[7] = {p.lr, p.beta1, p.beta2, p.eps, p.weight_decay,
                            1.0f / (1.0f - std::pow(p.beta1, t)), 1.0f / (1.0f - std::pow(p.beta2, t))};
        ggml_backend_tensor_set(hp, h, 0, sizeof(h));
        if (ggml_backend_sched_graph_compute(sched_, gf) != GGML_STATUS_SUCCESS) {
            err = "the optimizer step failed";
            return false;
        }
    }
    clear_grads();
    return true;
}

void trainer::clear_grads() {
    ggml_backend_buffer_clear(lora_->buf_grad, 0);
    micro_ = 0;
}

bool trainer::logprobs(const train_batch & batch, bool use_lora, std::vector<double> & out, std::string & err) {
    if (!check_batch(batch, err)) return false;
    const int64_t V = model_->hp.n_vocab;
    std::vector<int32_t> rows;
    for (size_t i = 0; i < batch.targets.size(); ++i) {
        if (batch.targets[i] >= 0) rows.push_back(static_cast<int32_t>(i));
    }
    const int64_t N = static_cast<int64_t>(rows.size());
    out.clear();
    if (N == 0) return true;
    compute_ctx cc(graph_size_);
    graph_inputs in;
    ggml_tensor * logits = build_logits(cc.ctx, *model_, use_lora ? lora_.get() : nullptr, lora_->scale(), batch.T, batch.B, N, false, in);
    ggml_set_output(logits);
    ggml_cgraph * gf = ggml_new_graph_custom(cc.ctx, graph_size_, false);
    ggml_build_forward_expand(gf, logits);
    ggml_backend_sched_reset(sched_);
    if (!ggml_backend_sched_alloc_graph(sched_, gf)) {
        err = "ggml_backend_sched_alloc_graph failed";
        return false;
    }
    set_graph_inputs(in, batch.tokens, rows, batch.T, batch.B, 0.0f, 0, 0);
    if (ggml_backend_sched_graph_compute(sched_, gf) != GGML_STATUS_SUCCESS) {
        err = "ggml_backend_sched_graph_compute failed";
        return false;
    }
    std::vector<float> host(static_cast<size_t>(V * N));
    ggml_backend_tensor_get(logits, host.data(), 0, host.size() * sizeof(float));
    for (int64_t i = 0; i < N; ++i) {
        const int32_t target = batch.targets[rows[i]];
        const float * row = host.data() + i * V;
        double mx = row[0];
        for (int64_t j = 1; j < V; ++j) mx = std::max(mx, static_cast<double>(row[j]));
        double s = 0.0;
        for (int64_t j = 0; j < V; ++j) s += std::exp(static_cast<double>(row[j]) - mx);
        out.push_back(static_cast<double>(row[target]) - mx - std::log(s));
    }
    return true;
}

bool trainer::save_adapter(const std::string & path, std::string & err) const {
    return save_lora_adapter(*model_, *lora_, path, err);
}

bool trainer::save_checkpoint(const std::string & path, const std::string & state, std::string & err) const {
    return w2s::save_checkpoint(*model_, *lora_, step_, state, path, err);
}

bool trainer::load_checkpoint(const std::string & path, std::string & state, std::string & err) {
    int64_t step = 0;
    auto l = w2s::load_checkpoint(*model_, path, backend_, step, state, err);
    if (!l) return false;
    lora_ = std::move(l);
    step_ = step;
    micro_ = 0;
    return true;
}

std::vector<float> trainer::get_params() const {
    std::vector<float> v;
    for (const auto & p : lora_->pairs) {
        for (const ggml_tensor * t : {p.a, p.b}) {
            const size_t off = v.size();
            v.resize(off + ggml_nelements(t));
            ggml_backend_tensor_get(t, v.data() + off, 0, ggml_nbytes(t));
        }
    }
    return v;
}

void trainer::set_params(const std::vector<float> & v) {
    size_t off = 0;
    for (const auto & p : lora_->pairs) {
        for (ggml_tensor * t : {p.a, p.b}) {
            ggml_backend_tensor_set(t, v.data() + off, 0, ggml_nbytes(t));
            off += ggml_nelements(t);
        }
    }
}

std::vector<float> trainer::get_grads() const {
    std::vector<float> v;
    for (const auto & p : lora_->pairs) {
        for (const ggml_tensor * t : {p.ga, p.gb}) {
            const size_t off = v.size();
            v.resize(off + ggml_nelements(t));
            ggml_backend_tensor_get(t, v.data() + off, 0, ggml_nbytes(t));
        }
    }
    return v;
}

}  // namespace w2s
