// Loading the frozen base model for training from its GGUF.
#include "train_model.h"

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

train_model::~train_model() {
    if (buf) ggml_backend_buffer_free(buf);
    if (ctx) ggml_free(ctx);
}

namespace {

bool get_int(const gguf_context * g, const std::string & key, int & out) {
    const int64_t id = gguf_find_key(g, key.c_str());
    if (id < 0) return false;
    switch (gguf_get_kv_type(g, id)) {
        case GGUF_TYPE_UINT32: out = static_cast<int>(gguf_get_val_u32(g, id)); return true;
        case GGUF_TYPE_INT32: out = gguf_get_val_i32(g, id); return true;
        case GGUF_TYPE_UINT64: out = static_cast<int>(gguf_get_val_u64(g, id)); return true;
        case GGUF_TYPE_INT64: out = static_cast<int>(gguf_get_val_i64(g, id)); return true;
        case GGUF_TYPE_UINT16: out = gguf_get_val_u16(g, id); return true;
        default: return false;
    }
}

bool get_float(const gguf_context * g, const std::string & key, float & out) {
    const int64_t id = gguf_find_key(g, key.c_str());
    if (id < 0) return false;
    if (gguf_get_kv_type(g, id) == GGUF_TYPE_FLOAT32) { out = gguf_get_val_f32(g, id); return true; }
    if (gguf_get_kv_type(g, id) == GGUF_TYPE_FLOAT64) { out = static_cast<float>(gguf_get_val_f64(g, id)); return true; }
    return false;
}

// Whether `backend` (or the CPU, where the scheduler falls back) runs forward and backward matmuls with a
// frozen weight of type `type`: MUL_MAT forward, OUT_PROD for the input gradient.
bool type_trainable(ggml_backend_t backend, ggml_type type) {
    ggml_init_params ip = {ggml_tensor_overhead() * 8, nullptr, true};
    ggml_context * c = ggml_init(ip);
    const int64_t k = ggml_blck_size(type) * 8;
    ggml_tensor * w = ggml_new_tensor_2d(c, type, k, 8);
    ggml_tensor * x = ggml_new_tensor_2d(c, GGML_TYPE_F32, k, 4);
    ggml_tensor * dy = ggml_new_tensor_2d(c, GGML_TYPE_F32, 8, 4);
    ggml_tensor * mm = ggml_mul_mat(c, w, x);
    ggml_tensor * op = ggml_out_prod(c, w, ggml_transpose(c, dy));  // dx = W·dy as ggml's MUL_MAT backward builds it
    const bool ok = ggml_backend_supports_op(backend, mm) && ggml_backend_supports_op(backend, op);
    ggml_free(c);
    return ok;
}

}  // namespace

std::unique_ptr<train_model> load_train_model(const std::string & path, ggml_backend_t backend, std::string & err) {
    auto m = std::make_unique<train_model>();
    gguf_init_params gp = {true, &m->ctx};
    gguf_context * g = gguf_init_from_file(path.c_str(), gp);
    if (g == nullptr) {
        err = "gguf_init_from_file failed for " + path + ": not a valid GGUF file";
        return nullptr;
    }
    struct gguf_guard { gguf_context * g; ~gguf_guard() { gguf_free(g); } } guard{g};

    train_hparams & hp = m->hp;
    const int64_t arch_id = gguf_find_key(g, "general.architecture");
    hp.arch = arch_id >= 0 ? gguf_get_val_str(g, arch_id) : "";
    if (hp.arch == "llama") {
        hp.traits.rope_mode = GGML_ROPE_TYPE_NORMAL;
    } else if (hp.arch == "qwen2") {
        hp.traits.rope_mode = GGML_ROPE_TYPE_NEOX;
        hp.traits.qkv_bias = true;
    } else if (hp.arch == "qwen3") {
        hp.traits.rope_mode = GGML_ROPE_TYPE_NEOX;
        hp.traits.qk_norm = true;
    } else {
        err = "unsupported architecture '" + hp.arch + "' for training (supported: llama, qwen2, qwen3)";
        return nullptr;
    }
    const std::string a = hp.arch + ".";
    if (!get_int(g, a + "block_count", hp.n_layer) || !get_int(g, a + "embedding_length", hp.n_embd) ||
        !get_int(g, a + "attention.head_count", hp.n_head) || !get_int(g, a + "feed_forward_length", hp.n_ff)) {
        err = "the GGUF lacks one of " + a + "block_count / embedding_length / attention.head_count / feed_forward_length";
        return nullptr;
    }
    hp.n_head_kv = hp.n_head;
    get_int(g, a + "attention.head_count_kv", hp.n_head_kv);
    hp.n_ctx_train = 2048;
    get_int(g, a + "context_length", hp.n_ctx_train);
    get_float(g, a + "attention.layer_norm_rms_epsilon", hp.rms_eps);
    get_float(g, a + "rope.freq_base", hp.rope_base);
    hp.n_embd_head = hp.n_head > 0 ? hp.n_embd / hp.n_head : 0;
    const bool explicit_head = get_int(g, a + "attention.key_length", hp.n_embd_head);
    int value_length = hp.n_embd_head;
    if (get_int(g, a + "attention.value_length", value_length) && value_length != hp.n_embd_head) {
        err = "attention.value_length differs from key_length: not supported by the training graph";
        return nullptr;
    }
    if (hp.n_head <= 0 || hp.n_embd_head <= 0 || (!explicit_head && hp.n_embd % hp.n_head != 0) || hp.n_head_kv <= 0 ||
        hp.n_head % hp.n_head_kv != 0) {
        err = "inconsistent attention shape: n_embd " + std::to_string(hp.n_embd) + ", heads " + std::to_string(hp.n_head) +
              ", kv heads " + std::to_string(hp.n_head_kv);
        return nullptr;
    }
    hp.n_rot = hp.head_dim();
    get_int(g, a + "rope.dimension_count", hp.n_rot);
    const int64_t scaling = gguf_find_key(g, (a + "rope.scaling.type").c_str());
    if (scaling >= 0 && std::strcmp(gguf_get_val_str(g, scaling), "none") != 0) {
        err = std::string("rope scaling '") + gguf_get_val_str(g, scaling) + "' is not supported by the training graph yet";
        return nullptr;
    }

    auto need = [&](const std::string & name) -> ggml_tensor * {
        ggml_tensor * t = ggml_get_tensor(m->ctx, name.c_str());
        if (t == nullptr && err.empty()) err = "the model has no tensor " + name;
        return t;
    };
    m->tok_embd = need("token_embd.weight");
    m->output_norm = need("output_norm.weight");
    m->output = ggml_get_tensor(m->ctx, "output.weight");
    if (m->output == nullptr) m->output = m->tok_embd;  // tied embeddings (Qwen2.5-0.5B style)
    m->layers.resize(hp.n_layer);
    for (int il = 0; il < hp.n_layer; ++il) {
        const std::string p = "blk." + std::to_string(il) + ".";
        train_layer & L = m->layers[il];
        L.attn_norm = need(p + "attn_norm.weight");
        L.ffn_norm = need(p + "ffn_norm.weight");
        for (int t = 0; t < T_COUNT; ++t) L.w[t] = need(p + lora_target_name(t) + ".weight");
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

    // Every frozen weight type must have forward and backward matmuls; BF16 has no OUT_PROD anywhere.
    std::set<ggml_type> types;
    for (ggml_tensor * t = ggml_get_first_tensor(m->ctx); t != nullptr; t = ggml_get_next_tensor(m->ctx, t)) {
        if (ggml_n_dims(t) >= 2) types.insert(t->type);
    }
    for (ggml_type t : types) {
        if (!type_trainable(backend, t)) {
            err = std::string("frozen weights of type ") + ggml_type_name(t) + " cannot be trained on " +
                  ggml_backend_name(backend) + " (no backward matmul for this type); convert the model to F16, Q8_0 or Q4_0";
            return nullptr;
        }
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
    const size_t base = gguf_get_data_offset(g);
    for (int64_t i = 0; i < gguf_get_n_tensors(g); ++i) {
        ggml_tensor * t = ggml_get_tensor(m->ctx, gguf_get_tensor_name(g, i));
        const size_t n = ggml_nbytes(t);
        data.resize(n);
        if (std::fseek(f, static_cast<long>(base + gguf_get_tensor_offset(g, i)), SEEK_SET) != 0 || std::fread(data.data(), 1, n, f) != n) {
            std::fclose(f);
            err = std::string("the file ends inside tensor ") + t->name + " (truncated GGUF)";
            return nullptr;
        }
        ggml_backend_tensor_set(t, data.data(), 0, n);
    }
    std::fclose(f);
    return m;
}

}  // namespace w2s
