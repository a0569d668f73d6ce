// Trainable LoRA parameters for a train_model: per adapted projection W (ne [n_in, n_out]) a pair
// A (ne [n_in, r]) and B (ne [r, n_out]) in F32, with gradient accumulators and AdamW moments, each set in
// its own backend buffer (so gradients can be cleared without touching parameters). Adapter and
// checkpoint files are GGUF in llama.cpp's adapter format.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "train_model.h"

struct gguf_context;

namespace w2s {

struct lora_pair {
    int layer = 0;  // -1 for the output head
    int target = 0;
    std::string base;  // e.g. "blk.0.attn_q"
    ggml_tensor * a = nullptr, * b = nullptr;        // parameters
    ggml_tensor * ga = nullptr, * gb = nullptr;      // gradient accumulators
    ggml_tensor * ma = nullptr, * va = nullptr, * mb = nullptr, * vb = nullptr;  // AdamW moments
};

struct lora_set {
    int rank = 8;
    float alpha = 16.0f;
    uint32_t targets = 0x7f;  // bit t set = lora_target t adapted; bit T_OUTPUT = the output head
    std::vector<lora_pair> pairs;
    std::vector<std::vector<int>> index;  // [layer][target] -> pair index or -1
    int output_index = -1;                 // pair adapting the output head, or -1
    ggml_context * ctx_param = nullptr, * ctx_grad = nullptr, * ctx_moment = nullptr;  // tensor metadata
    ggml_backend_buffer_t buf_param = nullptr, buf_grad = nullptr, buf_moment = nullptr;
    float scale() const { return alpha / static_cast<float>(rank); }
    const lora_pair * find(int layer, int target) const {
        const int i = index[layer][target];
        return i < 0 ? nullptr : &pairs[i];
    }
    const lora_pair * output() const { return output_index < 0 ? nullptr : &pairs[output_index]; }
    ~lora_set();
};

// Allocates the pairs; A is Kaiming-uniform (bound 1/sqrt(n_in), as PEFT's kaiming_uniform_(a=sqrt(5))),
// B is zero, moments and gradients zero. Deterministic for a seed.
std::unique_ptr<lora_set> create_lora(const train_model & m, int rank, float alpha, uint32_t targets, uint64_t seed,
                                      ggml_backend_t backend, std::string & err);

// Replaces parameter values (and rank/alpha/targets) with those of an adapter GGUF written for this model.
std::unique_ptr<lora_set> load_lora_adapter(const train_model & m, const std::string & path, ggml_backend_t backend,
                                            std::string & err);

// Writes an adapter GGUF (parameters only) atomically: temp file + rename.
bool save_lora_adapter(const train_model & m, const lora_set & l, const std::string & path, std::string & err);

// Checkpoint = adapter + moments + step + an opaque state string (the TS driver's RNG and data position).
bool save_checkpoint(const train_model & m, const lora_set & l, int64_t step, const std::string & state,
                     const std::string & path, std::string & err);
// Refuses (with a "damaged" message) a checkpoint whose checksum is missing or does not match, or that holds
// a non-finite value or a negative second moment, before any of it is used.
std::unique_ptr<lora_set> load_checkpoint(const train_model & m, const std::string & path, ggml_backend_t backend,
                                          int64_t & step, std::string & state, std::string & err);

// Checkpoint content checksum, stored as a u64 KV: FNV-1a 64 over a version tag, the KVs the loader reads
// (architecture, alpha, rank, targets, step, state; each with its expected type, else false + `err`) and
// every tensor in file order (name, type, ne[0..3], byte size, bytes). `ctx` holds the tensors' data.
inline constexpr const char * CHECKPOINT_CHECKSUM_KEY = "w2s.checkpoint.checksum";
bool checkpoint_checksum(const gguf_context * g, ggml_context * ctx, uint64_t & out, std::string & err);
// False + `err` if an F32 tensor holds a non-finite value, or an AdamW second moment (`*.adam_v`) a negative one.
bool check_checkpoint_values(const gguf_context * g, ggml_context * ctx, std::string & err);

// Writes `path` through `path.tmp-<pid>` and a rename, removing the temp file on failure.
bool write_gguf_atomic(const ::gguf_context * g, const std::string & path, std::string & err);

}  // namespace w2s
