// LoRA training session: graphs are rebuilt per call (shapes change with T and B) and run through the
// backend scheduler; parameters, gradient accumulators and moments stay in their own buffers.
#include "trainer.h"

#include <cmath>
#include <cstring>

#include "backend.h"
#include "cpu_gemm.h"
#include "cpu_out_prod.h"
#include "frozen_grad.h"
#include "graph_ctx.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "train_graph.h"

namespace w2s {
namespace {

// Batch positions (b*T + t) that have a target: the rows whose logits the graph computes.
std::vector<int32_t> target_rows(const train_batch & batch) {
    std::vector<int32_t> rows;
    for (size_t i = 0; i < batch.targets.size(); ++i) {
        if (batch.targets[i] >= 0) rows.push_back(static_cast<int32_t>(i));
    }
    return rows;
}

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
    // The frozen base, LoRA state and graphs on a GPU when the build has one and p.gpu allows it (the CPU
    // backend takes the ops the GPU refuses); the CPU otherwise.
    std::vector<ggml_backend_dev_t> gpus;
    if (!pick_gpus(p.gpu, gpus, err)) return nullptr;
    t->backend_ = gpus.empty() ? nullptr : ggml_backend_dev_init(gpus[0], nullptr);
    if (!gpus.empty() && !t->backend_) {
        err = std::string("ggml_backend_dev_init failed for ") + ggml_backend_dev_name(gpus[0]);
        return nullptr;
    }
    if (!t->backend_) t->backend_ = t->cpu_;

    t->model_ = load_train_model(model_path, t->backend_, p.frozen_grad == frozen_grad_mode::out_prod, err);
    if (!t->model_) return nullptr;
    if (!p.init_adapter.empty()) {
        t->lora_ = load_lora_adapter(*t->model_, p.init_adapter, t->backend_, err);
    } else {
        t->lora_ = create_lora(*t->model_, p.rank, p.alpha, p.targets, p.seed, t->backend_, err);
    }
    if (!t->lora_) return nullptr;

    t->graph_size_ = 4096 + static_cast<size_t>(t->model_->hp.n_layer) * 1024;
    // After the weights are loaded: a GPU's free memory then excludes them.
    t->checkpoint_auto_bytes_ = p.checkpoint_auto_bytes > 0 ? p.checkpoint_auto_bytes : checkpoint_auto_budget(t->backend_);
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

size_t trainer::compute_bytes() const {
    size_t n = ggml_backend_sched_get_buffer_size(sched_, backend_);
    if (cpu_ != backend_) n += ggml_backend_sched_get_buffer_size(sched_, cpu_);
    return n;
}

size_t trainer::n_params() const {
    size_t n = 0;
    for (const auto & p : lora_->pairs) n += ggml_nelements(p.a) + ggml_nelements(p.b);
    return n;
}

void trainer::finish_swaps(graph_inputs & in) const {
    if (params_.smooth_forward) in.swaps.clear();
    else apply_forward_swaps(in);
}

bool trainer::check_batch(const train_batch & b, std::string & err) const {
    const size_t n = static_cast<size_t>(b.T * b.B);
    if (b.T <= 0 || b.B <= 0 || b.tokens.size() != n || b.targets.size() != n) {
        err = "batch shape mismatch: T " + std::to_string(b.T) + ", B " + std::to_string(b.B) + ", " +
              std::to_string(b.tokens.size()) + " tokens, " + std::to_string(b.targets.size()) + " targets";
        return false;
    }
    const train_hparams & hp = model_->hp;
    if (hp.n_swa > 0 && !hp.swa_in_graph && b.T > hp.n_swa) {
        err = "a sequence of " + std::to_string(b.T) + " tokens is longer than the sliding attention window of " + std::to_string(hp.n_swa) +
              " tokens that the model declares (" + hp.swa_key + "), which the training graph does not implement for " + hp.arch +
              " (llama.cpp ignores it too); sequences this long cannot be trained: lower the maximum length (maxLen, --max-len) to at most " +
              std::to_string(hp.n_swa) + " tokens";
        return false;
    }
    const int32_t n_vocab = hp.n_vocab;
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
    if (chunked_head()) return accumulate_chunked(batch, loss_scale, loss_sum, n_targets, err);
    const int64_t V = model_->hp.n_vocab;
    const std::vector<int32_t> rows = target_rows(batch);
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

    const bool ok = run_backward(cc.ctx, loss, graph_size_, [&]() {
        set_graph_inputs(in, batch.tokens, rows, batch.T, batch.B, params_.dropout, params_.seed + static_cast<uint64_t>(step_), micro_);
        std::vector<float> onehot(static_cast<size_t>(V * N), 0.0f);
        for (int64_t i = 0; i < N; ++i) onehot[static_cast<size_t>(i * V + batch.targets[rows[i]])] = 1.0f;
        ggml_backend_tensor_set(labels, onehot.data(), 0, onehot.size() * sizeof(float));
    }, "T " + std::to_string(batch.T) + " × B " + std::to_string(batch.B), err, {}, {}, nullptr, &in);
    if (!ok) return false;
    if (reserve_only_) return true;
    float ce_mean = 0.0f;
    ggml_backend_tensor_get(ce, &ce_mean, 0, sizeof(float));
    loss_sum = static_cast<double>(ce_mean) * static_cast<double>(N);
    micro_ += 1;
    return true;
}

void trainer::use_cpu_kernels(ggml_context * ctx, ggml_cgraph * gf) const {
    if (params_.frozen_grad != frozen_grad_mode::mul_mat || ggml_backend_dev_type(ggml_backend_get_device(backend_)) != GGML_BACKEND_DEVICE_TYPE_CPU) return;
    if (params_.cpu_out_prod) use_cpu_out_prod(ctx, gf);
    if (params_.cpu_gemm) use_cpu_gemm(ctx, gf);
}

bool trainer::run_backward(ggml_context * ctx, ggml_tensor * loss, size_t graph_size, const std::function<void()> & set_inputs,
                           const std::string & what, std::string & err, const std::vector<ggml_tensor *> & order,
                           const grad_seeds & seeds, ggml_tensor * iota, graph_inputs * swaps) {
    ggml_cgraph * gf = ggml_new_graph_custom(ctx, graph_size, true);
    for (ggml_tensor * t : order) ggml_build_forward_expand(gf, t);
    for (const auto & sd : seeds) {
        if (sd.second->op != GGML_OP_NONE) ggml_build_forward_expand(gf, sd.second);
    }
    ggml_build_forward_expand(gf, loss);
    // Gradients of our parameters go straight into the persistent accumulators (added in place). A node's
    // entry in `accs` becomes its gradient: for a seed's node that is the seed's tensor, so autodiff starts
    // the backward there (nothing downstream gets a gradient: `loss` does not depend on it).
    std::vector<ggml_tensor *> accs(ggml_graph_n_nodes(gf), nullptr);
    for (int i = 0; i < ggml_graph_n_nodes(gf); ++i) {
        ggml_tensor * node = ggml_graph_node(gf, i);
        for (const auto & sd : seeds) {
            if (node == sd.first) accs[i] = sd.second;
        }
        for (const auto & p : lora_->pairs) {
            if (node == p.a) accs[i] = p.ga;
            if (node == p.b) accs[i] = p.gb;
        }
    }
    ggml_build_backward_expand(ctx, gf, accs.data());
    if (swaps) finish_swaps(*swaps);  // the forward values become llama.cpp's ops (train_graph.h)
    ggml_tensor * loss_grad = ggml_graph_get_grad_acc(gf, loss);
    frozen_grad_graph fg;
    fg.graph = gf;
    if (params_.frozen_grad == frozen_grad_mode::mul_mat) {
        std::vector<ggml_tensor *> frozen{model_->output};
        for (const auto & L : model_->layers) frozen.insert(frozen.end(), std::begin(L.w), std::end(L.w));
        fg = rewrite_frozen_grads(ctx, gf, frozen, graph_size, params_.transpose_chunk_bytes, iota);
    }
    // The op audit (GPU supports_op) sees the portable graph; the CPU-only kernel swap comes after it.
    last_graph_ops_ = graph_op_signatures(fg.graph);
    last_transient_bytes_ = fg.transient_bytes;
    use_cpu_kernels(ctx, fg.graph);
    ggml_backend_sched_reset(sched_);
    if (reserve_only_) {
        if (!ggml_backend_sched_reserve(sched_, fg.graph)) {
            err = "reserving the compute buffers failed (out of memory for " + what + ")";
            return false;
        }
        return true;
    }
    if (!ggml_backend_sched_alloc_graph(sched_, fg.graph)) {
        err = "ggml_backend_sched_alloc_graph failed (out of memory for " + what + "?)";
        return false;
    }
    set_inputs();
    set_iota(fg.iota);
    const float one = 1.0f;
    // (With a placeholder loss nothing reads its gradient, and it has no buffer.)
    if (loss_grad->buffer) ggml_backend_tensor_set(loss_grad, &one, 0, sizeof(float));
    if (ggml_backend_sched_graph_compute(sched_, fg.graph) != GGML_STATUS_SUCCESS) {
        err = "ggml_backend_sched_graph_compute failed";
        return false;
    }
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

bool trainer::plan(int64_t T, int64_t B, bool pairs, memory_plan & out, std::string & err) {
    if (T < 2 || B < 1 || (pairs && B % 2 != 0)) {
        err = "plan: a shape of T >= 2 tokens and B >= 1 sequences (even for pairs) is needed, got T " + std::to_string(T) + ", B " + std::to_string(B);
        return false;
    }
    train_batch b;
    b.T = T;
    b.B = B;
    b.tokens.assign(static_cast<size_t>(T * B), 0);
    b.targets.assign(static_cast<size_t>(T * B), 0);
    for (int64_t s = 0; s < B; ++s) b.targets[s * T + T - 1] = -1;
    out = memory_plan();
    out.weights = ggml_backend_buffer_get_size(model_->buf);
    for (ggml_backend_buffer_t buf : {lora_->buf_param, lora_->buf_grad, lora_->buf_moment}) out.lora += buf ? ggml_backend_buffer_get_size(buf) : 0;
    out.checkpointing = chunked_head() && use_checkpointing(b);
    if (out.checkpointing) out.checkpoints = static_cast<size_t>(model_->hp.n_layer + 3) * static_cast<size_t>(T * B) * model_->hp.n_embd * sizeof(float);
    ggml_backend_dev_t dev = ggml_backend_get_device(backend_);
    out.device = dev ? ggml_backend_dev_description(dev) : ggml_backend_name(backend_);
    if (dev) ggml_backend_dev_memory(dev, &out.device_free, &out.device_total);
    // Reserve in a scheduler of its own so that the measure is this shape's alone.
    ggml_backend_sched_t keep = sched_;
    const size_t keep_size = sched_size_;
    ggml_backend_t backends[2] = {backend_, cpu_};
    sched_ = ggml_backend_sched_new(backends, nullptr, backend_ == cpu_ ? 1 : 2, graph_size_, false, true);
    sched_size_ = 0;
    reserve_only_ = true;
    bool ok = false;
    if (pairs) {
        pref_result r;
        ok = accumulate_pairs(b, pref_params(), std::vector<double>(static_cast<size_t>(B), 0.0), 1.0f, r, err);
    } else {
        double loss = 0.0;
        int64_t n = 0;
        ok = accumulate(b, 1.0f, loss, n, err);
    }
    reserve_only_ = false;
    out.compute = compute_bytes();
    ggml_backend_sched_free(sched_);
    sched_ = keep;
    sched_size_ = keep_size;
    return ok;
}

void trainer::clear_grads() {
    ggml_backend_buffer_clear(lora_->buf_grad, 0);
    micro_ = 0;
}

bool trainer::logprobs(const train_batch & batch, bool use_lora, std::vector<double> & out, std::string & err) {
    if (!check_batch(batch, err)) return false;
    if (chunked_head()) return row_logprobs_chunked(batch, use_lora, out, err);
    const int64_t V = model_->hp.n_vocab;
    const std::vector<int32_t> rows = target_rows(batch);
    const int64_t N = static_cast<int64_t>(rows.size());
    out.clear();
    if (N == 0) return true;
    compute_ctx cc(graph_size_);
    graph_inputs in;
    ggml_tensor * logits = build_logits(cc.ctx, *model_, use_lora ? lora_.get() : nullptr, lora_->scale(), batch.T, batch.B, N, false, in);
    finish_swaps(in);
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

namespace {

// All values of the given tensor pair members of every LoRA pair, flattened in pair order (F32).
std::vector<float> flatten(const lora_set & l, ggml_tensor * lora_pair::*first, ggml_tensor * lora_pair::*second) {
    std::vector<float> v;
    for (const auto & p : l.pairs) {
        for (const ggml_tensor * t : {p.*first, p.*second}) {
            const size_t off = v.size();
            v.resize(off + ggml_nelements(t));
            ggml_backend_tensor_get(t, v.data() + off, 0, ggml_nbytes(t));
        }
    }
    return v;
}

}  // namespace

std::vector<float> trainer::get_params() const { return flatten(*lora_, &lora_pair::a, &lora_pair::b); }

void trainer::set_params(const std::vector<float> & v) {
    size_t off = 0;
    for (const auto & p : lora_->pairs) {
        for (ggml_tensor * t : {p.a, p.b}) {
            ggml_backend_tensor_set(t, v.data() + off, 0, ggml_nbytes(t));
            off += ggml_nelements(t);
        }
    }
}

std::vector<float> trainer::get_grads() const { return flatten(*lora_, &lora_pair::ga, &lora_pair::gb); }

// ---- Preference optimisation -----------------------------------------------------------------------------

namespace {

// Targets of a batch grouped by sequence: rows[] are positions b*T + t in order (so each sequence's rows are
// contiguous), offset[b]/count[b] the range of sequence b within rows[].
struct seq_layout {
    std::vector<int32_t> rows;
    std::vector<int64_t> offset, count;
};

seq_layout layout_of(const train_batch & b) {
    seq_layout L;
    L.offset.assign(static_cast<size_t>(b.B), 0);
    L.count.assign(static_cast<size_t>(b.B), 0);
    for (int64_t s = 0; s < b.B; ++s) {
        L.offset[s] = static_cast<int64_t>(L.rows.size());
        for (int64_t t = 0; t < b.T; ++t) {
            if (b.targets[s * b.T + t] >= 0) L.rows.push_back(static_cast<int32_t>(s * b.T + t));
        }
        L.count[s] = static_cast<int64_t>(L.rows.size()) - L.offset[s];
    }
    return L;
}

// Per sequence with targets: ce_s = -(1/n_s)·Σ log p(target) (F32 [1]) from the sequence's columns of `hidden`
// ([n_embd, R]) projected by the output matrix against its rows of the one-hot `labels` ([n_vocab, R]). Each
// projection sees whole one-hot rows, which CROSS_ENTROPY_LOSS's backward requires; the gradient flows back
// through a view of the small hidden states, not of the [n_vocab, R] logits. nullptr for empty sequences.
std::vector<ggml_tensor *> build_seq_ce(ggml_context * ctx, const train_model & m, const lora_set * lora, float lora_scale,
                                        ggml_tensor * hidden, ggml_tensor * labels, const seq_layout & L) {
    std::vector<ggml_tensor *> ce(L.count.size(), nullptr);
    for (size_t s = 0; s < L.count.size(); ++s) {
        const int64_t n = L.count[s], off = L.offset[s];
        if (n == 0) continue;
        ggml_tensor * h = ggml_view_2d(ctx, hidden, hidden->ne[0], n, hidden->nb[1], off * hidden->nb[1]);  // [n_embd, n]
        ggml_tensor * lab = ggml_view_2d(ctx, labels, labels->ne[0], n, labels->nb[1], off * labels->nb[1]);  // [n_vocab, n]
        ce[s] = ggml_cross_entropy_loss(ctx, project_output(ctx, m, lora, lora_scale, h), lab);
        ggml_set_output(ce[s]);
    }
    return ce;
}

void set_onehot(ggml_tensor * labels, const train_batch & b, const seq_layout & L, int64_t V) {
    std::vector<float> onehot(L.rows.size() * static_cast<size_t>(V), 0.0f);
    for (size_t i = 0; i < L.rows.size(); ++i) onehot[i * V + b.targets[L.rows[i]]] = 1.0f;
    ggml_backend_tensor_set(labels, onehot.data(), 0, onehot.size() * sizeof(float));
}

// log odds(ℓ̄) = m - log(1 - exp(m)) with m = min(ℓ̄, ORPO_MAX_MEAN_LOGP), from ce = -ℓ̄ (F32 [1]).
// min(ℓ̄, c) = c - relu(c - ℓ̄) = c - relu(ce + c) keeps a backward pass (ggml has none for CLAMP).
ggml_tensor * log_odds(ggml_context * ctx, ggml_tensor * ce) {
    const float c = ORPO_MAX_MEAN_LOGP;
    ggml_tensor * m = ggml_scale_bias(ctx, ggml_relu(ctx, ggml_scale_bias(ctx, ce, 1.0f, c)), -1.0f, c);
    ggml_tensor * log1m_p = ggml_log(ctx, ggml_scale_bias(ctx, ggml_exp(ctx, m), -1.0f, 1.0f));
    return ggml_sub(ctx, m, log1m_p);
}

}  // namespace

bool trainer::ensure_sched(size_t graph_size, std::string & err) {
    if (graph_size <= (sched_size_ ? sched_size_ : graph_size_)) return true;
    ggml_backend_t backends[2] = {backend_, cpu_};
    const int n_backends = backend_ == cpu_ ? 1 : 2;
    ggml_backend_sched_t s = ggml_backend_sched_new(backends, nullptr, n_backends, graph_size, false, true);
    if (!s) {
        err = "ggml_backend_sched_new failed (graph of " + std::to_string(graph_size) + " nodes)";
        return false;
    }
    ggml_backend_sched_free(sched_);
    sched_ = s;
    sched_size_ = graph_size;
    return true;
}

bool trainer::accumulate_pairs(const train_batch & batch, const pref_params & p, const std::vector<double> & ref_logps,
                               float loss_scale, pref_result & out, std::string & err) {
    if (!check_batch(batch, err)) return false;
    if (batch.B % 2 != 0) {
        err = "a pair batch needs an even number of sequences (chosen, rejected per pair), got " + std::to_string(batch.B);
        return false;
    }
    const bool dpo = p.kind == pref_loss::dpo;
    if (dpo && !(std::isfinite(p.beta) && p.beta > 0.0f)) {
        err = "DPO beta must be a positive finite number, got " + std::to_string(p.beta);
        return false;
    }
    if (!dpo && !(std::isfinite(p.lambda) && p.lambda >= 0.0f)) {
        err = "ORPO lambda must be a non-negative finite number, got " + std::to_string(p.lambda);
        return false;
    }
    if (!std::isfinite(loss_scale)) {
        err = "loss_scale must be finite";
        return false;
    }
    if (dpo && ref_logps.size() != static_cast<size_t>(batch.B)) {
        err = "DPO needs one reference log-prob per sequence: " + std::to_string(ref_logps.size()) + " for " +
              std::to_string(batch.B) + " sequences";
        return false;
    }
    for (double r : dpo ? ref_logps : std::vector<double>()) {
        if (!std::isfinite(r)) {
            err = "a reference log-prob is not finite";
            return false;
        }
    }
    const seq_layout L = layout_of(batch);
    for (int64_t s = 0; s < batch.B; ++s) {
        if (L.count[s] == 0) {
            err = "sequence " + std::to_string(s) + " of the pair batch has no targets (empty response?)";
            return false;
        }
    }
    if (chunked_head()) return accumulate_pairs_chunked(batch, p, ref_logps, loss_scale, out, err);
    const int64_t V = model_->hp.n_vocab, R = static_cast<int64_t>(L.rows.size()), P = batch.B / 2;

    const size_t cap = graph_size_ + 256 * static_cast<size_t>(batch.B);
    if (!ensure_sched(cap, err)) return false;
    compute_ctx cc(cap);
    graph_inputs in;
    ggml_tensor * hidden = build_hidden(cc.ctx, *model_, lora_.get(), lora_->scale(), batch.T, batch.B, R, params_.dropout > 0.0f, in);
    ggml_tensor * labels = ggml_new_tensor_2d(cc.ctx, GGML_TYPE_F32, V, R);
    ggml_set_input(labels);
    const std::vector<ggml_tensor *> ce = build_seq_ce(cc.ctx, *model_, lora_.get(), lora_->scale(), hidden, labels, L);
    // DPO: k_i = -β·(ref_c - ref_r), so z_i = β·(lc - lr) + k_i. (Only created when used: an input outside
    // the graph gets no buffer, and setting it would assert.)
    ggml_tensor * consts = dpo ? ggml_new_tensor_1d(cc.ctx, GGML_TYPE_F32, P) : nullptr;
    if (consts) ggml_set_input(consts);

    ggml_tensor * total = nullptr;
    for (int64_t i = 0; i < P; ++i) {
        ggml_tensor * ce_c = ce[2 * i], * ce_r = ce[2 * i + 1];  // -ℓ̄ of the chosen and the rejected response, [1]
        ggml_tensor * li;
        if (dpo) {
            // lc - lr = n_r·ce_r - n_c·ce_c
            ggml_tensor * d = ggml_sub(cc.ctx, ggml_scale(cc.ctx, ce_r, static_cast<float>(L.count[2 * i + 1])),
                                       ggml_scale(cc.ctx, ce_c, static_cast<float>(L.count[2 * i])));
            ggml_tensor * z = ggml_add(cc.ctx, ggml_scale(cc.ctx, d, p.beta), ggml_view_1d(cc.ctx, consts, 1, i * sizeof(float)));
            li = ggml_softplus(cc.ctx, ggml_scale(cc.ctx, z, -1.0f));  // -log σ(z)
        } else {
            // ce_c (= -ℓ̄c, the SFT term) + λ·(-log σ(log odds c - log odds r))
            ggml_tensor * ratio = ggml_sub(cc.ctx, log_odds(cc.ctx, ce_c), log_odds(cc.ctx, ce_r));
            li = ggml_add(cc.ctx, ce_c, ggml_scale(cc.ctx, ggml_softplus(cc.ctx, ggml_scale(cc.ctx, ratio, -1.0f)), p.lambda));
        }
        total = total ? ggml_add(cc.ctx, total, li) : li;
    }
    ggml_set_output(total);
    ggml_tensor * loss = ggml_scale(cc.ctx, total, loss_scale);
    ggml_set_loss(loss);

    const bool ok = run_backward(cc.ctx, loss, cap, [&]() {
        set_graph_inputs(in, batch.tokens, L.rows, batch.T, batch.B, params_.dropout, params_.seed + static_cast<uint64_t>(step_), micro_);
        set_onehot(labels, batch, L, V);
        if (consts) {
            std::vector<float> k(static_cast<size_t>(P));
            for (int64_t i = 0; i < P; ++i) k[i] = static_cast<float>(-static_cast<double>(p.beta) * (ref_logps[2 * i] - ref_logps[2 * i + 1]));
            ggml_backend_tensor_set(consts, k.data(), 0, k.size() * sizeof(float));
        }
    }, std::to_string(P) + " pairs, T " + std::to_string(batch.T), err, {}, {}, nullptr, &in);
    if (!ok) return false;
    if (reserve_only_) return true;
    float t = 0.0f;
    ggml_backend_tensor_get(total, &t, 0, sizeof(float));
    out.loss_sum = t;
    out.logps.assign(static_cast<size_t>(batch.B), 0.0);
    out.n_targets = L.count;
    for (int64_t s = 0; s < batch.B; ++s) {
        float c = 0.0f;
        ggml_backend_tensor_get(ce[s], &c, 0, sizeof(float));
        out.logps[s] = -static_cast<double>(c) * static_cast<double>(L.count[s]);
        // A NaN log-prob must show in the loss: ORPO's clamp (relu, which maps NaN to 0 on the CPU) can hide it
        // from the graph's loss value while the gradient is NaN.
        if (!std::isfinite(out.logps[s])) out.loss_sum = std::nan("");
    }
    micro_ += 1;
    return true;
}

bool trainer::sequence_logprobs(const train_batch & batch, bool use_lora, std::vector<double> & out, std::string & err) {
    if (!check_batch(batch, err)) return false;
    if (chunked_head()) {
        // Rows are in sequence order, so each sequence's log-probs are a contiguous run.
        std::vector<double> rows;
        if (!row_logprobs_chunked(batch, use_lora, rows, err)) return false;
        out.assign(static_cast<size_t>(batch.B), 0.0);
        size_t k = 0;
        for (int64_t s = 0; s < batch.B; ++s) {
            for (int64_t t = 0; t < batch.T; ++t) {
                if (batch.targets[s * batch.T + t] >= 0) out[s] += rows[k++];
            }
        }
        return true;
    }
    const seq_layout L = layout_of(batch);
    const int64_t V = model_->hp.n_vocab, R = static_cast<int64_t>(L.rows.size());
    out.assign(static_cast<size_t>(batch.B), 0.0);
    if (R == 0) return true;
    const size_t cap = graph_size_ + 64 * static_cast<size_t>(batch.B);
    if (!ensure_sched(cap, err)) return false;
    compute_ctx cc(cap);
    graph_inputs in;
    ggml_tensor * hidden = build_hidden(cc.ctx, *model_, use_lora ? lora_.get() : nullptr, lora_->scale(), batch.T, batch.B, R, false, in);
    finish_swaps(in);
    ggml_tensor * labels = ggml_new_tensor_2d(cc.ctx, GGML_TYPE_F32, V, R);
    ggml_set_input(labels);
    const std::vector<ggml_tensor *> ce = build_seq_ce(cc.ctx, *model_, use_lora ? lora_.get() : nullptr, lora_->scale(), hidden, labels, L);
    ggml_cgraph * gf = ggml_new_graph_custom(cc.ctx, cap, false);
    for (ggml_tensor * c : ce) {
        if (c) ggml_build_forward_expand(gf, c);
    }
    ggml_backend_sched_reset(sched_);
    if (!ggml_backend_sched_alloc_graph(sched_, gf)) {
        err = "ggml_backend_sched_alloc_graph failed";
        return false;
    }
    set_graph_inputs(in, batch.tokens, L.rows, batch.T, batch.B, 0.0f, 0, 0);
    set_onehot(labels, batch, L, V);
    if (ggml_backend_sched_graph_compute(sched_, gf) != GGML_STATUS_SUCCESS) {
        err = "ggml_backend_sched_graph_compute failed";
        return false;
    }
    for (int64_t s = 0; s < batch.B; ++s) {
        if (!ce[s]) continue;
        float c = 0.0f;
        ggml_backend_tensor_get(ce[s], &c, 0, sizeof(float));
        out[s] = -static_cast<double>(c) * static_cast<double>(L.count[s]);
    }
    return true;
}

}  // namespace w2s
