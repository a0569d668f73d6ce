// The trainer's graphs with the chunked output head (loss_head.h): SFT, DPO/ORPO and forward log-probs,
// whole or with activation checkpointing. The head's gradient enters autodiff at the hidden states (a
// gradient seed of run_backward), so the logits of all rows and one-hot labels never exist. R = target rows.
#include <algorithm>
#include <cmath>
#include <functional>

#include "frozen_grad.h"
#include "graph_ctx.h"
#include "ggml-backend.h"
#include "loss_head.h"
#include "train_graph.h"
#include "trainer.h"

namespace w2s {
namespace {

// Positions (b*T + t) with a target, in order (sequence-major), and their target tokens.
void rows_of(const train_batch & b, std::vector<int32_t> & rows, std::vector<int32_t> & targets) {
    for (size_t i = 0; i < b.targets.size(); ++i) {
        if (b.targets[i] < 0) continue;
        rows.push_back(static_cast<int32_t>(i));
        targets.push_back(b.targets[i]);
    }
}

// The largest number of rows of a frozen matrix the graph transposes: the length of the transposes' index
// input. A graph of one layer (checkpointing) leaves out the output head, whose n_vocab rows would make every
// layer graph upload an index input the size of the vocabulary.
int64_t max_rows(const train_model & m, bool with_head = true) {
    int64_t n = with_head ? m.output->ne[1] : 1;
    for (const auto & L : m.layers) {
        for (const ggml_tensor * w : L.w) {
            if (w) n = std::max(n, w->ne[1]);
        }
    }
    return n;
}

std::vector<double> read_logp(ggml_tensor * logp) {
    std::vector<float> f(static_cast<size_t>(ggml_nelements(logp)));
    ggml_backend_tensor_get(logp, f.data(), 0, f.size() * sizeof(float));
    return std::vector<double>(f.begin(), f.end());
}

// A scalar F32 [1] input leaf for the placeholder loss (see run_backward).
ggml_tensor * placeholder_loss(ggml_context * ctx, ggml_tensor *& zero) {
    zero = ggml_new_tensor_1d(ctx, GGML_TYPE_F32, 1);
    ggml_set_input(zero);
    ggml_tensor * loss = ggml_scale(ctx, zero, 1.0f);
    ggml_set_loss(loss);
    return loss;
}

void set_zero(ggml_tensor * zero) {
    const float z = 0.0f;
    ggml_backend_tensor_set(zero, &z, 0, sizeof(float));
}

double softplus(double x) { return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x)); }

// log odds(m) for m = min(ℓ̄, ORPO_MAX_MEAN_LOGP), as the dense graph computes it.
double log_odds_host(double l) {
    const double m = std::min(l, static_cast<double>(ORPO_MAX_MEAN_LOGP));
    return m - std::log(-std::expm1(m));
}

// The chunked head over R rows with the trainer's chunk budgets; its log-probs are an output.
head_out head_of(ggml_context * ctx, const train_model & m, const trainer_params & p, ggml_tensor * hidden, int64_t R, bool with_grad,
                 ggml_tensor * iota, head_inputs & hin, size_t & transient) {
    head_out head = build_head(ctx, m, hidden, head_chunk_rows(m.hp.n_vocab, R, p.head_chunk_bytes), with_grad, iota,
                               p.transpose_chunk_bytes, hin, transient);
    ggml_set_output(head.logp);
    return head;
}

}  // namespace

bool trainer::chunked_head() const { return params_.head == head_mode::chunked && lora_->output() == nullptr; }

size_t trainer::graph_capacity(int64_t R, int64_t B) const {
    const int64_t V = model_->hp.n_vocab;
    const int64_t chunks = (R + head_chunk_rows(V, R, params_.head_chunk_bytes) - 1) / head_chunk_rows(V, R, params_.head_chunk_bytes);
    const int64_t k = std::max<int64_t>(1, static_cast<int64_t>(params_.transpose_chunk_bytes / (sizeof(float) * model_->output->ne[0])));
    const int64_t t_chunks = (V + k - 1) / k;
    // The head: ~24 nodes per row chunk + 7 per transpose chunk of the output matrix; pairs: ~40 per
    // sequence; the body's rewrite: 7 per transpose chunk of each of a layer's matrices (at most
    // n_ff·n_embd·4 / chunk + 1 chunks each; 8 matrices counted for margin).
    const int64_t body_t = 7 * 8 * static_cast<int64_t>(model_->hp.n_layer) *
                           std::max<int64_t>(1, static_cast<int64_t>((static_cast<size_t>(model_->hp.n_ff) * model_->hp.n_embd * sizeof(float)) / params_.transpose_chunk_bytes + 1));
    return graph_size_ + static_cast<size_t>(chunks * (24 + 7 * t_chunks) + 40 * B + body_t);
}

size_t checkpoint_auto_budget(ggml_backend_t backend) {
    size_t free = 0, total = 0;
    ggml_backend_dev_t dev = ggml_backend_get_device(backend);
    if (dev) ggml_backend_dev_memory(dev, &free, &total);
    return std::max(CHECKPOINT_AUTO_MIN_BYTES, free / 8);
}

bool trainer::use_checkpointing(const train_batch & batch) const {
    if (params_.checkpoint != trainer_params::checkpointing::auto_) return params_.checkpoint == trainer_params::checkpointing::on;
    const train_hparams & hp = model_->hp;
    if (hp.n_layer < 2) return false;
    // What autodiff keeps per layer until the backward pass, F32: ~10 [n_embd, N] and 4 [n_ff, N]
    // activations and their gradients, and 3 [T, T] score tensors per head and sequence.
    const double N = static_cast<double>(batch.T * batch.B);
    const double per_layer = 4.0 * (N * (10.0 * hp.n_embd + 4.0 * hp.n_ff) + 3.0 * hp.n_head * static_cast<double>(batch.T) * batch.T * batch.B);
    return per_layer * hp.n_layer > static_cast<double>(checkpoint_auto_bytes_);
}

bool trainer::train_chunked(const train_batch & batch, const std::vector<int32_t> & rows, const top_builder & top,
                            std::vector<double> & logp, const std::string & what, std::string & err) {
    const int64_t R = static_cast<int64_t>(rows.size()), T = batch.T, B = batch.B, N = T * B;
    const size_t cap = graph_capacity(R, B);
    if (!ensure_sched(cap, err)) return false;
    const bool dropout = params_.dropout > 0.0f;
    const uint64_t seed = params_.seed + static_cast<uint64_t>(step_);
    auto set_body = [&](const graph_inputs & in, size_t dropout_offset) {
        set_graph_inputs(in, batch.tokens, rows, T, B, params_.dropout, seed, micro_, dropout_offset);
    };
    // One graph from the hidden states (`hidden_of`: the whole body, or the final norm over the kept input
    // of the last layer) through the top, the body's backward seeded at the hidden states (+ `extra`).
    auto run_top = [&](const std::function<ggml_tensor *(ggml_context *, graph_inputs &)> & hidden_of, grad_seeds extra) {
        compute_ctx cc(cap);
        graph_inputs in;
        ggml_tensor * hidden = hidden_of(cc.ctx, in);
        ggml_tensor * iota = new_iota(cc.ctx, max_rows(*model_));
        const top_part tp = top(cc.ctx, hidden, iota);
        ggml_tensor * zero = nullptr;
        ggml_tensor * loss = placeholder_loss(cc.ctx, zero);
        std::vector<ggml_tensor *> order = tp.order;
        order.push_back(tp.logp);
        extra.insert(extra.begin(), {hidden, tp.dh});
        if (!run_backward(cc.ctx, loss, cap, [&]() { set_body(in, 0); tp.set_inputs(); set_zero(zero); }, what, err, order, extra, iota, &in)) {
            return false;
        }
        if (!reserve_only_) logp = read_logp(tp.logp);
        return true;
    };
    if (!use_checkpointing(batch)) {
        return run_top([&](ggml_context * ctx, graph_inputs & in) {
            return build_hidden(ctx, *model_, lora_.get(), lora_->scale(), T, B, R, dropout, in);
        }, {});
    }

    // Checkpointed. Persistent for this micro-batch: the input of every layer and of the final norm
    // (xs[l], F32 [n_embd, N], l = 0..L) and two gradient buffers dx used in turn (∂loss/∂xs[l]).
    const int L = model_->hp.n_layer;
    struct persist {
        ggml_context * ctx = nullptr;
        ggml_backend_buffer_t buf = nullptr;
        ~persist() { if (buf) ggml_backend_buffer_free(buf); if (ctx) ggml_free(ctx); }
    } ps;
    ps.ctx = ggml_init({ggml_tensor_overhead() * static_cast<size_t>(L + 4), nullptr, true});
    std::vector<ggml_tensor *> xs(static_cast<size_t>(L + 1));
    for (auto & x : xs) x = ggml_new_tensor_2d(ps.ctx, GGML_TYPE_F32, model_->hp.n_embd, N);
    ggml_tensor * dx[2] = {ggml_new_tensor_2d(ps.ctx, GGML_TYPE_F32, model_->hp.n_embd, N), ggml_new_tensor_2d(ps.ctx, GGML_TYPE_F32, model_->hp.n_embd, N)};
    ps.buf = ggml_backend_alloc_ctx_tensors(ps.ctx, backend_);
    if (!ps.buf) {
        err = "could not allocate " + std::to_string((L + 3) * N * model_->hp.n_embd * 4) + " bytes for the layer checkpoints of " + what;
        return false;
    }
    // Dropout masks are numbered over the whole graph: layer l's first mask is the count of the layers before.
    std::vector<size_t> mask_offset(static_cast<size_t>(L), 0);
    for (int l = 1; l < L; ++l) {
        size_t k = 0;
        for (int t = 0; t < T_COUNT; ++t) k += lora_->find(l - 1, t) ? 1 : 0;
        mask_offset[l] = mask_offset[l - 1] + k;
    }
    // 1. Forward, keeping each layer's input (only one layer's activations are alive at a time).
    {
        compute_ctx cc(cap);
        graph_inputs in;
        new_graph_inputs(cc.ctx, T, B, R, in);
        ggml_cgraph * gf = ggml_new_graph_custom(cc.ctx, cap, false);
        ggml_tensor * x = ggml_cpy(cc.ctx, build_embed(cc.ctx, *model_, in), xs[0]);
        ggml_build_forward_expand(gf, x);
        for (int l = 0; l < L; ++l) {
            ggml_tensor * y = build_layer(cc.ctx, *model_, lora_.get(), lora_->scale(), l, x, T, B, dropout, in);
            finish_swaps(in);  // no backward here: the exact ops now (as the recompute graphs after theirs)
            x = ggml_cpy(cc.ctx, y, xs[l + 1]);
            ggml_build_forward_expand(gf, x);
        }
        use_cpu_kernels(cc.ctx, gf);  // as in the layer graphs that recompute this forward
        ggml_backend_sched_reset(sched_);
        if (reserve_only_) {
            if (!ggml_backend_sched_reserve(sched_, gf)) {
                err = "reserving the compute buffers failed (out of memory for the forward pass of " + what + ")";
                return false;
            }
        } else {
            if (!ggml_backend_sched_alloc_graph(sched_, gf)) {
                err = "ggml_backend_sched_alloc_graph failed (out of memory for the forward pass of " + what + "?)";
                return false;
            }
            set_body(in, 0);
            if (ggml_backend_sched_graph_compute(sched_, gf) != GGML_STATUS_SUCCESS) {
                err = "ggml_backend_sched_graph_compute failed (forward pass of " + what + ")";
                return false;
            }
        }
    }
    // 2. The final norm and the top: ∂loss/∂xs[L] into dx[L % 2] (an accumulator: zeroed first).
    ggml_set_param(xs[L]);
    ggml_backend_tensor_memset(dx[L % 2], 0, 0, ggml_nbytes(dx[L % 2]));
    if (!run_top([&](ggml_context * ctx, graph_inputs & in) {
            new_graph_inputs(ctx, T, B, R, in);
            return build_final(ctx, *model_, xs[L], in);
        }, {{xs[L], dx[L % 2]}})) {
        return false;
    }
    // 3. Layers from the top: recompute layer l from xs[l], seed its output's gradient with dx[(l+1) % 2],
    // accumulate the LoRA gradients and ∂loss/∂xs[l] into dx[l % 2] (layer 0's input needs none).
    // (Every layer's graph has the same shape: reserving the first one is enough.)
    for (int l = L - 1; l >= (reserve_only_ ? L - 1 : 0); --l) {
        if (l > 0) ggml_set_param(xs[l]);
        compute_ctx cc(cap);
        graph_inputs in;
        new_graph_inputs(cc.ctx, T, B, R, in);
        ggml_tensor * y = build_layer(cc.ctx, *model_, lora_.get(), lora_->scale(), l, xs[l], T, B, dropout, in);
        ggml_tensor * iota = new_iota(cc.ctx, max_rows(*model_, false));
        ggml_tensor * zero = nullptr;
        ggml_tensor * loss = placeholder_loss(cc.ctx, zero);
        grad_seeds seeds{{y, dx[(l + 1) % 2]}};
        if (l > 0) {
            seeds.push_back({xs[l], dx[l % 2]});
            ggml_backend_tensor_memset(dx[l % 2], 0, 0, ggml_nbytes(dx[l % 2]));
        }
        if (!run_backward(cc.ctx, loss, cap, [&]() { set_body(in, mask_offset[l]); set_zero(zero); }, what, err, {y}, seeds, iota, &in)) {
            return false;
        }
    }
    return true;
}

bool trainer::accumulate_chunked(const train_batch & batch, float loss_scale, double & loss_sum, int64_t & n_targets, std::string & err) {
    std::vector<int32_t> rows, targets;
    rows_of(batch, rows, targets);
    const int64_t R = static_cast<int64_t>(rows.size());
    n_targets = R;
    loss_sum = 0.0;
    if (R == 0) return true;
    size_t transient = 0;
    auto top = [&](ggml_context * ctx, ggml_tensor * hidden, ggml_tensor * iota) {
        auto hin = std::make_shared<head_inputs>();
        const head_out head = head_of(ctx, *model_, params_, hidden, R, true, iota, *hin, transient);
        top_part tp;
        tp.order = head.order;
        tp.logp = head.logp;
        // loss = loss_scale · Σ_r -log p_r  =>  ∂loss/∂h_r = -loss_scale · u_r
        tp.dh = ggml_scale(ctx, head.u, -loss_scale);
        tp.set_inputs = [hin, &targets]() { set_head_inputs(*hin, targets); };
        return tp;
    };
    std::vector<double> lp;
    if (!train_chunked(batch, rows, top, lp, "T " + std::to_string(batch.T) + " × B " + std::to_string(batch.B), err)) return false;
    if (reserve_only_) return true;
    last_transient_bytes_ = std::max(last_transient_bytes_, transient);
    for (double l : lp) loss_sum -= l;
    micro_ += 1;
    return true;
}

bool trainer::row_logprobs_chunked(const train_batch & batch, bool use_lora, std::vector<double> & out, std::string & err) {
    std::vector<int32_t> rows, targets;
    rows_of(batch, rows, targets);
    const int64_t R = static_cast<int64_t>(rows.size());
    out.clear();
    if (R == 0) return true;
    const size_t cap = graph_capacity(R, batch.B);
    if (!ensure_sched(cap, err)) return false;
    compute_ctx cc(cap);
    graph_inputs in;
    ggml_tensor * hidden = build_hidden(cc.ctx, *model_, use_lora ? lora_.get() : nullptr, lora_->scale(), batch.T, batch.B, R, false, in);
    finish_swaps(in);
    head_inputs hin;
    size_t transient = 0;
    const head_out head = head_of(cc.ctx, *model_, params_, hidden, R, false, nullptr, hin, transient);
    ggml_cgraph * gf = ggml_new_graph_custom(cc.ctx, cap, false);
    for (ggml_tensor * t : head.order) ggml_build_forward_expand(gf, t);
    ggml_build_forward_expand(gf, head.logp);
    ggml_backend_sched_reset(sched_);
    if (!ggml_backend_sched_alloc_graph(sched_, gf)) {
        err = "ggml_backend_sched_alloc_graph failed (out of memory for T " + std::to_string(batch.T) + " × B " + std::to_string(batch.B) + "?)";
        return false;
    }
    set_graph_inputs(in, batch.tokens, rows, batch.T, batch.B, 0.0f, 0, 0);
    set_head_inputs(hin, targets);
    if (ggml_backend_sched_graph_compute(sched_, gf) != GGML_STATUS_SUCCESS) {
        err = "ggml_backend_sched_graph_compute failed";
        return false;
    }
    out = read_logp(head.logp);
    return true;
}

bool trainer::accumulate_pairs_chunked(const train_batch & batch, const pref_params & p, const std::vector<double> & ref_logps,
                                       float loss_scale, pref_result & out, std::string & err) {
    std::vector<int32_t> rows, targets;
    rows_of(batch, rows, targets);
    const int64_t R = static_cast<int64_t>(rows.size()), P = batch.B / 2;
    std::vector<int64_t> count(static_cast<size_t>(batch.B), 0), offset(static_cast<size_t>(batch.B), 0);
    for (int64_t s = 0, k = 0; s < batch.B; ++s) {
        offset[s] = k;
        for (int64_t t = 0; t < batch.T; ++t) count[s] += batch.targets[s * batch.T + t] >= 0 ? 1 : 0;
        k += count[s];
    }
    const bool dpo = p.kind == pref_loss::dpo;
    size_t transient = 0;
    auto top = [&](ggml_context * ctx, ggml_tensor * hidden, ggml_tensor * iota) {
        auto hin = std::make_shared<head_inputs>();
        const head_out head = head_of(ctx, *model_, params_, hidden, R, true, iota, *hin, transient);
        // Per sequence: l_s = Σ log p over its rows ([1]); per pair the loss's derivatives with respect to l_c
        // and l_r (written out: autodiff does not see the head), times loss_scale.
        std::vector<ggml_tensor *> l(static_cast<size_t>(batch.B));
        for (int64_t s = 0; s < batch.B; ++s) l[s] = ggml_sum(ctx, ggml_view_1d(ctx, head.logp, count[s], offset[s] * sizeof(float)));
        ggml_tensor * consts = dpo ? ggml_new_tensor_1d(ctx, GGML_TYPE_F32, P) : nullptr;  // DPO: -β·(ref_c - ref_r)
        if (consts) ggml_set_input(consts);
        std::vector<ggml_tensor *> coef(static_cast<size_t>(batch.B));
        for (int64_t i = 0; i < P; ++i) {
            const int64_t c = 2 * i, r = 2 * i + 1;
            if (dpo) {
                // z = β(l_c - l_r) + k; loss = softplus(-z): ∂/∂l_c = -β·σ(-z), ∂/∂l_r = β·σ(-z)
                ggml_tensor * z = ggml_add(ctx, ggml_scale(ctx, ggml_sub(ctx, l[c], l[r]), p.beta), ggml_view_1d(ctx, consts, 1, i * sizeof(float)));
                ggml_tensor * sg = ggml_sigmoid(ctx, ggml_scale(ctx, z, -1.0f));
                coef[c] = ggml_scale(ctx, sg, -p.beta * loss_scale);
                coef[r] = ggml_scale(ctx, sg, p.beta * loss_scale);
            } else {
                // ℓ̄ = l/n, m = min(ℓ̄, c0), LO(m) = m - log(1 - e^m), LO'(m) = 1/(1 - e^m), ratio = LO(m_c) - LO(m_r);
                // loss = -ℓ̄_c + λ·softplus(-ratio): ∂/∂ℓ̄_c = -1 - λσ(-ratio)LO'(m_c)[ℓ̄_c < c0],
                // ∂/∂ℓ̄_r = λσ(-ratio)LO'(m_r)[ℓ̄_r < c0]; ∂/∂l = (∂/∂ℓ̄)/n.
                const float c0 = ORPO_MAX_MEAN_LOGP;
                auto mean = [&](int64_t s) { return ggml_scale(ctx, l[s], 1.0f / static_cast<float>(count[s])); };
                auto clamp = [&](ggml_tensor * x) { return ggml_scale_bias(ctx, ggml_relu(ctx, ggml_scale_bias(ctx, x, -1.0f, c0)), -1.0f, c0); };
                auto log1m_exp = [&](ggml_tensor * m) { return ggml_log(ctx, ggml_scale_bias(ctx, ggml_exp(ctx, m), -1.0f, 1.0f)); };
                ggml_tensor * lc = mean(c), * lr = mean(r);
                ggml_tensor * mc = clamp(lc), * mr = clamp(lr);
                ggml_tensor * ratio = ggml_sub(ctx, ggml_sub(ctx, mc, log1m_exp(mc)), ggml_sub(ctx, mr, log1m_exp(mr)));
                ggml_tensor * sg = ggml_sigmoid(ctx, ggml_scale(ctx, ratio, -1.0f));
                auto dlo = [&](ggml_tensor * m, ggml_tensor * lbar) {  // LO'(m)·[ℓ̄ < c0]
                    ggml_tensor * inv = ggml_exp(ctx, ggml_scale(ctx, log1m_exp(m), -1.0f));
                    return ggml_mul(ctx, inv, ggml_step(ctx, ggml_scale_bias(ctx, lbar, -1.0f, c0)));
                };
                ggml_tensor * gc = ggml_scale_bias(ctx, ggml_mul(ctx, sg, dlo(mc, lc)), -p.lambda, -1.0f);
                ggml_tensor * gr = ggml_scale(ctx, ggml_mul(ctx, sg, dlo(mr, lr)), p.lambda);
                coef[c] = ggml_scale(ctx, gc, loss_scale / static_cast<float>(count[c]));
                coef[r] = ggml_scale(ctx, gr, loss_scale / static_cast<float>(count[r]));
            }
        }
        // ∂loss/∂h: each sequence's columns of u times its coefficient.
        ggml_tensor * dh = nullptr;
        for (int64_t s = 0; s < batch.B; ++s) {
            ggml_tensor * us = ggml_view_2d(ctx, head.u, head.u->ne[0], count[s], head.u->nb[1], offset[s] * head.u->nb[1]);
            ggml_tensor * d = ggml_mul(ctx, us, coef[s]);
            dh = dh ? ggml_concat(ctx, dh, d, 1) : d;
        }
        top_part tp;
        tp.order = head.order;
        tp.logp = head.logp;
        tp.dh = dh;
        tp.set_inputs = [hin, consts, &targets, &p, &ref_logps, P]() {
            set_head_inputs(*hin, targets);
            if (consts) {
                std::vector<float> k(static_cast<size_t>(P));
                for (int64_t i = 0; i < P; ++i) k[i] = static_cast<float>(-static_cast<double>(p.beta) * (ref_logps[2 * i] - ref_logps[2 * i + 1]));
                ggml_backend_tensor_set(consts, k.data(), 0, k.size() * sizeof(float));
            }
        };
        return tp;
    };
    std::vector<double> lp;
    if (!train_chunked(batch, rows, top, lp, std::to_string(P) + " pairs, T " + std::to_string(batch.T), err)) return false;
    if (reserve_only_) return true;
    last_transient_bytes_ = std::max(last_transient_bytes_, transient);
    // The loss value from the same log-probs, in double on the host.
    out.logps.assign(static_cast<size_t>(batch.B), 0.0);
    out.n_targets = count;
    for (int64_t s = 0; s < batch.B; ++s) {
        for (int64_t k = 0; k < count[s]; ++k) out.logps[s] += lp[offset[s] + k];
    }
    double total = 0.0;
    for (int64_t i = 0; i < P; ++i) {
        const double lc = out.logps[2 * i], lr = out.logps[2 * i + 1];
        if (dpo) {
            total += softplus(-p.beta * ((lc - ref_logps[2 * i]) - (lr - ref_logps[2 * i + 1])));
        } else {
            const double mc = lc / count[2 * i], mr = lr / count[2 * i + 1];
            total += -mc + p.lambda * softplus(-(log_odds_host(mc) - log_odds_host(mr)));
        }
    }
    out.loss_sum = total;
    for (double v : out.logps) {
        if (!std::isfinite(v)) out.loss_sum = std::nan("");
    }
    micro_ += 1;
    return true;
}

}  // namespace w2s
