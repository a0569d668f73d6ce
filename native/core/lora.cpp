// LoRA parameter sets: allocation, initialisation, adapter and checkpoint files.
#include "lora.h"

#include <cmath>
#include <cstdio>
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
std::string lora_a_name(int layer, int target) {
    if (layer < 0) return "output.weight.lora_a";
    return "blk." + std::to_string(layer) + "." + lora_target_name(target) + ".weight.lora_a";
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
            if (!(targets & (1u << t)) || (has && !has(il, t))) continue;
            lora_pair p;
            p.layer = il;
            p.target = t;
            p.base = "blk." + std::to_string(il) + "." + lora_target_name(t);
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
    // (rank is that of the last pair found; allocate() checks every pair's shape against it)
    f.g = gguf_init_from_file(path.c_str(), {false, &f.ctx});
    if (f.g == nullptr) {
        err = path + " is not a complete GGUF file";
        return false;
    }
    const int64_t ka = gguf_find_key(f.g, "general.architecture");
    if (ka < 0 || m.hp.arch != gguf_get_val_str(f.g, ka)) {
        err = path + " is an adapter for architecture '" + (ka < 0 ? "?" : gguf_get_val_str(f.g, ka)) + "', the model is '" + m.hp.arch + "'";
        return false;
    }
    const int64_t kalpha = gguf_find_key(f.g, "adapter.lora.alpha");
    alpha = kalpha >= 0 ? gguf_get_val_f32(f.g, kalpha) : 0.0f;
    // Rank and targets: from our keys when present, else from the tensors (adapters made elsewhere).
    rank = 0;
    targets = 0;
    const auto note = [&](int il, int target) {
        const ggml_tensor * a = ggml_get_tensor(f.ctx, lora_a_name(il, target).c_str());
        if (a == nullptr) return;
        targets |= 1u << target;
        rank = static_cast<int>(a->ne[1]);
    };
    for (int il = 0; il < m.hp.n_layer; ++il) {
        for (int t = 0; t < T_COUNT; ++t) note(il, t);
    }
    note(-1, T_OUTPUT);
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
    return allocate(m, rank, alpha, targets, backend, err, [fc](int il, int t) {
        return ggml_get_tensor(fc, lora_a_name(il, t).c_str()) != nullptr;
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
    step = static_cast<int64_t>(gguf_get_val_u64(f.g, ks));
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

}  // namespace w2s
