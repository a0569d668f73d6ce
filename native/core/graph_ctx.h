// A no_alloc ggml context for the tensor metadata of one training graph and of its frozen-gradient rewrite
// (frozen_grad.h: a second graph and a few tensors per rewritten node), freed at scope exit.
#pragma once
#include <cstddef>

#include "ggml.h"

namespace w2s {

struct compute_ctx {
    ggml_context * ctx;
    explicit compute_ctx(size_t graph_size)
        : ctx(ggml_init({ggml_tensor_overhead() * graph_size * 3 + ggml_graph_overhead_custom(graph_size, true) * 2, nullptr, true})) {}
    ~compute_ctx() { ggml_free(ctx); }
    compute_ctx(const compute_ctx &) = delete;
    compute_ctx & operator=(const compute_ctx &) = delete;
};

}  // namespace w2s
