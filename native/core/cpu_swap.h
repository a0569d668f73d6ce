// Swapping graph nodes for the CPU-only kernels (cpu_out_prod.h, cpu_gemm.h). The swap happens after the GPU op
// audit has recorded the graph, on the CPU backend only: GPU backends have no custom ops.
#pragma once

#include <cstring>

#include "ggml.h"

namespace w2s {

// Turns every node of `gf` that `applies` accepts into the ggml_map_custom2 op `fn`, in place: the node keeps its
// own shape, buffer and sources (src[0], src[1] become the op's a and b). Returns the count.
inline int swap_to_custom2(ggml_context * ctx, ggml_cgraph * gf, bool (*applies)(const ggml_tensor *), ggml_custom2_op_t fn) {
    int count = 0;
    ggml_tensor * proto = nullptr;  // one for the graph: every swapped node gets the same op parameters
    for (int i = 0; i < ggml_graph_n_nodes(gf); ++i) {
        ggml_tensor * n = ggml_graph_node(gf, i);
        if (!applies(n)) continue;
        // The custom op's parameters (function, tasks, user data) as ggml_map_custom2 lays them out.
        if (!proto) proto = ggml_map_custom2(ctx, n->src[0], n->src[1], fn, GGML_N_TASKS_MAX, nullptr);
        n->op = proto->op;
        std::memcpy(n->op_params, proto->op_params, sizeof(n->op_params));
        count += 1;
    }
    return count;
}

}  // namespace w2s
