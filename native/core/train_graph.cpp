// The llama-family training graph. Shapes in comments use ggml order (innermost first); N = T*B tokens.
#include "train_graph.h"

#include <cmath>
#include <cstring>

#include "sampling.h"

namespace w2s {
namespace {

// y + s·B·(A·x) for a pair with A [n_in, r], B [r, n_out] and x [n_in, N] -> [n_out, N]
ggml_tensor * add_lora(ggml_context * ctx, ggml_tensor * y, const lora_pair & p, ggml_tensor * x, float scale) {
    ggml_tensor * ax = ggml_mul_mat(ctx, p.a, x);   // [r, N]
    ggml_tensor * bax = ggml_mul_mat(ctx, p.b, ax); // [n_out, N]
    return ggml_add(ctx, y, ggml_scale(ctx, bax, scale));
}

// y = W·x (+ s·B·(A·drop(x))) with W frozen [n_in, n_out], x [n_in, N] -> [n_out, N]
ggml_tensor * proj(ggml_context * ctx, const train_model & m, const lora_set * lora, float scale, int il, int target,
                   ggml_tensor * x, graph_inputs & in, bool with_dropout) {
    ggml_tensor * y = ggml_mul_mat(ctx, m.layers[il].w[target], x);
    const lora_pair * p = lora ? lora->find(il, target) : nullptr;
    if (p == nullptr) return y;
    ggml_tensor * xin = x;
    if (with_dropout) {
        ggml_tensor * mask = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, x->ne[0], x->ne[1]);
        ggml_set_input(mask);
        in.dropout.push_back(mask);
        xin = ggml_mul(ctx, x, mask);
    }
    return add_lora(ctx, y, *p, xin, scale);
}

ggml_tensor * rms_norm(ggml_context * ctx, ggml_tensor * x, ggml_tensor * w, float eps) {
    return ggml_mul(ctx, ggml_rms_norm(ctx, x, eps), w);
}

// sigmoid(y) = exp(-softplus(-y)): every piece has a backward pass, and neither side overflows.
ggml_tensor * sigmoid_diff(ggml_context * ctx, ggml_tensor * y) {
    return ggml_exp(ctx, ggml_neg(ctx, ggml_softplus(ctx, ggml_neg(ctx, y))));
}

// tanh(z) = 1 - 2·sigmoid(-2z), differentiable.
ggml_tensor * tanh_smooth(ggml_context * ctx, ggml_tensor * z) {
    return ggml_scale_bias(ctx, sigmoid_diff(ctx, ggml_scale(ctx, z, -2.0f)), -2.0f, 1.0f);
}

// tanh_smooth whose node computes ggml_tanh(z) once swapped.
ggml_tensor * tanh_diff(ggml_context * ctx, ggml_tensor * z, graph_inputs & in) {
    ggml_tensor * t = tanh_smooth(ctx, z);
    in.swaps.push_back({t, ggml_tanh(ctx, z)});
    return t;
}

// GELU, tanh form: gelu(x) = x·sigmoid(2·√(2/π)·(x + 0.044715·x³)); its node computes ggml_gelu(x) (the
// F16-table kernel of llama.cpp's inference, whose forward GEGLU equals gelu(gate)·up) once swapped.
ggml_tensor * gelu_diff(ggml_context * ctx, ggml_tensor * x, graph_inputs & in) {
    const float k = 2.0f * 0.7978845608028654f;  // 2·√(2/π)
    ggml_tensor * x3 = ggml_mul(ctx, ggml_mul(ctx, x, x), x);
    ggml_tensor * arg = ggml_scale(ctx, ggml_add(ctx, x, ggml_scale(ctx, x3, 0.044715f)), k);
    ggml_tensor * g = ggml_mul(ctx, x, sigmoid_diff(ctx, arg));
    in.swaps.push_back({g, ggml_gelu(ctx, x)});
    return g;
}

// Rows [r0, r0 + n) of a [rows, N] activation as a contiguous [n, N] tensor (fused q/k/v, gate/up).
ggml_tensor * rows_of(ggml_context * ctx, ggml_tensor * y, int64_t r0, int64_t n) {
    return ggml_cont(ctx, ggml_view_2d(ctx, y, n, y->ne[1], y->nb[1], static_cast<size_t>(r0) * ggml_element_size(y)));
}

}  // namespace

ggml_tensor * softcap(ggml_context * ctx, ggml_tensor * x, float c) {
    // For the dense head (autodiff through it); without a swap: the smooth form's F32 error there is ~6e-8·c.
    return ggml_scale(ctx, tanh_smooth(ctx, ggml_scale(ctx, x, 1.0f / c)), c);
}

void apply_forward_swaps(graph_inputs & in) {
    for (const forward_swap & sw : in.swaps) {
        ggml_tensor * n = sw.node;
        n->op = sw.exact->op;
        std::memcpy(n->op_params, sw.exact->op_params, sizeof(n->op_params));
        for (int i = 0; i < GGML_MAX_SRC; ++i) n->src[i] = sw.exact->src[i];
    }
    in.swaps.clear();
}

ggml_tensor * build_embed(ggml_context * ctx, const train_model & m, graph_inputs & in) {
    ggml_tensor * x = ggml_get_rows(ctx, m.tok_embd, in.tokens);  // [n_embd, N]
    return m.hp.traits.embd_scale ? ggml_scale(ctx, x, std::sqrt(static_cast<float>(m.hp.n_embd))) : x;
}

ggml_tensor * project_output(ggml_context * ctx, const train_model & m, const lora_set * lora, float lora_scale, ggml_tensor * h) {
    ggml_tensor * y = ggml_mul_mat(ctx, m.output, h);  // [n_vocab, n]
    const lora_pair * p = lora ? lora->output() : nullptr;
    if (p) y = add_lora(ctx, y, *p, h, lora_scale);
    return m.hp.traits.final_softcap > 0.0f ? softcap(ctx, y, m.hp.traits.final_softcap) : y;  // gemma2
}

ggml_tensor * build_logits(ggml_context * ctx, const train_model & m, const lora_set * lora, float lora_scale,
                           int64_t T, int64_t B, int64_t R, bool with_dropout, graph_inputs & in) {
    ggml_tensor * h = build_hidden(ctx, m, lora, lora_scale, T, B, R, with_dropout, in);  // [n_embd, R]
    return project_output(ctx, m, lora, lora_scale, h);                                  // [n_vocab, R]
}

void new_graph_inputs(ggml_context * ctx, int64_t T, int64_t B, int64_t R, graph_inputs & in) {
    const int64_t N = T * B;
    in = graph_inputs();
    in.tokens = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, N);
    in.positions = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, N);
    in.mask = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, T, T);
    ggml_set_input(in.tokens);
    ggml_set_input(in.positions);
    ggml_set_input(in.mask);
    in.rows = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, R);
    ggml_set_input(in.rows);
}

ggml_tensor * build_layer(ggml_context * ctx, const train_model & m, const lora_set * lora, float lora_scale, int il,
                          ggml_tensor * x, int64_t T, int64_t B, bool with_dropout, graph_inputs & in) {
    const train_hparams & hp = m.hp;
    const arch_traits & tr = hp.traits;
    const int64_t N = T * B, hd = hp.head_dim(), nh = hp.n_head, nkv = hp.n_head_kv;
    const float kq_scale = tr.q_scale > 0.0f ? tr.q_scale : 1.0f / std::sqrt(static_cast<float>(hd));
    const train_layer & L = m.layers[il];
    const bool swa = hp.swa_in_graph && hp.swa_layer[il];
    ggml_tensor * h = rms_norm(ctx, x, L.attn_norm, hp.rms_eps);
    ggml_tensor * q, * k, * v;
    if (L.fused_qkv) {
        ggml_tensor * qkv = proj(ctx, m, lora, lora_scale, il, T_Q, h, in, with_dropout);  // [hd*(nh + 2 nkv), N]
        q = rows_of(ctx, qkv, 0, hd * nh);
        k = rows_of(ctx, qkv, hd * nh, hd * nkv);
        v = rows_of(ctx, qkv, hd * (nh + nkv), hd * nkv);
    } else {
        q = proj(ctx, m, lora, lora_scale, il, T_Q, h, in, with_dropout);  // [hd*nh, N]
        k = proj(ctx, m, lora, lora_scale, il, T_K, h, in, with_dropout);  // [hd*nkv, N]
        v = proj(ctx, m, lora, lora_scale, il, T_V, h, in, with_dropout);  // [hd*nkv, N]
    }
    if (tr.qkv_bias) {
        q = ggml_add(ctx, q, L.bq);
        k = ggml_add(ctx, k, L.bk);
        v = ggml_add(ctx, v, L.bv);
    }
    q = ggml_reshape_3d(ctx, q, hd, nh, N);
    k = ggml_reshape_3d(ctx, k, hd, nkv, N);
    if (tr.qk_norm) {
        q = rms_norm(ctx, q, L.q_norm, hp.rms_eps);  // over head_dim, gain [hd] broadcast over heads and tokens
        k = rms_norm(ctx, k, L.k_norm, hp.rms_eps);
    }
    // Llama 3.1's frequency factors divide each rotation frequency, as llama.cpp's inference graph does.
    const float rope_base = swa && hp.rope_base_swa > 0.0f ? hp.rope_base_swa : hp.rope_base;
    q = ggml_rope_ext(ctx, q, in.positions, m.rope_freqs, hp.n_rot, tr.rope_mode,
                      hp.n_ctx_train, rope_base, 1.0f, 0.0f, 1.0f, 32.0f, 1.0f);
    k = ggml_rope_ext(ctx, k, in.positions, m.rope_freqs, hp.n_rot, tr.rope_mode,
                      hp.n_ctx_train, rope_base, 1.0f, 0.0f, 1.0f, 32.0f, 1.0f);
    // Heads and batch share dim 2 (head-major within a sequence), so GQA is mul_mat broadcasting over
    // dim 2 with dim 3 = 1: the case ggml's MUL_MAT backward supports.
    ggml_tensor * q3 = ggml_reshape_3d(ctx, ggml_cont(ctx, ggml_permute(ctx, ggml_reshape_4d(ctx, q, hd, nh, T, B), 0, 2, 1, 3)), hd, T, nh * B);
    ggml_tensor * k3 = ggml_reshape_3d(ctx, ggml_cont(ctx, ggml_permute(ctx, ggml_reshape_4d(ctx, k, hd, nkv, T, B), 0, 2, 1, 3)), hd, T, nkv * B);
    // v as [T, hd, nkv*B]: keys along dim 0 so kqv = v^T·softmax(kq)
    ggml_tensor * v3 = ggml_reshape_3d(ctx, ggml_cont(ctx, ggml_permute(ctx, ggml_reshape_4d(ctx, v, hd, nkv, T, B), 1, 2, 0, 3)), T, hd, nkv * B);
    ggml_tensor * kq = ggml_mul_mat(ctx, k3, q3);                             // [T_k, T_q, nh*B]
    ggml_tensor * mask = in.mask;
    if (swa && T > hp.n_swa) {
        if (in.mask_swa == nullptr) {
            in.mask_swa = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, T, T);
            ggml_set_input(in.mask_swa);
            in.n_swa = hp.n_swa;
        }
        mask = in.mask_swa;
    }
    if (tr.attn_softcap > 0.0f) {
        // gemma2 (llama.cpp's non-flash path): scale, cap = c·tanh(kq / c), then the masked softmax unscaled.
        ggml_tensor * z = ggml_scale(ctx, kq, kq_scale / tr.attn_softcap);
        kq = ggml_soft_max_ext(ctx, ggml_scale(ctx, tanh_diff(ctx, z, in), tr.attn_softcap), mask, 1.0f, 0.0f);
    } else {
        kq = ggml_soft_max_ext(ctx, kq, mask, kq_scale, 0.0f);
    }
    ggml_tensor * kqv = ggml_mul_mat(ctx, v3, kq);                            // [hd, T_q, nh*B]
    kqv = ggml_cont(ctx, ggml_permute(ctx, ggml_reshape_4d(ctx, kqv, hd, T, nh, B), 0, 2, 1, 3));  // [hd, nh, T, B]
    ggml_tensor * attn = proj(ctx, m, lora, lora_scale, il, T_O, ggml_reshape_2d(ctx, kqv, hd * nh, N), in, with_dropout);
    if (tr.post_norms) attn = rms_norm(ctx, attn, L.attn_post_norm, hp.rms_eps);
    x = ggml_add(ctx, x, attn);

    h = rms_norm(ctx, x, L.ffn_norm, hp.rms_eps);
    ggml_tensor * gate, * up;
    if (L.fused_gate_up) {
        ggml_tensor * gu = proj(ctx, m, lora, lora_scale, il, T_UP, h, in, with_dropout);  // [2 n_ff, N], gate rows first
        gate = rows_of(ctx, gu, 0, hp.n_ff);
        up = rows_of(ctx, gu, hp.n_ff, hp.n_ff);
    } else {
        gate = proj(ctx, m, lora, lora_scale, il, T_GATE, h, in, with_dropout);  // [n_ff, N]
        up = proj(ctx, m, lora, lora_scale, il, T_UP, h, in, with_dropout);      // [n_ff, N]
    }
    ggml_tensor * act = ggml_mul(ctx, tr.gelu ? gelu_diff(ctx, gate, in) : ggml_silu(ctx, gate), up);
    ggml_tensor * ffn = proj(ctx, m, lora, lora_scale, il, T_DOWN, act, in, with_dropout);
    if (tr.post_norms) ffn = rms_norm(ctx, ffn, L.ffn_post_norm, hp.rms_eps);
    return ggml_add(ctx, x, ffn);
}

ggml_tensor * build_final(ggml_context * ctx, const train_model & m, ggml_tensor * x, graph_inputs & in) {
    x = ggml_get_rows(ctx, x, in.rows);                    // [n_embd, R]
    return rms_norm(ctx, x, m.output_norm, m.hp.rms_eps);  // [n_embd, R]
}

ggml_tensor * build_hidden(ggml_context * ctx, const train_model & m, const lora_set * lora, float lora_scale,
                           int64_t T, int64_t B, int64_t R, bool with_dropout, graph_inputs & in) {
    new_graph_inputs(ctx, T, B, R, in);
    ggml_tensor * x = build_embed(ctx, m, in);  // [n_embd, N]
    for (int il = 0; il < m.hp.n_layer; ++il) x = build_layer(ctx, m, lora, lora_scale, il, x, T, B, with_dropout, in);
    return build_final(ctx, m, x, in);
}

void set_graph_inputs(const graph_inputs & in, const std::vector<int32_t> & tokens, const std::vector<int32_t> & rows,
                      int64_t T, int64_t B, float dropout, uint64_t seed, uint64_t step, size_t dropout_offset) {
    // Inputs a partial graph (one checkpointed layer, the head) does not use have no buffer.
    if (in.tokens->buffer) ggml_backend_tensor_set(in.tokens, tokens.data(), 0, tokens.size() * sizeof(int32_t));
    if (in.rows->buffer) ggml_backend_tensor_set(in.rows, rows.data(), 0, rows.size() * sizeof(int32_t));
    std::vector<int32_t> pos(static_cast<size_t>(T * B));
    for (int64_t b = 0; b < B; ++b) {
        for (int64_t t = 0; t < T; ++t) pos[b * T + t] = static_cast<int32_t>(t);
    }
    if (in.positions->buffer) ggml_backend_tensor_set(in.positions, pos.data(), 0, pos.size() * sizeof(int32_t));
    std::vector<float> mask(static_cast<size_t>(T * T));
    for (int64_t q = 0; q < T; ++q) {
        for (int64_t k = 0; k < T; ++k) mask[q * T + k] = k <= q ? 0.0f : -INFINITY;
    }
    if (in.mask->buffer) ggml_backend_tensor_set(in.mask, mask.data(), 0, mask.size() * sizeof(float));
    if (in.mask_swa && in.mask_swa->buffer) {
        // llama.cpp's STANDARD window: a key at distance q - k >= n_swa is masked.
        for (int64_t q = 0; q < T; ++q) {
            for (int64_t k = 0; k <= q; ++k) mask[q * T + k] = q - k >= in.n_swa ? -INFINITY : 0.0f;
        }
        ggml_backend_tensor_set(in.mask_swa, mask.data(), 0, mask.size() * sizeof(float));
    }
    std::vector<float> keep;
    for (size_t i = 0; i < in.dropout.size(); ++i) {
        rng r(seed ^ 0xD50F0D50F0ull, step, i + dropout_offset);
        keep.resize(ggml_nelements(in.dropout[i]));
        const float kept = 1.0f / (1.0f - dropout);
        for (auto & v : keep) v = r.uniform() < dropout ? 0.0f : kept;
        ggml_backend_tensor_set(in.dropout[i], keep.data(), 0, keep.size() * sizeof(float));
    }
}

}  // namespace w2s
