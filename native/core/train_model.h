// The frozen base model for training: hyperparameters and weights read straight from the GGUF (llama.cpp's
// own model is private), kept in a backend buffer in their stored type (F32, F16, Q8_0, Q4_0, K-quants).
// Architectures differ in small traits (biases, q/k norms, rope mode, tied output, activation, soft-caps):
// qwen3 is llama + the qk_norm trait, gemma is llama + GELU + the √n_embd embedding scale (its norm offset
// of 1 is already in the GGUF's gains: the converter adds it), gemma2 adds post-norms, soft-capping and
// sliding-window layers, phi3 stores q/k/v and gate/up fused.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "ggml-backend.h"
#include "ggml.h"

namespace w2s {

struct arch_traits {
    bool qkv_bias = false;    // qwen2: attn_q/k/v.bias
    bool qk_norm = false;     // qwen3: per-head RMS norm of q and k (attn_q_norm/attn_k_norm, ne [head_dim]) before rope
    int rope_mode = 0;        // GGML_ROPE_TYPE_NORMAL (llama) or GGML_ROPE_TYPE_NEOX (qwen2)
    bool embd_scale = false;  // gemma: token embeddings × √n_embd
    bool gelu = false;        // gemma: FFN act = GELU(gate) · up (tanh form, as llama.cpp's GEGLU) instead of SiLU
    bool post_norms = false;  // gemma2: RMS norms of the attention and FFN outputs before each residual add
    float attn_softcap = 0.0f;   // gemma2: kq = c·tanh(kq / c) before the masked softmax (0 = none)
    float final_softcap = 0.0f;  // gemma2: logits = c·tanh(logits / c) (0 = none)
    float q_scale = 0.0f;        // scale of q·k; 0 = 1/√head_dim (gemma2 27B: 1/√(n_embd / n_head))
};

struct train_hparams {
    std::string arch;
    arch_traits traits;
    int n_layer = 0, n_embd = 0, n_head = 0, n_head_kv = 0, n_ff = 0, n_vocab = 0, n_ctx_train = 0, n_rot = 0;
    float rms_eps = 1e-5f;
    float rope_base = 10000.0f;
    int n_embd_head = 0;  // attention.key_length (Qwen3 decouples it from n_embd / n_head)
    int head_dim() const { return n_embd_head; }
    // Sliding-window attention: a query at position p sees keys at p - n_swa < k <= p on the layers where
    // swa_layer[il] (llama.cpp's STANDARD type). `swa_in_graph` false: the file declares a window that
    // llama.cpp does not apply for this architecture either (phi3); sequences longer than it are refused.
    int n_swa = 0;
    std::vector<bool> swa_layer;
    bool swa_in_graph = false;
    float rope_base_swa = 0.0f;  // rope.freq_base_swa (gemma2), the sliding layers' rope base
    std::string swa_key;         // the metadata key that declared the window, for messages
};

// The seven projections LoRA can adapt, in the paper's order; names are llama.cpp's tensor names.
enum lora_target { T_Q, T_K, T_V, T_O, T_GATE, T_UP, T_DOWN, T_COUNT };
const char * lora_target_name(int t);  // "attn_q", …
// The output head (output.weight, ne [n_embd, n_vocab]) as an eighth, optional target: bit T_OUTPUT of a
// target mask. Not one of the paper's seven; useful when the base's head was never trained (a random base).
constexpr int T_OUTPUT = T_COUNT;

struct train_layer {
    ggml_tensor * attn_norm = nullptr;
    // Frozen projections, ne = [n_in, n_out]. Fused files (phi3) keep q/k/v in w[T_Q] (attn_qkv, n_out =
    // q + 2·kv rows; w[T_K], w[T_V] null) and gate/up in w[T_UP] (ffn_up, n_out = 2·n_ff, gate first;
    // w[T_GATE] null); a LoRA on the fused matrix is what llama.cpp's adapters for these files hold.
    ggml_tensor * w[T_COUNT] = {};
    bool fused_qkv = false, fused_gate_up = false;
    ggml_tensor * attn_post_norm = nullptr, * ffn_post_norm = nullptr;  // gemma2
    ggml_tensor * bq = nullptr, * bk = nullptr, * bv = nullptr;
    ggml_tensor * q_norm = nullptr, * k_norm = nullptr;
    ggml_tensor * ffn_norm = nullptr;
};

struct train_model {
    train_hparams hp;
    ggml_context * ctx = nullptr;            // tensor metadata (from gguf), data lives in `buf`
    ggml_backend_buffer_t buf = nullptr;
    ggml_tensor * tok_embd = nullptr, * output_norm = nullptr, * output = nullptr;  // output == tok_embd when tied
    ggml_tensor * rope_freqs = nullptr;  // Llama 3.1+ rope frequency factors, ne [n_rot / 2]; absent = all 1
    std::vector<train_layer> layers;
    // The base name of projection `t` of layer `il` in adapter files ("blk.3.attn_qkv"), or "" when the
    // slot is fused into another one.
    std::string weight_base(int il, int t) const;
    ~train_model();
};

// Whether device `dev` runs the ops that touch a frozen weight of `type` in a training graph: MUL_MAT
// forward and the dequantizing GET_ROWS of the input gradient (frozen_grad.h), or OUT_PROD in the
// reference mode. The rest of the graph is F32 ops (audited against the GPU backends by a test).
bool type_trainable_on(ggml_backend_dev_t dev, ggml_type type, bool out_prod_grads);

// Reads and checks the model; every unsupported case (architecture, weight type without a backward pass
// on `backend`, missing tensor) is an error here, before any graph is built. `out_prod_grads`: the input
// gradients will be ggml's OUT_PROD on the stored type (the reference mode) rather than MUL_MAT.
std::unique_ptr<train_model> load_train_model(const std::string & path, ggml_backend_t backend, bool out_prod_grads,
                                              std::string & err);

}  // namespace w2s
