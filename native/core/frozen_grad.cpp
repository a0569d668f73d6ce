#include "frozen_grad.h"

#include <algorithm>
#include <map>
#include <unordered_map>
#include <unordered_set>

#include "ggml-backend.h"

namespace w2s {

ggml_tensor * new_iota(ggml_context * ctx, int64_t n) {
    ggml_tensor * t = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, n);
    ggml_set_name(t, "frozen_grad.iota");
    ggml_set_input(t);
    return t;
}

void set_iota(ggml_tensor * iota) {
    if (!iota || !iota->buffer) return;  // not in the graph (no non-F32 weight needed it)
    std::vector<int32_t> v(static_cast<size_t>(iota->ne[0]));
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<int32_t>(i);
    ggml_backend_tensor_set(iota, v.data(), 0, v.size() * sizeof(int32_t));
}

ggml_tensor * frozen_matmul_t(ggml_context * ctx, ggml_tensor * w, ggml_tensor * dy, ggml_tensor * iota, size_t chunk_bytes,
                              size_t & transient) {
    const int64_t n_in = w->ne[0], n_out = w->ne[1], N = dy->ne[1];
    const int64_t k = std::max<int64_t>(1, std::min<int64_t>(n_out, static_cast<int64_t>(chunk_bytes / (sizeof(float) * n_in))));
    const bool f32 = w->type == GGML_TYPE_F32;
    ggml_tensor * sum = nullptr;
    for (int64_t o0 = 0; o0 < n_out; o0 += k) {
        const int64_t n = std::min(k, n_out - o0);
        ggml_tensor * deq = f32 ? ggml_view_2d(ctx, w, n_in, n, w->nb[1], o0 * w->nb[1])                 // [n_in, n]
                                : ggml_get_rows(ctx, w, ggml_view_1d(ctx, iota, n, o0 * sizeof(int32_t)));
        ggml_tensor * wt = ggml_cont(ctx, ggml_transpose(ctx, deq));                                     // F32 [n, n_in]
        ggml_format_name(wt, "%s rows %lld (transposed)", w->name, static_cast<long long>(o0));
        ggml_tensor * d = n == n_out ? dy : ggml_cont(ctx, ggml_view_2d(ctx, dy, n, N, dy->nb[1], o0 * dy->nb[0]));  // [n, N]
        ggml_tensor * part = ggml_mul_mat(ctx, wt, d);                                                  // [n_in, N]
        sum = sum ? ggml_add(ctx, sum, part) : part;
        transient = std::max(transient, static_cast<size_t>(n * n_in) * sizeof(float) * (f32 ? 1 : 2));
    }
    return sum;
}

frozen_grad_graph rewrite_frozen_grads(ggml_context * ctx, ggml_cgraph * gf, const std::vector<ggml_tensor *> & frozen,
                                       size_t graph_size, size_t chunk_bytes, ggml_tensor * iota) {
    frozen_grad_graph out;
    const std::unordered_set<const ggml_tensor *> is_frozen(frozen.begin(), frozen.end());
    int64_t max_rows = 0;
    std::vector<ggml_tensor *> targets;
    for (int i = 0; i < ggml_graph_n_nodes(gf); ++i) {
        ggml_tensor * n = ggml_graph_node(gf, i);
        if (n->op != GGML_OP_OUT_PROD || !is_frozen.count(n->src[0])) continue;
        ggml_tensor * t = n->src[1];
        // Only the shape autodiff builds for a 2-D weight: OUT_PROD(W, TRANSPOSE(dy)), dy [n_out, N].
        if (t->op != GGML_OP_TRANSPOSE || ggml_n_dims(n->src[0]) > 2 || t->src[0]->ne[2] != 1 || t->src[0]->ne[3] != 1) continue;
        targets.push_back(n);
        if (n->src[0]->type != GGML_TYPE_F32) max_rows = std::max(max_rows, n->src[0]->ne[1]);
    }
    out.iota = iota;
    if (max_rows > 0 && (!iota || iota->ne[0] < max_rows)) out.iota = new_iota(ctx, max_rows);
    // One transpose per use: a weight used twice (tied embeddings) is transposed again rather than kept alive.
    for (ggml_tensor * n : targets) {
        ggml_tensor * dy = n->src[1]->src[0];  // [n_out, N]
        ggml_tensor * dx = frozen_matmul_t(ctx, n->src[0], dy, out.iota, chunk_bytes, out.transient_bytes);
        // Take over the computed node: same result shape ([n_in, N]) and type (F32); neither MUL_MAT nor ADD
        // has op params.
        n->op = dx->op;
        n->src[0] = dx->src[0];
        n->src[1] = dx->src[1];
        out.rewritten += 1;
    }
    // Rebuilding from every node in order keeps the input graph's order and places each transpose right
    // before the node that reads it.
    out.graph = ggml_new_graph_custom(ctx, graph_size, false);
    for (int i = 0; i < ggml_graph_n_nodes(gf); ++i) ggml_build_forward_expand(out.graph, ggml_graph_node(gf, i));
    return out;
}

std::vector<std::pair<std::string, int>> graph_op_signatures(ggml_cgraph * gf) {
    std::map<std::string, int> counts;
    for (int i = 0; i < ggml_graph_n_nodes(gf); ++i) {
        const ggml_tensor * n = ggml_graph_node(gf, i);
        switch (n->op) {
            case GGML_OP_NONE: case GGML_OP_VIEW: case GGML_OP_RESHAPE: case GGML_OP_PERMUTE: case GGML_OP_TRANSPOSE:
                continue;
            default: break;
        }
        std::string s = ggml_op_desc(n);
        for (int j = 0; j < 2; ++j) {
            if (n->src[j]) s += std::string(" ") + ggml_type_name(n->src[j]->type);
        }
        counts[s] += 1;
    }
    return {counts.begin(), counts.end()};
}

}  // namespace w2s
