// LoRA parameter sets: allocation, initialisation, adapter and checkpoint files.
#include "lora.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <unistd.h>

#include "ggml-alloc.h"
#include "gguf.h"
#include "sampling.h"

namespace w2s {

lora_set::~lora_set() {
    for (ggml_backend_buffer_t b : {buf_param, buf_grad, buf_moment}) {
        if (b) ggml_backend_buffer_free(b);
    }
    for (ggml_context * c : {ctx_param, ctx_grad, ctx_moment}) {
        if (c) ggml_free(c);
    }
}

namespace {

// The frozen weight a pair adapts.
const ggml_tensor * base_weight(const train_model & m, const lora_pair & p) {
    return p.layer < 0 ? m.output : m.layers[p.layer].w[p.target];
}

// Tensor name of a pair's A in adapter files: llama.cpp's `<base weight>.lora_a`.
// "" for a slot a fused weight absorbed (phi3's attn_k/attn_v/ffn_gate).
std::string lora_a_name(const train_model & m, int layer, int target) {
    if (layer < 0) return "output.weight.lora_a";
    const std::string base = m.weight_base(layer, target);
    return base.empty() ? "" : base + ".weight.lora_a";
}

// Whether the mask asks for slot t of layer il: a fused matrix is adapted when any projection it holds is
// asked for (attn_qkv for q, k or v; phi3's ffn_up for gate or up), its absorbed slots never.
bool wants(const train_model & m, uint32_t targets, int il, int t) {
    const train_layer & L = m.layers[il];
    if (L.w[t] == nullptr) return false;
    uint32_t bits = 1u << t;
    if (t == T_Q && L.fused_qkv) bits |= (1u << T_K) | (1u << T_V);
    if (t == T_UP && L.fused_gate_up) bits |= 1u << T_GATE;
    return (targets & bits) != 0;
}

// `has(layer, target)` picks the adapted projections (layer -1: the output head); adapters made elsewhere
// may adapt a different set per layer. Without it, every layer gets the targets in the mask.
std::unique_ptr<lora_set> allocate(const train_model & m, int rank, float alpha, uint32_t targets, ggml_backend_t backend,
                                   std::string & err, const std::function<bool(int, int)> & has = nullptr) {
    auto l = std::make_unique<lora_set>();
    l->rank = rank;
    l->alpha = alpha;
    l->targets = targets;
    const int n_layer = m.hp.n_layer;
    l->index.assign(n_layer, std::vector<int>(T_COUNT, -1));
    for (int il = 0; il < n_layer; ++il) {
        for (int t = 0; t < T_COUNT; ++t) {
            if (!wants(m, targets, il, t) || (has && !has(il, t))) continue;
            lora_pair p;
            p.layer = il;
            p.target = t;
            p.base = m.weight_base(il, t);
            l->index[il][t] = static_cast<int>(l->pairs.size());
            l->pairs.push_back(p);
        }
    }
    if ((targets & (1u << T_OUTPUT)) && (!has || has(-1, T_OUTPUT))) {
        // A tied head is token_embd.weight, which llama.cpp would also adapt in the embedding lookup.
        if (m.output == m.tok_embd) {
            err = "the output head of this model is tied to the token embeddings; it cannot be a LoRA target";
            return nullptr;
        }
        lora_pair p;
        p.layer = -1;
        p.target = T_OUTPUT;
        p.base = "output";
        l->output_index = static_cast<int>(l->pairs.size());
        l->pairs.push_back(p);
    }
    if (l->pairs.empty()) {
        err = "no LoRA targets selected";
        return nullptr;
    }
    const size_t overhead = ggml_tensor_overhead() * l->pairs.size() * 4 + 1024;
    l->ctx_param = ggml_init({overhead, nullptr, true});
    l->ctx_grad = ggml_init({overhead, nullptr, true});
    l->ctx_moment = ggml_init({overhead, nullptr, true});
    for (auto & p : l->pairs) {
        const ggml_tensor * w = base_weight(m, p);
        const int64_t n_in = w->ne[0], n_out = w->ne[1];
        p.a = ggml_new_tensor_2d(l->ctx_param, GGML_TYPE_F32, n_in, rank);  // (r, n_in) row-major
        p.b = ggml_new_tensor_2d(l->ctx_param, GGML_TYPE_F32, rank, n_out); // (n_out, r) row-major
        ggml_format_name(p.a, "%s.weight.lora_a", p.base.c_str());
        ggml_format_name(p.b, "%s.weight.lora_b", p.base.c_str());
        ggml_set_param(p.a);
        ggml_set_param(p.b);
        p.ga = ggml_dup_tensor(l->ctx_grad, p.a);
        p.gb = ggml_dup_tensor(l->ctx_grad, p.b);
        p.ma = ggml_dup_tensor(l->ctx_moment, p.a);
        p.va = ggml_dup_tensor(l->ctx_moment, p.a);
        p.mb = ggml_dup_tensor(l->ctx_moment, p.b);
        p.vb = ggml_dup_tensor(l->ctx_moment, p.b);
        ggml_format_name(p.ma, "%s.weight.lora_a.adam_m", p.base.c_str());
        ggml_format_name(p.va, "%s.weight.lora_a.adam_v", p.base.c_str());
        ggml_format_name(p.mb, "%s.weight.lora_b.adam_m", p.base.c_str());
        ggml_format_name(p.vb, "%s.weight.lora_b.adam_v", p.base.c_str());
    }
    l->buf_param = ggml_backend_alloc_ctx_tensors(l->ctx_param, backend);
    l->buf_grad = ggml_backend_alloc_ctx_tensors(l->ctx_grad, backend);
    l->buf_moment = ggml_backend_alloc_ctx_tensors(l->ctx_moment, backend);
    if (!l->buf_param || !l->buf_grad || !l->buf_moment) {
        err = "could not allocate the LoRA parameters";
        return nullptr;
    }
    ggml_backend_buffer_clear(l->buf_param, 0);
    ggml_backend_buffer_clear(l->buf_grad, 0);
    ggml_backend_buffer_clear(l->buf_moment, 0);
    return l;
}

struct gguf_ptr {
    gguf_context * g = nullptr;
    ggml_context * ctx = nullptr;
    ~gguf_ptr() {
        if (g) gguf_free(g);
        if (ctx) ggml_free(ctx);
    }
};

// Copies `src` (a backend tensor) into a host tensor of the same name in `host` and adds it to `g`.
void add_host_copy(gguf_context * g, ggml_context * host, const ggml_tensor * src) {
    ggml_tensor * t = ggml_dup_tensor(host, src);
    ggml_set_name(t, src->name);
    ggml_backend_tensor_get(src, t->data, 0, ggml_nbytes(src));
    gguf_add_tensor(g, t);
}

gguf_context * adapter_header(const train_model & m, const lora_set & l) {
    gguf_context * g = gguf_init_empty();
    gguf_set_val_str(g, "general.architecture", m.hp.arch.c_str());
    gguf_set_val_str(g, "general.type", "adapter");
    gguf_set_val_str(g, "adapter.type", "lora");
    gguf_set_val_f32(g, "adapter.lora.alpha", l.alpha);
    gguf_set_val_u32(g, "w2s.lora.rank", static_cast<uint32_t>(l.rank));
    gguf_set_val_u32(g, "w2s.lora.targets", l.targets);
    return g;
}

size_t host_bytes(const lora_set & l, bool moments) {
    size_t n = 0;
    for (const auto & p : l.pairs) n += (ggml_nbytes(p.a) + ggml_nbytes(p.b)) * (moments ? 3 : 1);
    return n + ggml_tensor_overhead() * l.pairs.size() * 6 + 4096;
}

// Reads tensor `name` from a loaded GGUF into `dst` after checking its shape.
bool read_into(ggml_context * file_ctx, const std::string & name, ggml_tensor * dst, std::string & err) {
    ggml_tensor * t = ggml_get_tensor(file_ctx, name.c_str());
    if (t == nullptr) {
        err = "missing tensor " + name;
        return false;
    }
    if (t->type != GGML_TYPE_F32 || !ggml_are_same_shape(t, dst)) {
        err = "tensor " + name + " has shape [" + std::to_string(t->ne[0]) + ", " + std::to_string(t->ne[1]) + "] " +
              ggml_type_name(t->type) + ", expected [" + std::to_string(dst->ne[0]) + ", " + std::to_string(dst->ne[1]) +
              "] f32 (an adapter for another model?)";
        return false;
    }
    ggml_backend_tensor_set(dst, t->data, 0, ggml_nbytes(dst));
    return true;
}

// Loads a GGUF written by save_*: returns the file context (data in memory) and the rank/alpha/targets.
bool open_adapter(const train_model & m, const std::string & path, gguf_ptr & f, int & rank, float & alpha, uint32_t & targets,
                  std::string & err) {
    // (allocate() then builds every pair at the one rank and read_into checks each shape against the model)
    f.g = gguf_init_from_file(path.c_str(), {false, &f.ctx});
    if (f.g == nullptr) {
        err = path + " is not a complete GGUF file";
        return false;
    }
    // gguf_get_val_str / _f32 assert the stored type, so check it first.
    const int64_t ka = gguf_find_key(f.g, "general.architecture");
    const char * arch = ka >= 0 && gguf_get_kv_type(f.g, ka) == GGUF_TYPE_STRING ? gguf_get_val_str(f.g, ka) : nullptr;
    if (arch == nullptr || m.hp.arch != arch) {
        err = path + " is an adapter for architecture '" + (arch ? arch : "?") + "', the model is '" + m.hp.arch + "'";
        return false;
    }
    const int64_t kalpha = gguf_find_key(f.g, "adapter.lora.alpha");
    if (kalpha >= 0 && (gguf_get_kv_type(f.g, kalpha) != GGUF_TYPE_FLOAT32 || !std::isfinite(gguf_get_val_f32(f.g, kalpha)))) {
        err = path + ": adapter.lora.alpha is not a finite FLOAT32; the adapter file is damaged";
        return false;
    }
    alpha = kalpha >= 0 ? gguf_get_val_f32(f.g, kalpha) : 0.0f;
    // Rank and targets from the tensors (adapters made elsewhere carry no w2s keys). One rank for the file:
    // the trainer scales every pair by alpha / rank.
    rank = 0;
    targets = 0;
    std::string rank_from;
    const auto note = [&](int il, int target) {
        if (!err.empty()) return;
        const std::string name = lora_a_name(m, il, target);
        if (name.empty()) return;
        const ggml_tensor * a = ggml_get_tensor(f.ctx, name.c_str());
        if (a == nullptr) return;
        targets |= 1u << target;
        const std::string b_name = name.substr(0, name.size() - 1) + "b";
        const ggml_tensor * b = ggml_get_tensor(f.ctx, b_name.c_str());
        const int64_t r = a->ne[1];
        if (b == nullptr) {
            err = path + ": LoRA tensor " + name + " has no " + b_name + "; the adapter file is damaged";
        } else if (r <= 0 || r > INT32_MAX || ggml_nelements(a) == 0 || ggml_nelements(b) == 0) {
            err = path + ": LoRA tensor " + name + " has rank " + std::to_string(r) + " (zero-size lora_a/lora_b); the adapter file is damaged";
        } else if (b->ne[0] != r) {
            err = path + ": " + name + " has rank " + std::to_string(r) + " but " + b_name + " has " + std::to_string(b->ne[0]) +
                  " rows; the adapter file is damaged";
        } else if (rank != 0 && r != rank) {
            err = path + ": " + name + " has rank " + std::to_string(r) + " but " + rank_from + " has rank " + std::to_string(rank) +
                  "; training continues an adapter of one rank";
        } else if (rank == 0) {
            rank = static_cast<int>(r);
            rank_from = name;
        }
    };
    for (int il = 0; il < m.hp.n_layer; ++il) {
        for (int t = 0; t < T_COUNT; ++t) note(il, t);
    }
    note(-1, T_OUTPUT);
    if (!err.empty()) return false;
    if (rank <= 0) {
        err = path + " holds no LoRA tensors for this model";
        return false;
    }
    if (alpha == 0.0f) alpha = static_cast<float>(rank);  // llama.cpp: alpha 0 means scale 1
    return true;
}

// A LoRA set with exactly the pairs present in the loaded file `f` (adapters made elsewhere may adapt a
// different set of projections per layer).
std::unique_ptr<lora_set> allocate_like(const train_model & m, const gguf_ptr & f, int rank, float alpha, uint32_t targets,
                                        ggml_backend_t backend, std::string & err) {
    ggml_context * fc = f.ctx;
    return allocate(m, rank, alpha, targets, backend, err, [fc, &m](int il, int t) {
        const std::string name = lora_a_name(m, il, t);
        return !name.empty() && ggml_get_tensor(fc, name.c_str()) != nullptr;
    });
}

}  // namespace

bool write_gguf_atomic(const gguf_context * g, const std::string & path, std::string & err) {
    const std::string tmp = path + ".tmp-" + std::to_string(getpid());
    if (!gguf_write_to_file(g, tmp.c_str(), false)) {
        std::remove(tmp.c_str());
        err = "could not write " + tmp;
        return false;
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::remove(tmp.c_str());
        err = "could not rename " + tmp + " to " + path;
        return false;
    }
    return true;
}

std::unique_ptr<lora_set> create_lora(const train_model & m, int rank, float alpha, uint32_t targets, uint64_t seed,
                                      ggml_backend_t backend, std::string & err) {
    auto l = allocate(m, rank, alpha, targets, backend, err);
    if (!l) return nullptr;
    std::vector<float> host;
    for (const auto & p : l->pairs) {
        const int64_t n_in = p.a->ne[0];
        const double bound = 1.0 / std::sqrt(static_cast<double>(n_in));
        rng r(seed, static_cast<uint64_t>(p.layer), static_cast<uint64_t>(p.target));
        host.resize(ggml_nelements(p.a));
        for (auto & v : host) v = static_cast<float>((2.0 * r.uniform() - 1.0) * bound);
        ggml_backend_tensor_set(p.a, host.data(), 0, ggml_nbytes(p.a));
    }
    return l;
}

std::unique_ptr<lora_set> load_lora_adapter(const train_model & m, const std::string & path, ggml_backend_t backend,
                                            std::string & err) {
    gguf_ptr f;
    int rank = 0;
    float alpha = 0;
    uint32_t targets = 0;
    if (!open_adapter(m, path, f, rank, alpha, targets, err)) return nullptr;
    auto l = allocate_like(m, f, rank, alpha, targets, backend, err);
    if (!l) return nullptr;
    for (auto & p : l->pairs) {
        if (!read_into(f.ctx, std::string(p.a->name), p.a, err) || !read_into(f.ctx, std::string(p.b->name), p.b, err)) {
            err = path + ": " + err;
            return nullptr;
        }
    }
    return l;
}

bool save_lora_adapter(const train_model & m, const lora_set & l, const std::string & path, std::string & err) {
    gguf_ptr out;
    out.g = adapter_header(m, l);
    out.ctx = ggml_init({host_bytes(l, false), nullptr, false});
    for (const auto & p : l.pairs) {
        add_host_copy(out.g, out.ctx, p.a);
        add_host_copy(out.g, out.ctx, p.b);
    }
    return write_gguf_atomic(out.g, path, err);
}

bool save_checkpoint(const train_model & m, const lora_set & l, int64_t step, const std::string & state,
                     const std::string & path, std::string & err) {
    gguf_ptr out;
    out.g = adapter_header(m, l);
    gguf_set_val_str(out.g, "general.type", "w2s-checkpoint");  // not an adapter: llama.cpp must not load it
    gguf_set_val_u64(out.g, "w2s.checkpoint.step", static_cast<uint64_t>(step));
    gguf_set_val_str(out.g, "w2s.checkpoint.state", state.c_str());
    out.ctx = ggml_init({host_bytes(l, true), nullptr, false});
    for (const auto & p : l.pairs) {
        for (const ggml_tensor * t : {p.a, p.b, p.ma, p.va, p.mb, p.vb}) add_host_copy(out.g, out.ctx, t);
    }
    // Over the host copies just added, exactly what load_checkpoint will hash from the file.
    uint64_t sum = 0;
    if (!checkpoint_checksum(out.g, out.ctx, sum, err)) return false;
    gguf_set_val_u64(out.g, CHECKPOINT_CHECKSUM_KEY, sum);
    return write_gguf_atomic(out.g, path, err);
}

std::unique_ptr<lora_set> load_checkpoint(const train_model & m, const std::string & path, ggml_backend_t backend,
                                          int64_t & step, std::string & state, std::string & err) {
    gguf_ptr f;
    int rank = 0;
    float alpha = 0;
    uint32_t targets = 0;
    if (!open_adapter(m, path, f, rank, alpha, targets, err)) return nullptr;
    const int64_t ks = gguf_find_key(f.g, "w2s.checkpoint.step");
    const int64_t kst = gguf_find_key(f.g, "w2s.checkpoint.state");
    if (ks < 0 || kst < 0) {
        err = path + " is not a weak2strong checkpoint";
        return nullptr;
    }
    const auto damaged = [&](const std::string & what) {
        err = path + " is damaged (" + what + "); delete it and start the run again, or resume from an earlier copy of it";
        return nullptr;
    };
    // Nothing from the file is used before its checksum and values pass.
    const int64_t kc = gguf_find_key(f.g, CHECKPOINT_CHECKSUM_KEY);
    if (kc < 0) {
        // Checkpoints before the checksum existed were never released (none is in use), so no fallback.
        err = path + " has no content checksum (written by an older weak2strong); delete it and start the run again";
        return nullptr;
    }
    std::string why;
    uint64_t sum = 0;
    if (gguf_get_kv_type(f.g, kc) != GGUF_TYPE_UINT64) return damaged("its checksum is not a u64");
    if (!checkpoint_checksum(f.g, f.ctx, sum, why)) return damaged(why);
    if (sum != gguf_get_val_u64(f.g, kc)) return damaged("its content does not match its checksum");
    if (!check_checkpoint_values(f.g, f.ctx, why)) return damaged(why);
    step = static_cast<int64_t>(gguf_get_val_u64(f.g, ks));  // types checked by checkpoint_checksum
    state = gguf_get_val_str(f.g, kst);
    auto l = allocate_like(m, f, rank, alpha, targets, backend, err);
    if (!l) return nullptr;
    for (auto & p : l->pairs) {
        for (ggml_tensor * t : {p.a, p.b, p.ma, p.va, p.mb, p.vb}) {
            if (!read_into(f.ctx, std::string(t->name), t, err)) {
                err = path + ": " + err;
                return nullptr;
            }
        }
    }
    return l;
}


namespace {

// FNV-1a 64; integers are fed little-endian so the value does not depend on the host.
struct fnv1a64 {
    uint64_t h = 0xcbf29ce484222325ull;
    void bytes(const void * p, size_t n) {
        const auto * b = static_cast<const uint8_t *>(p);
        for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ull;
    }
    void u64(uint64_t v) {
        for (int i = 0; i < 8; ++i) {
            const uint8_t b = static_cast<uint8_t>(v >> (8 * i));
            bytes(&b, 1);
        }
    }
    void str(const std::string & s) {
        u64(s.size());
        bytes(s.data(), s.size());
    }
};

}  // namespace

bool checkpoint_checksum(const gguf_context * g, ggml_context * ctx, uint64_t & out, std::string & err) {
    fnv1a64 h;
    h.str("w2s-checkpoint-fnv1a64-v1");
    // The KVs the loader reads, in this order; each must have its expected type (a wrong type would make
    // gguf_get_val_* assert and abort the process).
    static const struct { const char * key; gguf_type type; } kvs[] = {
        {"general.architecture", GGUF_TYPE_STRING}, {"adapter.lora.alpha", GGUF_TYPE_FLOAT32},
        {"w2s.lora.rank", GGUF_TYPE_UINT32},        {"w2s.lora.targets", GGUF_TYPE_UINT32},
        {"w2s.checkpoint.step", GGUF_TYPE_UINT64},  {"w2s.checkpoint.state", GGUF_TYPE_STRING},
    };
    for (const auto & kv : kvs) {
        const int64_t k = gguf_find_key(g, kv.key);
        h.str(kv.key);
        if (k < 0) {
            err = std::string("key ") + kv.key + " is missing";
            return false;
        }
        if (gguf_get_kv_type(g, k) != kv.type) {
            err = std::string("key ") + kv.key + " has type " + gguf_type_name(gguf_get_kv_type(g, k)) + ", expected " + gguf_type_name(kv.type);
            return false;
        }
        switch (kv.type) {
            case GGUF_TYPE_STRING: h.str(gguf_get_val_str(g, k)); break;
            case GGUF_TYPE_FLOAT32: {
                const float f = gguf_get_val_f32(g, k);
                uint32_t bits = 0;
                std::memcpy(&bits, &f, sizeof(bits));
                h.u64(bits);
                break;
            }
            case GGUF_TYPE_UINT32: h.u64(gguf_get_val_u32(g, k)); break;
            default: h.u64(gguf_get_val_u64(g, k)); break;
        }
    }
    // Every tensor in file order: name, type, shape [ne0..ne3], size, bytes.
    const int64_t n = gguf_get_n_tensors(g);
    h.u64(static_cast<uint64_t>(n));
    for (int64_t i = 0; i < n; ++i) {
        const char * name = gguf_get_tensor_name(g, i);
        const ggml_tensor * t = ggml_get_tensor(ctx, name);
        if (t == nullptr || t->data == nullptr) {
            err = std::string("tensor ") + name + " has no data";
            return false;
        }
        h.str(name);
        h.u64(static_cast<uint64_t>(t->type));
        for (int d = 0; d < 4; ++d) h.u64(static_cast<uint64_t>(t->ne[d]));
        h.u64(ggml_nbytes(t));
        h.bytes(t->data, ggml_nbytes(t));
    }
    out = h.h;
    return true;
}

bool check_checkpoint_values(const gguf_context * g, ggml_context * ctx, std::string & err) {
    const std::string v_suffix = ".adam_v";
    for (int64_t i = 0; i < gguf_get_n_tensors(g); ++i) {
        const std::string name = gguf_get_tensor_name(g, i);
        const ggml_tensor * t = ggml_get_tensor(ctx, name.c_str());
        if (t == nullptr || t->type != GGML_TYPE_F32) continue;  // read_into refuses these with their shape
        // AdamW divides by sqrt(v) + eps: a negative second moment gives NaN at the first step.
        const bool second_moment = name.size() > v_suffix.size() && name.compare(name.size() - v_suffix.size(), v_suffix.size(), v_suffix) == 0;
        const auto * x = static_cast<const float *>(t->data);
        for (int64_t j = 0; j < ggml_nelements(t); ++j) {
            if (!std::isfinite(x[j]) || (second_moment && x[j] < 0.0f)) {
                char value[32];
                std::snprintf(value, sizeof(value), "%g", static_cast<double>(x[j]));
                err = "tensor " + name + " holds " + (std::isfinite(x[j]) ? "a negative AdamW second moment " : "a non-finite value ") +
                      value + " at element " + std::to_string(j);
                return false;
            }
        }
    }
    return true;
}

}  // namespace w2s
