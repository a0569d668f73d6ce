// A LoRA training session on one base model: micro-batch forward + backward into gradient accumulators,
// AdamW steps with global-norm clipping, forward-only log-probs (for parity checks), adapter and
// checkpoint files. Runs its graphs through a ggml backend scheduler (GPU when the build has one, CPU
// otherwise). Not thread-safe: one call at a time (the TS driver serialises them).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "lora.h"
#include "train_model.h"

namespace w2s {

struct graph_inputs;

// How the input gradient through a frozen weight is computed (see frozen_grad.h).
enum class frozen_grad_mode {
    mul_mat,   // MUL_MAT with a transient F32 transpose: runs on CPU, CUDA and Vulkan for every base type
    out_prod,  // ggml autodiff as is (OUT_PROD with the stored type): the reference, CPU only for non-F32 bases
};

// How the output head and its log-softmax enter the graph (see loss_head.h).
enum class head_mode {
    chunked,  // rows in chunks, gradient written out: no [n_vocab, R] logits or labels (default)
    dense,    // logits of all rows + CROSS_ENTROPY_LOSS on one-hot labels through autodiff: the reference,
              // and the path used when the head itself has a LoRA pair
};

struct trainer_params {
    int rank = 8;
    float alpha = 16.0f;
    float dropout = 0.0f;
    uint32_t targets = 0x7f;  // all seven projections
    uint64_t seed = 0;
    int n_threads = 1;
    std::string init_adapter;  // continue from this adapter instead of a fresh initialisation
    std::string gpu;           // pick_gpus (backend.h): "" the first GPU if any, "none" the CPU, "CUDA"/"Vulkan" that backend
    frozen_grad_mode frozen_grad = frozen_grad_mode::mul_mat;
    head_mode head = head_mode::chunked;
    size_t head_chunk_bytes = size_t(256) << 20;      // logits + probabilities of one chunk of rows
    size_t transpose_chunk_bytes = size_t(64) << 20;  // one transposed chunk of a frozen weight (frozen_grad.h)
    // false (default): activations without a backward pass (GELU, tanh) compute the backend's own kernels in
    // the forward pass, as llama.cpp's inference does (train_graph.h, forward_swap); the gradient is that of
    // the smooth form. true: the smooth forms in the forward pass too, so that the loss is exactly the
    // function whose gradient is computed (finite-difference checks; GELU's CPU kernel is an F16 table).
    bool smooth_forward = false;
    // On the CPU backend (mul_mat mode), the graph's remaining F32 OUT_PRODs (attention backward, LoRA
    // factors) run the register-tiled kernel of cpu_out_prod.h instead of ggml's. false: ggml's own.
    bool cpu_out_prod = true;
    // On the CPU backend (mul_mat mode), the graph's MUL_MATs of F32 activations by an F32, F16 or quantized
    // matrix (the projections, the chunked head, the input gradients through transposed frozen weights) run
    // the packed GEMM of cpu_gemm.h instead of ggml's (tinyBLAS, vec_dot). false: ggml's own.
    bool cpu_gemm = true;
    // Activation checkpointing (chunked head only): keep each layer's input, recompute the layer in the
    // backward pass (+1 forward of compute; activations of one layer at a time instead of all). auto = on
    // when the whole graph's activations would pass checkpoint_auto_bytes.
    enum class checkpointing { auto_, on, off } checkpoint = checkpointing::auto_;
    // 0: derived from the device (checkpoint_auto_budget).
    size_t checkpoint_auto_bytes = 0;
};

// auto checkpointing's budget: an eighth of the device's memory (the CPU's physical RAM; a GPU's free
// memory), never under 256 MiB. Recomputing costs ~20–25% of a step (one more forward of the body), so it is
// paid where activations would take a real share of memory, not for a small model on a large machine.
inline constexpr size_t CHECKPOINT_AUTO_MIN_BYTES = size_t(256) << 20;
size_t checkpoint_auto_budget(ggml_backend_t backend);

// One micro-batch: B sequences padded to T tokens. targets[i] is the token that position i must predict
// (the next token of a response), or -1 where no loss applies (prompt, padding, last position).
struct train_batch {
    int64_t T = 0, B = 0;
    std::vector<int32_t> tokens;
    std::vector<int32_t> targets;
};

struct adamw_params {
    float lr = 2e-4f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.0f;
    float clip = 1.0f;  // max global gradient norm; <= 0 = no clipping
};

// Preference optimisation on pairs of sequences (accumulate_pairs). A pair batch holds 2P sequences: sequence
// 2i is the chosen response of pair i, 2i+1 the rejected one; the log-prob of a sequence is the sum of
// log p(target) over its targets (response tokens + EOS; the prompt carries no target).
enum class pref_loss {
    dpo,   // -log σ(β·[(lc - ref_c) - (lr - ref_r)])
    orpo,  // -ℓ̄c + λ·(-log σ(log odds(ℓ̄c) - log odds(ℓ̄r))), ℓ̄ = log-prob / targets, odds = p/(1-p), p = exp(ℓ̄)
};

struct pref_params {
    pref_loss kind = pref_loss::dpo;
    float beta = 0.1f;    // DPO: scale of the implicit reward β·log(π/πref)
    float lambda = 0.1f;  // ORPO: weight of the odds-ratio term
};

// ORPO's log(1 - exp(ℓ̄)) is -inf at ℓ̄ = 0 (every response token at probability 1 in F32). Before the odds
// term ℓ̄ is clamped to at most this value (p <= 0.9999 per token on average, log odds <= ~9.2); above it the
// odds term passes no gradient to that response (like torch.clamp), the SFT term still does. TRL applies no
// guard (its log1p(-exp(ℓ̄)) gives -inf and then NaN there).
inline constexpr float ORPO_MAX_MEAN_LOGP = -1e-4f;

struct pref_result {
    double loss_sum = 0.0;           // Σ over the batch's pairs of the pair loss (loss_scale not applied); NaN if any log-prob is
    std::vector<double> logps;       // per sequence: Σ log p(target) under the current policy (2P values)
    std::vector<int64_t> n_targets;  // per sequence: number of targets
};

// What a micro-batch of the largest shape needs, measured by building its graphs and reserving their
// buffers (ggml_backend_sched_reserve) without running them.
struct memory_plan {
    size_t weights = 0;      // the frozen base in its stored types
    size_t lora = 0;         // LoRA parameters, gradient accumulators, AdamW moments
    size_t compute = 0;      // the scheduler's compute buffers: activations, gradients, head chunks, transposes
    size_t checkpoints = 0;  // layer inputs + 2 gradient buffers when checkpointing
    bool checkpointing = false;
    std::string device;
    size_t device_free = 0, device_total = 0;  // as the ggml device reports them (CPU: total RAM for both)
    size_t total() const { return weights + lora + compute + checkpoints; }
};

class trainer {
public:
    static std::unique_ptr<trainer> create(const std::string & model_path, const trainer_params & p, std::string & err);
    ~trainer();

    // Adds d(loss_scale · Σ -log p(target))/dθ to the accumulators; returns Σ -log p(target) over the batch
    // in `loss_sum` and the number of targets in `n_targets`.
    bool accumulate(const train_batch & batch, float loss_scale, double & loss_sum, int64_t & n_targets, std::string & err);

    // Preference loss over a pair batch (layout above): adds d(loss_scale · Σ_pairs loss)/dθ to the accumulators.
    // DPO needs `ref_logps` (2P per-sequence reference log-probs, same layout); ORPO ignores it. Every sequence
    // needs at least one target. One graph: per-sequence views of the selected rows' hidden states, each
    // projected to logits and reduced by cross-entropy (so per-sequence sums are exact log-softmax sums), then
    // the pair losses from scalar ops with backward passes (log σ(z) = -softplus(-z)).
    bool accumulate_pairs(const train_batch & batch, const pref_params & p, const std::vector<double> & ref_logps,
                          float loss_scale, pref_result & out, std::string & err);

    // Forward only, through the same per-sequence graph as accumulate_pairs: Σ log p(target) per sequence of
    // the batch (0 for a sequence without targets), with or without the adapter. DPO's reference log-probs.
    bool sequence_logprobs(const train_batch & batch, bool use_lora, std::vector<double> & out, std::string & err);

    // The memory plan of one micro-batch of B sequences padded to T tokens (pairs: B = 2 × pairs, DPO/ORPO's
    // graph), every position but each sequence's last carrying a target (the most rows that shape can have).
    // A false return with `err` means the graphs could not even be reserved (out of memory).
    bool plan(int64_t T, int64_t B, bool pairs, memory_plan & out, std::string & err);

    // AdamW on the accumulated gradients (clipped to p.clip), then clears them. Returns the gradient norm.
    bool step(const adamw_params & p, double & grad_norm, std::string & err);

    // Forward only: log p(target) at each position with a target (in order), with or without the adapter.
    bool logprobs(const train_batch & batch, bool use_lora, std::vector<double> & out, std::string & err);

    bool save_adapter(const std::string & path, std::string & err) const;
    bool save_checkpoint(const std::string & path, const std::string & state, std::string & err) const;
    bool load_checkpoint(const std::string & path, std::string & state, std::string & err);

    // Parameter access for tests (gradient checks): flat F32 values of all A then B tensors in pair order.
    std::vector<float> get_params() const;
    void set_params(const std::vector<float> & v);
    std::vector<float> get_grads() const;
    void clear_grads();

    int64_t step_count() const { return step_; }
    const train_hparams & hparams() const { return model_->hp; }
    size_t n_params() const;
    std::string backend_name() const;
    // "OP src0-type src1-type" -> count over the last forward + backward graph (accumulate or
    // accumulate_pairs): which ops, on which types, a backend must run to train this model.
    const std::vector<std::pair<std::string, int>> & last_graph_ops() const { return last_graph_ops_; }
    // Bytes of the largest transient weight transpose in the last backward graph (0 in out_prod mode).
    size_t last_transient_bytes() const { return last_transient_bytes_; }
    // Compute-buffer bytes the scheduler holds after the last graph (activations, gradients, head chunks;
    // the largest graph so far, since buffers only grow).
    size_t compute_bytes() const;

private:
    trainer() = default;
    bool check_batch(const train_batch & b, std::string & err) const;
    // Recreates the scheduler when a graph needs more nodes than it was made for (pair graphs grow with P).
    bool ensure_sched(size_t graph_size, std::string & err);
    // Builds forward + backward of `loss` (gradients added into the LoRA accumulators), allocates it,
    // lets `set_inputs` fill the graph inputs, seeds d(loss) = 1 and runs it. `what` names the batch in errors.
    // (node, tensor) pairs: the node's gradient is that tensor instead of coming from `loss` (which then
    // only satisfies ggml's need for a loss node). For a computed node (the hidden states) the tensor is its
    // given gradient (a node of the same graph, or a filled buffer); for a parameter-flagged input (a
    // checkpointed layer's input) it is a zeroed accumulator that receives the input's gradient.
    using grad_seeds = std::vector<std::pair<ggml_tensor *, ggml_tensor *>>;
    // `order`: nodes to expand first, in order (the chunked head). `iota`: an existing index input for the
    // frozen-weight rewrite.
    bool run_backward(ggml_context * ctx, ggml_tensor * loss, size_t graph_size, const std::function<void()> & set_inputs,
                      const std::string & what, std::string & err, const std::vector<ggml_tensor *> & order = {},
                      const grad_seeds & seeds = {}, ggml_tensor * iota = nullptr, graph_inputs * swaps = nullptr);
    bool chunked_head() const;
    // On the CPU backend in mul_mat mode: the CPU kernels of cpu_out_prod.h and cpu_gemm.h in place of ggml's
    // OUT_PROD and MUL_MAT nodes of a training graph (after the op audit has seen it).
    void use_cpu_kernels(ggml_context * ctx, ggml_cgraph * gf) const;
    // Applies (or, with smooth_forward, drops) the graph's pending forward swaps.
    void finish_swaps(graph_inputs & in) const;
    // Node capacity for a graph with R target rows: the body + the chunked head's nodes.
    size_t graph_capacity(int64_t R, int64_t B) const;
    // The chunked head over the batch's target rows: hidden states, head, inputs, and (when training) an
    // index input for the transposes. Fills logp/u per row in row order.
    // The part of a training graph after the final norm: from the hidden states (F32 [n_embd, R]) the
    // chunked head, ∂loss/∂hidden, and what it needs set after allocation.
    struct top_part {
        std::vector<ggml_tensor *> order;
        ggml_tensor * logp = nullptr;  // F32 [1, R]
        ggml_tensor * dh = nullptr;    // F32 [n_embd, R]
        std::function<void()> set_inputs;
    };
    using top_builder = std::function<top_part(ggml_context *, ggml_tensor * hidden, ggml_tensor * iota)>;
    // Forward + backward of one micro-batch with the loss given by `top`: one graph, or with activation
    // checkpointing one forward graph that keeps each layer's input, the top, then one graph per layer
    // (recompute, backward). `logp` receives the rows' log-probs.
    bool train_chunked(const train_batch & batch, const std::vector<int32_t> & rows, const top_builder & top,
                       std::vector<double> & logp, const std::string & what, std::string & err);
    bool use_checkpointing(const train_batch & batch) const;
    bool accumulate_chunked(const train_batch & batch, float loss_scale, double & loss_sum, int64_t & n_targets, std::string & err);
    bool accumulate_pairs_chunked(const train_batch & batch, const pref_params & p, const std::vector<double> & ref_logps,
                                  float loss_scale, pref_result & out, std::string & err);
    // Forward only: log p(target) of every target row, in row order.
    bool row_logprobs_chunked(const train_batch & batch, bool use_lora, std::vector<double> & out, std::string & err);
    ggml_backend_t backend_ = nullptr;      // where weights and parameters live
    ggml_backend_t cpu_ = nullptr;          // fallback for ops the primary backend lacks
    ggml_backend_sched_t sched_ = nullptr;
    std::unique_ptr<train_model> model_;
    std::unique_ptr<lora_set> lora_;
    trainer_params params_;
    int64_t step_ = 0;        // optimizer steps taken
    uint64_t micro_ = 0;      // micro-batches since the last optimizer step (dropout mask stream)
    size_t graph_size_ = 0;
    size_t checkpoint_auto_bytes_ = CHECKPOINT_AUTO_MIN_BYTES;  // resolved at creation (trainer_params)
    size_t sched_size_ = 0;   // node capacity of sched_ when raised by ensure_sched (0 = graph_size_)
    bool reserve_only_ = false;  // plan(): graphs are reserved, not run (no inputs set, nothing read back)
    std::vector<std::pair<std::string, int>> last_graph_ops_;
    size_t last_transient_bytes_ = 0;
};

}  // namespace w2s
