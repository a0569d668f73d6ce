// Input gradients through frozen weights as MUL_MAT, so that a training graph on a quantized or F16 base runs
// on every ggml backend. ggml's autodiff writes dx = W·dy for y = W·x (W frozen, ne [n_in, n_out]; x
// [n_in, N]; dy [n_out, N]) as OUT_PROD(W, dyᵀ), and CUDA, Vulkan and Metal run OUT_PROD only on F32 sources
// (Metal not at all). MUL_MAT needs the contraction (n_out) innermost in both operands, which a quantized W
// cannot give (its blocks run along n_in), so each rewritten node reads a transient F32 transpose:
//   Wᵀ_k = CONT(TRANSPOSE(GET_ROWS(W, rows k)))   F32 [k, n_in]   (F32 W: CONT(TRANSPOSE(view of W)))
//   dx   = Σ_k MUL_MAT(Wᵀ_k, dy[rows k])          F32 [n_in, N]
// in chunks of k output rows (k·n_in·4 bytes <= chunk_bytes). GET_ROWS dequantizes every type on CPU, CUDA
// and Vulkan. A chunk's transpose exists only while its product runs (the allocator reuses it), so the memory
// cost is 2 × chunk_bytes plus the [n_in, N] partial sums, not a second copy of the weights: a 128k-token
// output head of width 4096 is 2.1 GB in F32.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "ggml.h"

namespace w2s {

inline constexpr size_t DEFAULT_TRANSPOSE_CHUNK_BYTES = size_t(64) << 20;

// W·dy for a frozen W (ne [n_in, n_out], any type) and dy (F32 [n_out, N]) with MUL_MATs only, as above.
// `iota` is an I32 input of at least n_out entries 0, 1, … (unused for F32 W). Adds the transient bytes of
// the largest chunk to `transient` (max).
ggml_tensor * frozen_matmul_t(ggml_context * ctx, ggml_tensor * w, ggml_tensor * dy, ggml_tensor * iota, size_t chunk_bytes,
                              size_t & transient);

struct frozen_grad_graph {
    ggml_cgraph * graph = nullptr;  // the rewritten graph (every node of the input graph, in order)
    ggml_tensor * iota = nullptr;   // I32 [max n_out] = 0, 1, …: set after allocation (null when unused)
    int rewritten = 0;              // OUT_PROD nodes turned into MUL_MAT
    size_t transient_bytes = 0;     // the largest Wᵀ plus its dequantized source
};

// Rewrites every OUT_PROD(W, TRANSPOSE(dy)) of `gf` whose W is one of `frozen` into MUL_MAT(Wᵀ, dy) and
// returns a new graph of capacity `graph_size` in `ctx` (the input graph keeps its gradient bookkeeping).
// `iota` may be null (one is created when a weight needs it) or an existing input of enough entries.
frozen_grad_graph rewrite_frozen_grads(ggml_context * ctx, ggml_cgraph * gf, const std::vector<ggml_tensor *> & frozen,
                                       size_t graph_size, size_t chunk_bytes, ggml_tensor * iota = nullptr);

// An I32 [n] input for frozen_matmul_t (fill with set_iota).
ggml_tensor * new_iota(ggml_context * ctx, int64_t n);
void set_iota(ggml_tensor * iota);


// The ops of a graph as "OP src0-type src1-type" with counts (sorted), for audits of which ops a backend
// must run. Views and reshapes (no compute) are left out.
std::vector<std::pair<std::string, int>> graph_op_signatures(ggml_cgraph * gf);

}  // namespace w2s
