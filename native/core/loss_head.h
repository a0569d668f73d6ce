// The output head and its log-softmax in chunks of rows, with the gradient written out instead of left to
// autodiff, so that neither the logits of all response rows nor a one-hot label tensor ([n_vocab, R] F32
// each) ever exists. For hidden states h_r (the final-norm output of row r) and W = the output matrix
// (ne [n_embd, n_vocab], any type):
//   logits_r = Wᵀh_r,  p_r = softmax(logits_r),  log p_r(t) = logits_r[t] - lse_r
//   lse_r    = logits_r[a] - log p_r[a] with a = argmax (p_r[a] >= 1/n_vocab, so no underflow)
//   u_r      = ∂ log p_r(t) / ∂h_r = W[:, t] - W·p_r     (F32 [n_embd]; W·p through frozen_matmul_t)
// A loss L(log p) then gives ∂L/∂h_r = (∂L/∂ log p_r(t))·u_r, which the trainer feeds to autodiff as the
// gradient of the hidden states (the body's backward starts there). Per chunk of c rows the head holds
// logits and p (2·c·n_vocab·4 bytes) plus the transposed-weight chunks of frozen_grad.h.
#pragma once
#include <cstdint>
#include <vector>

#include "train_model.h"

namespace w2s {

struct head_inputs {
    std::vector<ggml_tensor *> targets;  // per chunk: I32 [1, c] target token of each row
    std::vector<int64_t> offset;         // first row of each chunk
};

struct head_out {
    ggml_tensor * logp = nullptr;  // F32 [1, R]: log p(target) per row (chunks concatenated along dim 1)
    ggml_tensor * u = nullptr;     // F32 [n_embd, R]: ∂ log p / ∂h per row; null when forward only
    // Each chunk's results, to be expanded into the graph in this order before anything that reads
    // logp or u: the chunks then run one after another and the allocator reuses their buffers.
    std::vector<ggml_tensor *> order;
    int64_t chunks = 0;
};

// Rows per chunk so that the chunk's logits and probabilities fit `budget_bytes` (at least 1).
int64_t head_chunk_rows(int64_t n_vocab, int64_t R, size_t budget_bytes);

// `hidden` F32 [n_embd, R]; `iota` an I32 input of >= n_vocab entries (frozen_grad.h) when with_grad and the
// head is not F32. Adds the transposed-chunk bytes to `transient` (max).
head_out build_head(ggml_context * ctx, const train_model & m, ggml_tensor * hidden, int64_t chunk_rows, bool with_grad,
                    ggml_tensor * iota, size_t transpose_chunk_bytes, head_inputs & in, size_t & transient);

// `targets` has R entries (token ids), in row order.
void set_head_inputs(const head_inputs & in, const std::vector<int32_t> & targets);

}  // namespace w2s
