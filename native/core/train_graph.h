// The training forward graph of the llama family (llama, qwen2, qwen3, gemma, gemma2, phi3) with LoRA on the projections: plain
// attention (flash attention has no backward pass), F32 activations. Sequences of one batch are padded to a
// common length T and run side by side; the causal mask keeps real tokens from seeing padding after them.
#pragma once
#include <cstdint>
#include <vector>

#include "lora.h"
#include "train_model.h"

namespace w2s {

// A node built as a differentiable composite whose forward value should be another op's (`exact`, same
// shape, built from nodes of the same graph, never added to it): GELU's ggml kernel is a table over F16
// inputs and has no backward, so the graph differentiates the smooth tanh form and, once autodiff has
// built the backward pass, the composite's node computes llama.cpp's own op (apply_forward_swaps). The
// composite's inner nodes stay in the graph for the gradients that read them.
struct forward_swap {
    ggml_tensor * node = nullptr;
    ggml_tensor * exact = nullptr;
};

struct graph_inputs {
    ggml_tensor * tokens = nullptr;     // I32 [T*B]   token ids, sequence-major (b*T + t)
    ggml_tensor * positions = nullptr;  // I32 [T*B]   0..T-1 for each sequence
    ggml_tensor * mask = nullptr;       // F32 [T, T]  0 where key <= query, -inf above the diagonal
    ggml_tensor * mask_swa = nullptr;   // F32 [T, T]  also -inf where query - key >= n_swa (sliding layers, T > n_swa)
    int64_t n_swa = 0;
    std::vector<forward_swap> swaps;    // pending until apply_forward_swaps
    std::vector<ggml_tensor *> dropout; // F32 [n_in, T*B] per LoRA pair when dropout > 0 (0 or 1/(1-p))
    ggml_tensor * rows = nullptr;       // I32 [R]     positions (b*T + t) whose logits are needed
};

// Builds logits (F32 [n_vocab, R]) for R selected positions in `ctx` (no_alloc). Only those rows go
// through the output projection: prompt positions cost nothing there, and cross-entropy sees no rows
// without a target (ggml's CROSS_ENTROPY_LOSS backward assumes every label row sums to 1).
// `lora` may be null (base model only).
ggml_tensor * build_logits(ggml_context * ctx, const train_model & m, const lora_set * lora, float lora_scale,
                           int64_t T, int64_t B, int64_t R, bool with_dropout, graph_inputs & in);

// The same graph up to the final norm: hidden states (F32 [n_embd, R]) of the R selected positions, so that a
// caller can project column ranges (e.g. one sequence's rows) separately: build_logits = output · hidden.
ggml_tensor * build_hidden(ggml_context * ctx, const train_model & m, const lora_set * lora, float lora_scale,
                           int64_t T, int64_t B, int64_t R, bool with_dropout, graph_inputs & in);

// output · h (+ s·B·(A·h) when `lora` adapts the head) for hidden states h [n_embd, n] -> [n_vocab, n].
// The head's LoRA input gets no dropout (it would need a mask per projected column range).
ggml_tensor * project_output(ggml_context * ctx, const train_model & m, const lora_set * lora, float lora_scale, ggml_tensor * h);

// The pieces of build_hidden, for graphs that hold one layer at a time (activation checkpointing):
// fresh inputs in `in`; layer `il` from its input x [n_embd, T*B] (appends the layer's dropout masks to
// in.dropout); the selected rows through the final norm.
void new_graph_inputs(ggml_context * ctx, int64_t T, int64_t B, int64_t R, graph_inputs & in);
// The token embeddings of in.tokens, F32 [n_embd, T*B] (× √n_embd for gemma).
ggml_tensor * build_embed(ggml_context * ctx, const train_model & m, graph_inputs & in);
ggml_tensor * build_layer(ggml_context * ctx, const train_model & m, const lora_set * lora, float lora_scale, int il,
                          ggml_tensor * x, int64_t T, int64_t B, bool with_dropout, graph_inputs & in);
ggml_tensor * build_final(ggml_context * ctx, const train_model & m, ggml_tensor * x, graph_inputs & in);

// Makes every pending swap's node compute its exact op; call after ggml_build_backward_expand, or right
// after building a graph that has no backward pass. Clears the list.
void apply_forward_swaps(graph_inputs & in);

// c·tanh(x / c), differentiable (ggml has no TANH backward): tanh(z) = 1 - 2·sigmoid(-2z) with
// sigmoid(y) = exp(-softplus(-y)), whose pieces all have backward passes; F32 error ~1e-7 relative.
ggml_tensor * softcap(ggml_context * ctx, ggml_tensor * x, float c);

// Fills the inputs after allocation (those the graph does not use are skipped). `tokens` has T*B entries,
// `rows` R. Dropout masks from (seed, step, dropout_offset + mask index): a graph holding only layer l passes
// the number of masks of the layers before it, so that its masks equal those of the whole graph.
void set_graph_inputs(const graph_inputs & in, const std::vector<int32_t> & tokens, const std::vector<int32_t> & rows,
                      int64_t T, int64_t B, float dropout, uint64_t seed, uint64_t step, size_t dropout_offset = 0);

}  // namespace w2s
