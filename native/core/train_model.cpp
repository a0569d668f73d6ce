// Loading the frozen base model for training from its GGUF.
#include "train_model.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <set>

#include "ggml-alloc.h"
#include "gguf.h"

namespace w2s {

const char * lora_target_name(int t) {
    static const char * names[T_COUNT] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    return t >= 0 && t < T_COUNT ? names[t] : "?";
}

std::string train_model::weight_base(int il, int t) const {
    const ggml_tensor * w = il >= 0 && il < static_cast<int>(layers.size()) && t >= 0 && t < T_COUNT ? layers[il].w[t] : nullptr;
    if (w == nullptr) return "";
    const std::string n = w->name;  // "blk.3.attn_qkv.weight"
    return n.size() > 7 && n.compare(n.size() - 7, 7, ".weight") == 0 ? n.substr(0, n.size() - 7) : n;
}

train_model::~train_model() {
    if (buf) ggml_backend_buffer_free(buf);
    if (ctx) ggml_free(ctx);
}

namespace {

enum class kv_read { absent, ok, bad };

// An integer KV of any integer type (u64/i64 kept whole, so that a huge value cannot wrap into range).
kv_read get_int(const gguf_context * g, const std::string & key, int64_t & out) {
    const int64_t id = gguf_find_key(g, key.c_str());
    if (id < 0) return kv_read::absent;
    switch (gguf_get_kv_type(g, id)) {
        case GGUF_TYPE_UINT8: out = gguf_get_val_u8(g, id); return kv_read::ok;
        case GGUF_TYPE_INT8: out = gguf_get_val_i8(g, id); return kv_read::ok;
        case GGUF_TYPE_UINT16: out = gguf_get_val_u16(g, id); return kv_read::ok;
        case GGUF_TYPE_INT16: out = gguf_get_val_i16(g, id); return kv_read::ok;
        case GGUF_TYPE_UINT32: out = gguf_get_val_u32(g, id); return kv_read::ok;
        case GGUF_TYPE_INT32: out = gguf_get_val_i32(g, id); return kv_read::ok;
        case GGUF_TYPE_UINT64: {
            const uint64_t v = gguf_get_val_u64(g, id);
            out = v > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(v);
            return kv_read::ok;
        }
        case GGUF_TYPE_INT64: out = gguf_get_val_i64(g, id); return kv_read::ok;
        default: return kv_read::bad;
    }
}

kv_read get_float(const gguf_context * g, const std::string & key, float & out) {
    const int64_t id = gguf_find_key(g, key.c_str());
    if (id < 0) return kv_read::absent;
    if (gguf_get_kv_type(g, id) == GGUF_TYPE_FLOAT32) { out = gguf_get_val_f32(g, id); return kv_read::ok; }
    if (gguf_get_kv_type(g, id) == GGUF_TYPE_FLOAT64) { out = static_cast<float>(gguf_get_val_f64(g, id)); return kv_read::ok; }
    return kv_read::bad;
}

// The string value of `key`, or nullptr when absent or not a string (gguf_get_val_str asserts the type).
const char * get_str(const gguf_context * g, const std::string & key) {
    const int64_t id = gguf_find_key(g, key.c_str());
    return id >= 0 && gguf_get_kv_type(g, id) == GGUF_TYPE_STRING ? gguf_get_val_str(g, id) : nullptr;
}

// The tail every refusal below shares: the JS side maps "cannot be trained" to UnsupportedModelError.
const char * const DAMAGED = "; the model cannot be trained: the file is damaged or was converted wrongly";

std::string num_str(double v) {
    char b[32];
    std::snprintf(b, sizeof(b), "%g", v);
    return b;
}

std::string shape_str(const ggml_tensor * t) {
    int n = 1;  // not ggml_n_dims, which hides a trailing 0
    for (int d = 1; d < GGML_MAX_DIMS; ++d) if (t->ne[d] != 1) n = d + 1;
    std::string s = "[";
    for (int d = 0; d < n; ++d) s += (d ? ", " : "") + std::to_string(t->ne[d]);
    return s + "]";
}

// Reads 1-D tensors stored as F16/BF16/quantized as F32: the CPU's MUL/ADD abort on an F32 × F16 pair, and
// the graph multiplies F32 activations by norm gains and adds biases. Returns false if it cannot convert.
bool widen_vector(ggml_tensor * t) {
    if (t->type == GGML_TYPE_F32 || ggml_n_dims(t) != 1) return true;
    if (ggml_get_type_traits(t->type)->to_float == nullptr) return false;
    t->type = GGML_TYPE_F32;
    t->nb[0] = sizeof(float);
    for (int d = 1; d < GGML_MAX_DIMS; ++d) t->nb[d] = t->nb[d - 1] * t->ne[d - 1];
    return true;
}

// Whether `backend` runs the ops that touch a frozen weight of type `type`: MUL_MAT forward, and for the
// input gradient either the dequantizing GET_ROWS of frozen_grad.h or (reference mode) OUT_PROD.
bool type_trainable(ggml_backend_t backend, ggml_type type, bool out_prod_grads) {
    return type_trainable_on(ggml_backend_get_device(backend), type, out_prod_grads);
}

}  // namespace

bool type_trainable_on(ggml_backend_dev_t dev, ggml_type type, bool out_prod_grads) {
    // Weights are floats: F32, F16, BF16 or a quantized type that dequantizes (Q8_1 / Q8_K are activation-only
    // types: no dot product or dequantization, yet "supported" on paper). Integer and F64 tensors pass some
    // backends' supports_op for GET_ROWS or MUL_MAT but have no kernel behind it.
    const bool floaty = type == GGML_TYPE_F32 || type == GGML_TYPE_F16 || type == GGML_TYPE_BF16 ||
                        (ggml_is_quantized(type) && ggml_get_type_traits(type)->to_float != nullptr);
    if (!floaty) return false;
    ggml_init_params ip = {ggml_tensor_overhead() * 8, nullptr, true};
    ggml_context * c = ggml_init(ip);
    const int64_t k = ggml_blck_size(type) * 8;
    ggml_tensor * w = ggml_new_tensor_2d(c, type, k, 8);
    ggml_tensor * x = ggml_new_tensor_2d(c, GGML_TYPE_F32, k, 4);
    ggml_tensor * dy = ggml_new_tensor_2d(c, GGML_TYPE_F32, 8, 4);
    ggml_tensor * mm = ggml_mul_mat(c, w, x);
    ggml_tensor * op = out_prod_grads ? ggml_out_prod(c, w, ggml_transpose(c, dy))  // dx = W·dy as ggml's autodiff builds it
                                      : ggml_get_rows(c, w, ggml_new_tensor_1d(c, GGML_TYPE_I32, 8));
    const bool ok = ggml_backend_dev_supports_op(dev, mm) && ggml_backend_dev_supports_op(dev, op);
    ggml_free(c);
    return ok;
}


std::unique_ptr<train_model> load_train_model(const std::string & path, ggml_backend_t backend, bool out_prod_grads,
                                              std::string & err) {
    auto m = std::make_unique<train_model>();
    gguf_init_params gp = {true, &m->ctx};
    gguf_context * g = gguf_init_from_file(path.c_str(), gp);
    if (g == nullptr) {
        err = "gguf_init_from_file failed for " + path + ": not a valid GGUF file";
        return nullptr;
    }
    struct gguf_guard { gguf_context * g; ~gguf_guard() { gguf_free(g); } } guard{g};

    train_hparams & hp = m->hp;
    const char * arch = get_str(g, "general.architecture");
    hp.arch = arch ? arch : "";
    if (hp.arch == "llama") {
        hp.traits.rope_mode = GGML_ROPE_TYPE_NORMAL;
    } else if (hp.arch == "qwen2") {
        hp.traits.rope_mode = GGML_ROPE_TYPE_NEOX;
        hp.traits.qkv_bias = true;
    } else if (hp.arch == "qwen3") {
        hp.traits.rope_mode = GGML_ROPE_TYPE_NEOX;
        hp.traits.qk_norm = true;
    } else if (hp.arch == "gemma" || hp.arch == "gemma2") {
        hp.traits.rope_mode = GGML_ROPE_TYPE_NEOX;
        hp.traits.embd_scale = true;
        hp.traits.gelu = true;
        if (hp.arch == "gemma2") {
            hp.traits.post_norms = true;
            hp.traits.attn_softcap = 50.0f;  // llama.cpp's defaults when the keys are absent
            hp.traits.final_softcap = 30.0f;
        }
    } else if (hp.arch == "phi3") {
        hp.traits.rope_mode = GGML_ROPE_TYPE_NEOX;
    } else {
        err = "unsupported architecture '" + hp.arch + "' for training (supported: llama, qwen2, qwen3, gemma, gemma2, phi3)";
        return nullptr;
    }
    const std::string a = hp.arch + ".";
    // Integer hyperparameters: a value outside [lo, hi] or of a non-integer type is refused by name.
    auto int_key = [&](const std::string & key, int & out, int64_t lo, int64_t hi, bool required) {
        if (!err.empty()) return;
        int64_t v = 0;
        const kv_read r = get_int(g, key, v);
        if (r == kv_read::absent) {
            if (required) err = "the GGUF lacks " + key + DAMAGED;
            return;
        }
        if (r == kv_read::bad || v < lo || v > hi) {
            err = key + (r == kv_read::bad ? " is not an integer" : " is " + std::to_string(v)) + ", expected an integer in [" +
                  std::to_string(lo) + ", " + std::to_string(hi) + "]" + DAMAGED;
            return;
        }
        out = static_cast<int>(v);
    };
    auto float_key = [&](const std::string & key, float & out) {
        if (!err.empty()) return;
        float v = 0;
        const kv_read r = get_float(g, key, v);
        if (r == kv_read::absent) return;
        if (r == kv_read::bad || !std::isfinite(v) || v <= 0.0f) {
            err = key + (r == kv_read::bad ? " is not a float" : " is " + num_str(v)) + ", expected a finite positive number" + DAMAGED;
            return;
        }
        out = v;
    };
    constexpr int64_t big = 1 << 24;
    int_key(a + "block_count", hp.n_layer, 1, 512, true);  // LLAMA_MAX_LAYERS
    int_key(a + "embedding_length", hp.n_embd, 1, big, true);
    int_key(a + "attention.head_count", hp.n_head, 1, 1 << 16, true);
    int_key(a + "feed_forward_length", hp.n_ff, 1, big, true);
    hp.n_head_kv = hp.n_head;
    int_key(a + "attention.head_count_kv", hp.n_head_kv, 1, hp.n_head, false);
    hp.n_ctx_train = 2048;
    int_key(a + "context_length", hp.n_ctx_train, 1, INT32_MAX, false);
    float_key(a + "attention.layer_norm_rms_epsilon", hp.rms_eps);
    if (err.empty() && !(hp.rms_eps < 1.0f)) err = a + "attention.layer_norm_rms_epsilon is " + num_str(hp.rms_eps) + ", expected < 1" + DAMAGED;
    float_key(a + "rope.freq_base", hp.rope_base);
    if (!err.empty()) return nullptr;
    if (hp.n_head % hp.n_head_kv != 0) {
        err = a + "attention.head_count_kv is " + std::to_string(hp.n_head_kv) + ", which does not divide the " + std::to_string(hp.n_head) +
              " attention heads" + DAMAGED;
        return nullptr;
    }
    int64_t unused = 0;
    const bool explicit_head = get_int(g, a + "attention.key_length", unused) == kv_read::ok;
    hp.n_embd_head = hp.n_embd / hp.n_head;
    int_key(a + "attention.key_length", hp.n_embd_head, 1, 1 << 16, false);
    int value_length = hp.n_embd_head;
    int_key(a + "attention.value_length", value_length, 1, 1 << 16, false);
    if (!err.empty()) return nullptr;
    if (value_length != hp.n_embd_head) {
        err = "attention.value_length differs from key_length: not supported by the training graph";
        return nullptr;
    }
    if (!explicit_head && hp.n_embd % hp.n_head != 0) {
        err = "inconsistent attention shape: n_embd " + std::to_string(hp.n_embd) + " is not a multiple of " + std::to_string(hp.n_head) +
              " heads" + DAMAGED;
        return nullptr;
    }
    // ggml's rope needs an even count within the head; 0 makes the training step never finish.
    hp.n_rot = hp.head_dim();
    int_key(a + "rope.dimension_count", hp.n_rot, 2, hp.head_dim(), false);
    if (err.empty() && hp.n_rot % 2 != 0) err = a + "rope.dimension_count is " + std::to_string(hp.n_rot) + ", expected an even number" + DAMAGED;
    if (!err.empty()) return nullptr;
    if (hp.arch == "gemma2") {
        float_key(a + "attn_logit_softcapping", hp.traits.attn_softcap);
        float_key(a + "final_logit_softcapping", hp.traits.final_softcap);
        // llama.cpp (gemma2.cpp): 1/√(n_embd / n_head) for the 27B shape (46 layers), else 1/√head_dim.
        hp.traits.q_scale = 1.0f / std::sqrt(static_cast<float>(hp.n_layer == 46 ? hp.n_embd / hp.n_head : hp.head_dim()));
    }
    // Sliding windows: gemma2 applies one on every other layer (4096 by default; a pattern key may change
    // it), as llama.cpp does. Elsewhere a declared window is one llama.cpp ignores too: the graph ignores
    // it and the trainer refuses sequences longer than it (there the two would differ from the model's
    // original attention).
    hp.swa_key = a + "attention.sliding_window";
    if (hp.arch == "gemma2") hp.n_swa = 4096;
    int_key(hp.swa_key, hp.n_swa, 0, INT32_MAX, false);
    hp.swa_layer.assign(hp.n_layer, false);
    if (hp.arch == "gemma2" && hp.n_swa > 0) {
        hp.swa_in_graph = true;
        int pattern = 2;
        const std::string pkey = a + "attention.sliding_window_pattern";
        const int64_t pid = gguf_find_key(g, pkey.c_str());
        if (pid >= 0 && gguf_get_kv_type(g, pid) == GGUF_TYPE_ARRAY) {
            if (gguf_get_arr_type(g, pid) != GGUF_TYPE_BOOL || gguf_get_arr_n(g, pid) < static_cast<size_t>(hp.n_layer)) {
                err = pkey + " is not an array of " + std::to_string(hp.n_layer) + " booleans" + DAMAGED;
                return nullptr;
            }
            const bool * v = static_cast<const bool *>(gguf_get_arr_data(g, pid));
            for (int il = 0; il < hp.n_layer; ++il) hp.swa_layer[il] = v[il];
            pattern = -1;
        } else {
            int_key(pkey, pattern, 0, INT32_MAX, false);
            if (!err.empty()) return nullptr;
        }
        // llama.cpp's set_swa_pattern(n): layer il slides when il % n < n - 1 (n = 0: every layer).
        for (int il = 0; pattern >= 0 && il < hp.n_layer; ++il) hp.swa_layer[il] = pattern == 0 || il % pattern < pattern - 1;
        hp.rope_base_swa = hp.rope_base;
        float_key(a + "rope.freq_base_swa", hp.rope_base_swa);
    }
    if (!err.empty()) return nullptr;
    const int64_t scaling = gguf_find_key(g, (a + "rope.scaling.type").c_str());
    if (scaling >= 0) {
        const char * type = get_str(g, a + "rope.scaling.type");
        if (type == nullptr) {
            err = a + "rope.scaling.type is not a string" + DAMAGED;
            return nullptr;
        }
        if (std::strcmp(type, "none") != 0) {
            err = std::string("rope scaling '") + type + "' is not supported by the training graph yet";
            return nullptr;
        }
    }

    // A zero-size tensor anywhere is a damaged file (and a zero-size backend buffer).
    for (ggml_tensor * t = ggml_get_first_tensor(m->ctx); t != nullptr; t = ggml_get_next_tensor(m->ctx, t)) {
        if (ggml_nelements(t) == 0) {
            err = std::string("tensor ") + t->name + " has shape " + shape_str(t) + " with a zero dimension" + DAMAGED;
            return nullptr;
        }
    }
    auto need = [&](const std::string & name) -> ggml_tensor * {
        ggml_tensor * t = ggml_get_tensor(m->ctx, name.c_str());
        if (t == nullptr && err.empty()) err = "the model has no tensor " + name;
        return t;
    };
    m->tok_embd = need("token_embd.weight");
    m->output_norm = need("output_norm.weight");
    // Gemma always ties the head (llama.cpp does not read an output.weight there: one would be refused below).
    const bool gemma = hp.arch == "gemma" || hp.arch == "gemma2";
    m->output = gemma ? nullptr : ggml_get_tensor(m->ctx, "output.weight");
    if (m->output == nullptr) m->output = m->tok_embd;  // tied embeddings (Qwen2.5-0.5B style)
    m->rope_freqs = hp.arch == "llama" ? ggml_get_tensor(m->ctx, "rope_freqs.weight") : nullptr;
    m->layers.resize(hp.n_layer);
    for (int il = 0; il < hp.n_layer; ++il) {
        const std::string p = "blk." + std::to_string(il) + ".";
        train_layer & L = m->layers[il];
        L.attn_norm = need(p + "attn_norm.weight");
        L.ffn_norm = need(p + "ffn_norm.weight");
        if (hp.arch == "phi3") {
            // phi3 files hold either a fused attn_qkv or separate q/k/v (llama.cpp accepts both), and always
            // a fused ffn_up [n_embd, 2·n_ff] (gate rows first, as ggml_swiglu splits it) with no ffn_gate.
            L.fused_qkv = ggml_get_tensor(m->ctx, (p + "attn_qkv.weight").c_str()) != nullptr;
            L.fused_gate_up = true;
        }
        for (int t = 0; t < T_COUNT; ++t) {
            if ((L.fused_qkv && (t == T_K || t == T_V)) || (L.fused_gate_up && t == T_GATE)) continue;
            L.w[t] = need(p + (L.fused_qkv && t == T_Q ? "attn_qkv" : lora_target_name(t)) + ".weight");
        }
        if (hp.traits.post_norms) {
            L.attn_post_norm = need(p + "post_attention_norm.weight");
            L.ffn_post_norm = need(p + "post_ffw_norm.weight");
        }
        if (hp.traits.qk_norm) {
            L.q_norm = need(p + "attn_q_norm.weight");
            L.k_norm = need(p + "attn_k_norm.weight");
        }
        if (hp.traits.qkv_bias) {
            L.bq = need(p + "attn_q.bias");
            L.bk = need(p + "attn_k.bias");
            L.bv = need(p + "attn_v.bias");
        }
    }
    if (!err.empty()) return nullptr;
    hp.n_vocab = static_cast<int>(m->tok_embd->ne[1]);
    if (m->tok_embd->ne[1] > INT32_MAX) {
        err = "token_embd.weight has " + std::to_string(m->tok_embd->ne[1]) + " rows" + DAMAGED;
        return nullptr;
    }

    // Every shape the graph relies on, from the hyperparameters (ggml order, innermost first): a mismatch
    // would otherwise be a GGML_ASSERT in reshape or mul_mat.
    const int64_t E = hp.n_embd, V = hp.n_vocab, F = hp.n_ff, HD = hp.head_dim();
    const int64_t Q = HD * hp.n_head, KV = HD * hp.n_head_kv;
    auto shape = [&](const ggml_tensor * t, std::initializer_list<int64_t> ne, const char * what) {
        if (!err.empty() || t == nullptr) return;
        int64_t want[GGML_MAX_DIMS] = {1, 1, 1, 1};
        int d = 0;
        for (int64_t n : ne) want[d++] = n;
        bool ok = true;
        for (int i = 0; i < GGML_MAX_DIMS; ++i) ok = ok && t->ne[i] == want[i];
        if (ok) return;
        std::string w = "[";
        for (int i = 0; i < d; ++i) w += (i ? ", " : "") + std::to_string(want[i]);
        err = std::string("tensor ") + t->name + " has shape " + shape_str(t) + ", expected " + w + "] (" + what + ")" + DAMAGED;
    };
    shape(m->tok_embd, {E, V}, "n_embd, n_vocab");
    if (m->output != m->tok_embd) shape(m->output, {E, V}, "n_embd, n_vocab");
    shape(m->output_norm, {E}, "n_embd");
    shape(m->rope_freqs, {hp.n_rot / 2}, "rope.dimension_count / 2");
    for (const train_layer & L : m->layers) {
        shape(L.attn_norm, {E}, "n_embd");
        shape(L.ffn_norm, {E}, "n_embd");
        shape(L.attn_post_norm, {E}, "n_embd");
        shape(L.ffn_post_norm, {E}, "n_embd");
        if (L.fused_qkv) shape(L.w[T_Q], {E, Q + 2 * KV}, "n_embd, (n_head + 2 * n_head_kv) * head_dim");
        else shape(L.w[T_Q], {E, Q}, "n_embd, n_head * head_dim");
        shape(L.w[T_K], {E, KV}, "n_embd, n_head_kv * head_dim");
        shape(L.w[T_V], {E, KV}, "n_embd, n_head_kv * head_dim");
        shape(L.w[T_O], {Q, E}, "n_head * head_dim, n_embd");
        shape(L.w[T_GATE], {E, F}, "n_embd, n_ff");
        if (L.fused_gate_up) shape(L.w[T_UP], {E, 2 * F}, "n_embd, 2 * n_ff");
        else shape(L.w[T_UP], {E, F}, "n_embd, n_ff");
        shape(L.w[T_DOWN], {F, E}, "n_ff, n_embd");
        shape(L.q_norm, {HD}, "head_dim");
        shape(L.k_norm, {HD}, "head_dim");
        shape(L.bq, {Q}, "n_head * head_dim");
        shape(L.bk, {KV}, "n_head_kv * head_dim");
        shape(L.bv, {KV}, "n_head_kv * head_dim");
    }
    if (!err.empty()) return nullptr;

    // Every tensor of the file must be one the graph uses: an unknown one (a newer architecture variant, MoE
    // experts, a bias we do not add) would silently train a different model than llama.cpp infers with.
    std::set<const ggml_tensor *> used = {m->tok_embd, m->output_norm, m->output, m->rope_freqs};
    for (const train_layer & L : m->layers) {
        for (const ggml_tensor * t : {L.attn_norm, L.ffn_norm, L.q_norm, L.k_norm, L.bq, L.bk, L.bv, L.attn_post_norm, L.ffn_post_norm}) used.insert(t);
        for (const ggml_tensor * t : L.w) used.insert(t);
    }
    std::string unknown;
    int n_unknown = 0;
    for (ggml_tensor * t = ggml_get_first_tensor(m->ctx); t != nullptr; t = ggml_get_next_tensor(m->ctx, t)) {
        if (used.count(t) != 0) continue;
        if (n_unknown++ < 4) unknown += (unknown.empty() ? "" : ", ") + std::string(t->name);
    }
    if (n_unknown > 0) {
        err = "the training graph for " + hp.arch + " does not implement tensor" + (n_unknown > 1 ? "s " : " ") + unknown +
              (n_unknown > 4 ? " and " + std::to_string(n_unknown - 4) + " more" : "") +
              ", so training would change a different model than llama.cpp runs; this model cannot be trained";
        return nullptr;
    }

    // Every frozen weight type must have forward and backward matmuls; BF16 has no OUT_PROD anywhere.
    std::set<ggml_type> types;
    for (ggml_tensor * t = ggml_get_first_tensor(m->ctx); t != nullptr; t = ggml_get_next_tensor(m->ctx, t)) {
        if (ggml_n_dims(t) >= 2) types.insert(t->type);
    }
    for (ggml_type t : types) {
        if (!type_trainable(backend, t, out_prod_grads)) {
            err = std::string("frozen weights of type ") + ggml_type_name(t) + " cannot be trained on " +
                  ggml_backend_name(backend) + " (no backward matmul for this type); convert the model to F16, Q8_0 or Q4_0";
            return nullptr;
        }
    }

    std::set<const ggml_tensor *> widened;  // 1-D tensors whose file type differs from their F32 tensor
    for (ggml_tensor * t = ggml_get_first_tensor(m->ctx); t != nullptr; t = ggml_get_next_tensor(m->ctx, t)) {
        if (t->type == GGML_TYPE_F32 || ggml_n_dims(t) != 1) continue;
        if (!widen_vector(t)) {
            err = std::string("tensor ") + t->name + " has type " + ggml_type_name(t->type) + ", which cannot be read as F32" + DAMAGED;
            return nullptr;
        }
        widened.insert(t);
    }
    m->buf = ggml_backend_alloc_ctx_tensors(m->ctx, backend);
    if (m->buf == nullptr) {
        err = "could not allocate " + std::to_string(ggml_get_mem_size(m->ctx)) + " bytes for the model weights";
        return nullptr;
    }
    FILE * f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) {
        err = "cannot open " + path;
        return nullptr;
    }
    std::vector<uint8_t> data;
    std::vector<float> wide;
    const size_t base = gguf_get_data_offset(g);
    for (int64_t i = 0; i < gguf_get_n_tensors(g); ++i) {
        ggml_tensor * t = ggml_get_tensor(m->ctx, gguf_get_tensor_name(g, i));
        const size_t n = gguf_get_tensor_size(g, i);  // bytes in the file's type
        data.resize(n);
        if (std::fseek(f, static_cast<long>(base + gguf_get_tensor_offset(g, i)), SEEK_SET) != 0 || std::fread(data.data(), 1, n, f) != n) {
            std::fclose(f);
            err = std::string("the file ends inside tensor ") + t->name + " (truncated GGUF)";
            return nullptr;
        }
        if (widened.count(t)) {
            wide.resize(ggml_nelements(t));
            ggml_get_type_traits(gguf_get_tensor_type(g, i))->to_float(data.data(), wide.data(), ggml_nelements(t));
            ggml_backend_tensor_set(t, wide.data(), 0, ggml_nbytes(t));
        } else {
            ggml_backend_tensor_set(t, data.data(), 0, n);
        }
    }
    std::fclose(f);
    return m;
}

}  // namespace w2s
