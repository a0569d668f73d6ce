#include "loss_head.h"

#include <algorithm>

#include "frozen_grad.h"
#include "ggml-backend.h"

namespace w2s {

int64_t head_chunk_rows(int64_t n_vocab, int64_t R, size_t budget_bytes) {
    const int64_t per_row = 2 * n_vocab * static_cast<int64_t>(sizeof(float));  // logits + p
    return std::max<int64_t>(1, std::min<int64_t>(R, static_cast<int64_t>(budget_bytes) / per_row));
}

head_out build_head(ggml_context * ctx, const train_model & m, ggml_tensor * hidden, int64_t chunk_rows, bool with_grad,
                    ggml_tensor * iota, size_t transpose_chunk_bytes, head_inputs & in, size_t & transient) {
    const int64_t R = hidden->ne[1], V = m.output->ne[1];
    in = head_inputs();
    head_out out;
    for (int64_t r0 = 0; r0 < R; r0 += chunk_rows) {
        const int64_t c = std::min(chunk_rows, R - r0);
        ggml_tensor * h = ggml_view_2d(ctx, hidden, hidden->ne[0], c, hidden->nb[1], r0 * hidden->nb[1]);  // [n_embd, c]
        ggml_tensor * t = ggml_new_tensor_2d(ctx, GGML_TYPE_I32, 1, c);
        ggml_set_input(t);
        in.targets.push_back(t);
        in.offset.push_back(r0);
        ggml_tensor * logits = ggml_mul_mat(ctx, m.output, h);          // [V, c]
        const float cap = m.hp.traits.final_softcap;
        // gemma2: z = cap·tanh(logits / cap) (forward only: the head's gradient is written out below)
        if (cap > 0.0f) logits = ggml_scale(ctx, ggml_tanh(ctx, ggml_scale(ctx, logits, 1.0f / cap)), cap);
        ggml_tensor * p = ggml_soft_max(ctx, logits);                   // [V, c]
        ggml_tensor * am = ggml_reshape_2d(ctx, ggml_argmax(ctx, logits), 1, c);  // I32 [1, c]
        // One element per column: GET_ROWS over [1, V, c] (rows of length 1, batch = column).
        auto pick = [&](ggml_tensor * x, ggml_tensor * idx) {
            return ggml_reshape_2d(ctx, ggml_get_rows(ctx, ggml_reshape_3d(ctx, x, 1, V, c), idx), 1, c);  // [1, c]
        };
        ggml_tensor * lse = ggml_sub(ctx, pick(logits, am), ggml_log(ctx, pick(p, am)));
        ggml_tensor * logp = ggml_sub(ctx, pick(logits, t), lse);      // [1, c]
        out.order.push_back(logp);
        out.logp = out.logp ? ggml_concat(ctx, out.logp, logp, 1) : logp;
        if (with_grad) {
            ggml_tensor * wt = ggml_get_rows(ctx, m.output, ggml_reshape_1d(ctx, t, c));  // W[:, t] F32 [n_embd, c]
            ggml_tensor * pw = p;
            if (cap > 0.0f) {
                // ∂z_j/∂logit_j = g_j = 1 - (z_j / cap)², so u = W·((e_t - p) ⊙ g) = g_t·W[:, t] - W·(p ⊙ g).
                ggml_tensor * g = ggml_scale_bias(ctx, ggml_sqr(ctx, ggml_scale(ctx, logits, 1.0f / cap)), -1.0f, 1.0f);  // [V, c]
                wt = ggml_mul(ctx, wt, pick(g, t));
                pw = ggml_mul(ctx, p, g);
            }
            ggml_tensor * wp = frozen_matmul_t(ctx, m.output, pw, iota, transpose_chunk_bytes, transient);  // [n_embd, c]
            ggml_tensor * u = ggml_sub(ctx, wt, wp);
            out.order.push_back(u);
            out.u = out.u ? ggml_concat(ctx, out.u, u, 1) : u;
        }
    }
    out.chunks = static_cast<int64_t>(in.targets.size());
    return out;
}

void set_head_inputs(const head_inputs & in, const std::vector<int32_t> & targets) {
    for (size_t i = 0; i < in.targets.size(); ++i) {
        const size_t c = static_cast<size_t>(in.targets[i]->ne[1]);
        ggml_backend_tensor_set(in.targets[i], targets.data() + in.offset[i], 0, c * sizeof(int32_t));
    }
}

}  // namespace w2s
