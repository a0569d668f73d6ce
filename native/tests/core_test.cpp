// Standalone tests of the native core (no Node): run by ctest, e.g. on a GPU machine without Node.
//   npm run build:native -- --tests && ctest --test-dir build --output-on-failure
// Writes a tiny random llama GGUF with the gguf API, then checks the training graph against llama.cpp's
// inference path (log-probs), LoRA gradients against central finite differences, and that SFT steps
// lower the loss. Prints max differences; ends with "N passed, M failed".
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "backend.h"
#include "cpu_gemm.h"
#include "cpu_out_prod.h"
#include "flash_attn_check.h"
#include "repack_check.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "gguf.h"
#include "sampling.h"
#include "scorer.h"
#include "trainer.h"

using namespace w2s;

namespace {

int g_passed = 0, g_failed = 0;

std::string g_err;  // the last error message; printed with a failed check, then cleared

void check(bool ok, const std::string & what) {
    std::printf("%s %s%s\n", ok ? "ok  " : "FAIL", what.c_str(), ok || g_err.empty() ? "" : (": " + g_err).c_str());
    g_err.clear();
    (ok ? g_passed : g_failed) += 1;
}

// A 2-layer llama (n_embd 32, 4 heads, 2 KV heads, ff 64) with a byte-fallback SPM vocabulary.
bool write_tiny_model(const std::string & path, std::string & err) {
    const int n_embd = 32, n_head = 4, n_kv = 2, n_ff = 64, n_layer = 2, hd = n_embd / n_head;
    std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
    std::vector<int32_t> types = {2, 3, 3};
    for (int b = 0; b < 256; ++b) {
        char buf[8];
        std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
        tokens.push_back(buf);
        types.push_back(6);
    }
    for (const char * piece : {"\xe2\x96\x81", "a", "b", "c", "\xe2\x96\x81" "a", "\xe2\x96\x81" "b", "ab", "ba"}) {
        tokens.push_back(piece);
        types.push_back(1);
    }
    const int n_vocab = static_cast<int>(tokens.size());
    std::vector<const char *> tok_ptrs;
    std::vector<float> scores;
    for (int i = 0; i < n_vocab; ++i) {
        tok_ptrs.push_back(tokens[i].c_str());
        scores.push_back(-static_cast<float>(i));
    }
    gguf_context * g = gguf_init_empty();
    gguf_set_val_str(g, "general.architecture", "llama");
    gguf_set_val_u32(g, "llama.context_length", 128);
    gguf_set_val_u32(g, "llama.embedding_length", n_embd);
    gguf_set_val_u32(g, "llama.block_count", n_layer);
    gguf_set_val_u32(g, "llama.feed_forward_length", n_ff);
    gguf_set_val_u32(g, "llama.attention.head_count", n_head);
    gguf_set_val_u32(g, "llama.attention.head_count_kv", n_kv);
    gguf_set_val_f32(g, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    gguf_set_val_str(g, "tokenizer.ggml.model", "llama");
    gguf_set_arr_str(g, "tokenizer.ggml.tokens", tok_ptrs.data(), tok_ptrs.size());
    gguf_set_arr_data(g, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores.data(), scores.size());
    gguf_set_arr_data(g, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types.data(), types.size());
    gguf_set_val_u32(g, "tokenizer.ggml.bos_token_id", 1);
    gguf_set_val_u32(g, "tokenizer.ggml.eos_token_id", 2);
    gguf_set_val_u32(g, "tokenizer.ggml.unknown_token_id", 0);

    ggml_context * ctx = ggml_init({64 * 1024 * 1024, nullptr, false});
    rng r(42, 0, 0);
    auto tensor = [&](const std::string & name, int64_t ne0, int64_t ne1, float std, float constant = 0.0f) {
        ggml_tensor * t = ne1 > 0 ? ggml_new_tensor_2d(ctx, GGML_TYPE_F32, ne0, ne1) : ggml_new_tensor_1d(ctx, GGML_TYPE_F32, ne0);
        ggml_set_name(t, name.c_str());
        float * d = static_cast<float *>(t->data);
        for (int64_t i = 0; i < ggml_nelements(t); ++i) {
            // Irwin–Hall approximation of a normal: sum of 12 uniforms − 6
            double s = 0.0;
            for (int k = 0; k < 12; ++k) s += r.uniform();
            d[i] = std == 0.0f ? constant : static_cast<float>((s - 6.0) * std);
        }
        gguf_add_tensor(g, t);
    };
    tensor("token_embd.weight", n_embd, n_vocab, 0.5f);
    tensor("output_norm.weight", n_embd, 0, 0.0f, 1.0f);
    tensor("output.weight", n_embd, n_vocab, 0.2f);
    for (int il = 0; il < n_layer; ++il) {
        const std::string p = "blk." + std::to_string(il) + ".";
        tensor(p + "attn_norm.weight", n_embd, 0, 0.0f, 1.0f);
        tensor(p + "ffn_norm.weight", n_embd, 0, 0.0f, 1.0f);
        tensor(p + "attn_q.weight", n_embd, n_embd, 0.1f);
        tensor(p + "attn_k.weight", n_embd, hd * n_kv, 0.1f);
        tensor(p + "attn_v.weight", n_embd, hd * n_kv, 0.1f);
        tensor(p + "attn_output.weight", n_embd, n_embd, 0.1f);
        tensor(p + "ffn_gate.weight", n_embd, n_ff, 0.1f);
        tensor(p + "ffn_up.weight", n_embd, n_ff, 0.1f);
        tensor(p + "ffn_down.weight", n_ff, n_embd, 0.1f);
    }
    const bool ok = write_gguf_atomic(g, path, err);
    gguf_free(g);
    ggml_free(ctx);
    return ok;
}

// Two sequences: [prompt | completion] with targets on the completion.
// Token ids stay below the 267-token vocabulary of write_tiny_model.
train_batch make_batch(score_request & score) {
    const std::vector<std::vector<int32_t>> seqs = {{1, 260, 261, 262, 265, 266, 100, 120, 140}, {1, 70, 71, 262, 263, 264}};
    const std::vector<int> n_prompt = {4, 3};
    train_batch b;
    b.B = 2;
    b.T = 9;
    b.tokens.assign(b.T * b.B, 0);
    b.targets.assign(b.T * b.B, -1);
    for (int s = 0; s < 2; ++s) {
        score_item it;
        it.tokens = seqs[s];
        it.n_prompt = n_prompt[s];
        score.items.push_back(it);
        for (size_t p = 0; p < seqs[s].size(); ++p) {
            b.tokens[s * b.T + p] = seqs[s][p];
            if (static_cast<int>(p) >= n_prompt[s] - 1 && p + 1 < seqs[s].size()) b.targets[s * b.T + p] = seqs[s][p + 1];
        }
    }
    return b;
}

// Uniform values in [-1, 1) from a fixed LCG, into every given tensor.
void fill_uniform(const std::vector<ggml_tensor *> & ts, uint64_t x) {
    for (ggml_tensor * t : ts) {
        std::vector<float> v(static_cast<size_t>(ggml_nelements(t)));
        for (auto & e : v) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            e = static_cast<float>(static_cast<double>(x >> 11) / 9007199254740992.0 * 2.0 - 1.0);
        }
        ggml_backend_tensor_set(t, v.data(), 0, ggml_nbytes(t));
    }
}

// One op twice on the same inputs: as ggml builds it (ref) and after `swap` turned it into a CPU kernel (ours).
struct op_pair {
    ggml_tensor * ref, * ours;
    ggml_cgraph * g_ref, * g_ours;
    int swapped;
};

op_pair twin_graphs(ggml_context * c, ggml_tensor * (*op)(ggml_context *, ggml_tensor *, ggml_tensor *), ggml_tensor * a, ggml_tensor * b,
                    int (*swap)(ggml_context *, ggml_cgraph *)) {
    op_pair p;
    p.ref = op(c, a, b);
    p.ours = op(c, a, b);
    p.g_ref = ggml_new_graph(c);
    ggml_build_forward_expand(p.g_ref, p.ref);
    p.g_ours = ggml_new_graph(c);
    ggml_build_forward_expand(p.g_ours, p.ours);
    p.swapped = swap(c, p.g_ours);
    return p;
}

std::vector<float> values(ggml_tensor * t) {
    std::vector<float> v(static_cast<size_t>(ggml_nelements(t)));
    ggml_backend_tensor_get(t, v.data(), 0, ggml_nbytes(t));
    return v;
}

// max |ref - ours| and max |ref|.
std::pair<double, double> max_diff(const std::vector<float> & r, const std::vector<float> & o) {
    double worst = 0.0, scale = 0.0;
    for (size_t i = 0; i < r.size(); ++i) {
        worst = std::max(worst, static_cast<double>(std::fabs(r[i] - o[i])));
        scale = std::max(scale, static_cast<double>(std::fabs(r[i])));
    }
    return {worst, scale};
}

// The packed CPU GEMM against ggml's own MUL_MAT on the CPU backend, same inputs, at the training graph's
// shapes and at every edge of its blocking (K past one 256 block, M past one 128 block, N past one 768 block,
// ragged tiles), with broadcast slices (attention: 8 heads over 4 KV heads) and a strided view of src1; then
// the same product with 1 and 3 threads, which must agree to the bit.
void check_cpu_gemm() {
    ggml_backend_t cpu = ggml_backend_init_by_type(GGML_BACKEND_DEVICE_TYPE_CPU, nullptr);
    auto reg = ggml_backend_dev_backend_reg(ggml_backend_get_device(cpu));
    auto set_threads = reinterpret_cast<void (*)(ggml_backend_t, int)>(ggml_backend_reg_get_proc_address(reg, "ggml_backend_set_n_threads"));
    struct shape { int64_t K, m, n, h, ha; bool strided; ggml_type type; };
    const ggml_type F32 = GGML_TYPE_F32;
    for (const shape sh : {shape{256, 768, 512, 1, 1, false, F32}, shape{300, 130, 770, 1, 1, false, F32}, shape{32, 256, 256, 8, 4, false, F32},
                           shape{1000, 40, 9, 2, 1, true, F32}, shape{17, 16, 6, 1, 1, true, F32}, shape{64, 33, 7, 3, 3, false, F32},
                           // quantized and F16 bases: src1 goes through ggml's rounding for each (Q8_0, Q8_K, F16). The wide ones
                           // hold enough src1 values (1M) that some land on a rounding tie (k + 0.5) after the product.
                           shape{512, 130, 70, 1, 1, false, GGML_TYPE_Q8_0}, shape{256, 16, 4096, 1, 1, false, GGML_TYPE_Q8_0}, shape{512, 16, 2048, 1, 1, false, GGML_TYPE_Q4_K},
                           shape{288, 48, 20, 1, 1, true, GGML_TYPE_Q4_0},
                           shape{256, 40, 13, 1, 1, false, GGML_TYPE_Q5_0}, shape{768, 64, 30, 1, 1, false, GGML_TYPE_Q4_K},
                           shape{512, 32, 12, 1, 1, false, GGML_TYPE_Q6_K}, shape{320, 100, 50, 1, 1, false, GGML_TYPE_F16}}) {
        ggml_init_params ip = {64 * ggml_tensor_overhead() + ggml_graph_overhead() * 2, nullptr, true};
        ggml_context * c = ggml_init(ip);
        ggml_tensor * a = ggml_new_tensor_3d(c, sh.type, sh.K, sh.m, sh.ha);
        // strided: src1's rows are K of every K + 5 floats (a view into a wider tensor)
        ggml_tensor * braw = ggml_new_tensor_3d(c, GGML_TYPE_F32, sh.K + (sh.strided ? 5 : 0), sh.n, sh.h);
        ggml_tensor * b = sh.strided ? ggml_view_3d(c, braw, sh.K, sh.n, sh.h, braw->nb[1], braw->nb[2], 0) : braw;
        const op_pair p = twin_graphs(c, ggml_mul_mat, a, b, use_cpu_gemm);
        ggml_backend_buffer_t buf = ggml_backend_alloc_ctx_tensors(c, cpu);
        if (sh.type == F32) {
            fill_uniform({a}, 77);
        } else {
            // The same uniform values, quantized by ggml.
            ggml_context * tmp = ggml_init({ggml_tensor_overhead(), nullptr, true});
            ggml_tensor * af = ggml_new_tensor_3d(tmp, F32, sh.K, sh.m, sh.ha);
            ggml_backend_buffer_t fb = ggml_backend_alloc_ctx_tensors(tmp, cpu);
            fill_uniform({af}, 77);
            std::vector<float> v(static_cast<size_t>(ggml_nelements(af)));
            ggml_backend_tensor_get(af, v.data(), 0, ggml_nbytes(af));
            std::vector<char> q(ggml_nbytes(a));
            ggml_quantize_chunk(sh.type, v.data(), q.data(), 0, sh.m * sh.ha, sh.K, nullptr);
            ggml_backend_tensor_set(a, q.data(), 0, q.size());
            ggml_backend_buffer_free(fb);
            ggml_free(tmp);
        }
        fill_uniform({braw}, 78);
        set_threads(cpu, 1);
        ggml_backend_graph_compute(cpu, p.g_ref);
        ggml_backend_graph_compute(cpu, p.g_ours);
        const std::vector<float> r = values(p.ref), o = values(p.ours);
        set_threads(cpu, 3);
        ggml_backend_graph_compute(cpu, p.g_ours);
        const std::vector<float> o3 = values(p.ours);
        const auto [worst, scale] = max_diff(r, o);
        const bool same = std::equal(o.begin(), o.end(), o3.begin());
        std::printf("     gemm %s K %lld, [%lld x %lld], %lld slices over %lld%s: max |diff| %.2e (max |ref| %.2f), 3 threads %s\n",
                    ggml_type_name(sh.type), static_cast<long long>(sh.K), static_cast<long long>(sh.m), static_cast<long long>(sh.n), static_cast<long long>(sh.h),
                    static_cast<long long>(sh.ha), sh.strided ? ", strided src1" : "", worst, scale, same ? "bitwise equal" : "DIFFER");
        // F32 sums of K products in another order: |error| grows like √K·ε·|terms|.
        check(p.swapped == 1 && scale > 0.1 && worst <= 2e-6 * std::sqrt(static_cast<double>(sh.K)) * scale / 4 && same,
              "CPU GEMM matches ggml's MUL_MAT, same bits at any thread count");
        ggml_backend_buffer_free(buf);
        ggml_free(c);
    }
    ggml_backend_free(cpu);
}

// Whether the registered CPU backend reports every one of `names` among its features (ggml_backend_get_features).
bool cpu_has_features(const std::vector<std::string> & names) {
    ggml_backend_reg_t reg = ggml_backend_reg_by_name("CPU");
    auto get = reg ? reinterpret_cast<ggml_backend_get_features_t>(ggml_backend_reg_get_proc_address(reg, "ggml_backend_get_features")) : nullptr;
    if (!get) return false;
    size_t found = 0;
    for (const ggml_backend_feature * f = get(reg); f && f->name; ++f) {
        if (std::find(names.begin(), names.end(), f->name) != names.end() && std::string(f->value) == "1") ++found;
    }
    return found == names.size();
}

}  // namespace

int main(int argc, char ** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: w2s_core_test <folder with the ggml backend plugins>\n");
        return 2;
    }
    std::string & err = g_err;
    // W2S_CPU_BACKEND_LIB: a libggml-cpu.so built on the machine (scripts/cpu-backend.mjs), registered before
    // the plugin folder's variants, as the addon does; its flash-attention kernel is then the one checked.
    const char * own_lib = std::getenv("W2S_CPU_BACKEND_LIB");
    std::string cpu_source;
    if (!backend_init(argv[1], err, {}, nullptr, own_lib ? own_lib : "", &cpu_source)) {
        std::fprintf(stderr, "backend: %s\n", err.c_str());
        return 1;
    }
    std::printf("CPU backend: %s%s%s\n", cpu_source.c_str(), own_lib ? " " : "", own_lib ? own_lib : "");
    {
        // The sampler's vectorized softmax against std::exp in double: every probability and every block sum
        // within 5e-7 relative, across the whole range down to the clamp (logits spread over 200 nats).
        const int32_t n = 32000 + 5;  // a tail that is not a multiple of the vector width or the block
        std::vector<float> logits(n), probs(n), blocks((n + 255) / 256);
        uint64_t x = 12345;
        for (auto & l : logits) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            l = static_cast<float>(static_cast<double>(x >> 11) / 9007199254740992.0 * 200.0 - 150.0);
        }
        for (const float inv_t : {1.0f, 0.7f, 2.5f}) {
            const float mx = unnormalized_softmax(logits.data(), n, inv_t, probs.data(), blocks.data());
            double worst = 0.0, worst_block = 0.0;
            for (int32_t b = 0; b * 256 < n; ++b) {
                double ref_sum = 0.0;
                for (int32_t i = b * 256; i < std::min(n, (b + 1) * 256); ++i) {
                    // The same float argument as the sampler (and the old std::exp path) computes.
                    const float a = (logits[i] - mx) * inv_t;
                    const double ref = std::exp(std::max(-87.0, static_cast<double>(a)));
                    ref_sum += ref;
                    worst = std::max(worst, std::fabs(probs[i] - ref) / ref);
                }
                worst_block = std::max(worst_block, std::fabs(blocks[b] - ref_sum) / ref_sum);
            }
            std::printf("     softmax at 1/T = %.1f: worst relative error %.2e per entry, %.2e per block sum\n", inv_t, worst, worst_block);
            check(worst < 5e-7 && worst_block < 5e-7, "vectorized softmax matches std::exp");
        }
    }
    {
        // The CPU OUT_PROD kernel against ggml's own OUT_PROD on the CPU backend, same inputs, at the shapes
        // the training graph has: attention dK (head_dim 32, 8 heads over 4 KV heads: src0 broadcast, src1 a
        // transposed view), LoRA dB (rank 8 rows) and dA, and ragged sizes that no tile covers whole.
        ggml_backend_t cpu = ggml_backend_init_by_type(GGML_BACKEND_DEVICE_TYPE_CPU, nullptr);
        struct shape { int64_t m, n, K, h, ha; bool transposed; };
        for (const shape sh : {shape{32, 256, 256, 8, 4, true}, shape{8, 300, 77, 1, 1, false}, shape{256, 8, 300, 1, 1, true},
                               shape{130, 9, 50, 2, 2, true}, shape{5, 3, 7, 1, 1, false}}) {
            ggml_init_params ip = {64 * ggml_tensor_overhead() + ggml_graph_overhead() * 2, nullptr, true};
            ggml_context * c = ggml_init(ip);
            ggml_tensor * a = ggml_new_tensor_3d(c, GGML_TYPE_F32, sh.m, sh.K, sh.ha);
            ggml_tensor * braw = sh.transposed ? ggml_new_tensor_3d(c, GGML_TYPE_F32, sh.K, sh.n, sh.h)
                                               : ggml_new_tensor_3d(c, GGML_TYPE_F32, sh.n, sh.K, sh.h);
            ggml_tensor * b = sh.transposed ? ggml_transpose(c, braw) : braw;  // [n, K, h]
            const op_pair p = twin_graphs(c, ggml_out_prod, a, b, use_cpu_out_prod);
            ggml_backend_buffer_t buf = ggml_backend_alloc_ctx_tensors(c, cpu);
            fill_uniform({a, braw}, 99);
            ggml_backend_graph_compute(cpu, p.g_ref);
            ggml_backend_graph_compute(cpu, p.g_ours);
            const auto [worst, scale] = max_diff(values(p.ref), values(p.ours));
            std::printf("     out_prod [%lld x %lld] over %lld, %lld slices%s: max |diff| %.2e (max |ref| %.2f)\n", static_cast<long long>(sh.m),
                        static_cast<long long>(sh.n), static_cast<long long>(sh.K), static_cast<long long>(sh.h), sh.transposed ? ", transposed src1" : "", worst, scale);
            check(p.swapped == 1 && scale > 0.1 && worst <= 2e-6 * scale, "CPU OUT_PROD kernel matches ggml's");
            ggml_backend_buffer_free(buf);
            ggml_free(c);
        }
        ggml_backend_free(cpu);
    }
    check_cpu_gemm();
    {
        // Flash attention against its float64 definition. The kernel of the backend built here accumulates in
        // F32 (1e-5 relative); ggml's own per-cell path accumulates V in F16 (about 1e-3).
        ggml_backend_t cpu = ggml_backend_init_by_type(GGML_BACKEND_DEVICE_TYPE_CPU, nullptr);
        const bool own_kernel = cpu_source == "host" && cpu_has_features({"AVX2", "F16C", "FMA"});
        const double tol = own_kernel ? 2e-5 : 4e-3;
        for (const flash_attn_result & r : check_flash_attention(cpu)) {
            std::printf("     flash attention, %s: max |diff| %.2e (max |ref| %.2f)\n", r.what.c_str(), r.max_diff, r.max_ref);
            check(r.max_ref > 0.05 && r.max_diff <= tol * std::max(1.0, r.max_ref),
                  std::string("flash attention matches its float64 definition (") + (own_kernel ? "our kernel" : "ggml's kernel") + ")");
        }
        ggml_backend_free(cpu);
    }
    {
        // Weights in the repack buffers (AMX, CPU_REPACK) that the model loader uses by default. Both paths
        // round X to 8 bits; the repacked one may do so in another order, never much worse than the plain one.
        ggml_backend_t cpu = ggml_backend_init_by_type(GGML_BACKEND_DEVICE_TYPE_CPU, nullptr);
        std::vector<std::string> skipped;
        const std::vector<repack_result> rs = check_repacked_matmul(cpu, skipped);
        for (const repack_result & r : rs) {
            std::printf("     repacked matmul, %s: max |diff| %.2e (plain buffer %.2e, max |ref| %.2f)\n", r.what.c_str(), r.max_diff, r.plain_diff, r.max_ref);
            check(r.max_ref > 1.0 && r.max_diff <= std::max(2.0 * r.plain_diff, 1e-3 * r.max_ref), "repacked matmul matches float64 as the plain buffer does");
        }
        std::printf("     repacked matmul: %zu cases ran, %zu declined by their buffer type on this CPU\n", rs.size(), skipped.size());
        ggml_backend_free(cpu);
    }
    const std::string path = "w2s_core_test_model.gguf";
    check(write_tiny_model(path, err), "write a tiny llama GGUF");

    trainer_params tp;
    tp.rank = 4;
    tp.alpha = 8.0f;
    tp.seed = 3;
    tp.n_threads = 2;
    auto tr = trainer::create(path, tp, err);
    check(tr != nullptr, "create a trainer");
    if (!tr) return 1;
    std::printf("backend %s, %zu LoRA parameters\n", tr->backend_name().c_str(), tr->n_params());

    // 1. Training-graph log-probs == llama.cpp's inference path (the scorer) on the base model.
    score_request sr;
    train_batch batch = make_batch(sr);
    std::vector<double> ours;
    check(tr->logprobs(batch, false, ours, err), "training-graph log-probs");
    llama_model_params mp = llama_model_default_params();
    mp.progress_callback = [](float, void *) { return true; };
    llama_model * model = llama_model_load_from_file(path.c_str(), mp);
    check(model != nullptr, "llama.cpp loads the model");
    if (model) {
        std::atomic<bool> cancel{false};
        std::vector<score_output> ref;
        sr.n_threads = 2;
        check(run_scorer(model, sr, cancel, nullptr, ref, err), "llama.cpp scoring");
        double max_diff = 0.0;
        size_t k = 0;
        for (const auto & o : ref) {
            for (float lp : o.logprobs) max_diff = std::max(max_diff, std::fabs(lp - ours[k++]));
        }
        std::printf("log-probs: %zu tokens, max |train graph - llama.cpp| = %.3g\n", k, max_diff);
        check(k == ours.size() && max_diff < 1e-4, "log-prob parity within 1e-4");
        llama_model_free(model);
    }

    // 2. LoRA gradients against central finite differences (random B so A has gradients too).
    std::vector<float> p0 = tr->get_params();
    rng r(7, 1, 2);
    for (auto & v : p0) {
        if (v == 0.0f) v = static_cast<float>((r.uniform() - 0.5) * 0.2);
    }
    tr->set_params(p0);
    double loss = 0.0;
    int64_t n = 0;
    check(tr->accumulate(batch, 1.0f, loss, n, err), "forward + backward");
    const std::vector<float> grad = tr->get_grads();
    tr->clear_grads();
    auto loss_at = [&](const std::vector<float> & p) {
        tr->set_params(p);
        std::vector<double> lp;
        tr->logprobs(batch, true, lp, err);
        double s = 0.0;
        for (double x : lp) s -= x;
        return s;
    };
    double worst = 0.0;
    const double h = 1e-2;
    for (size_t k = 0; k < 16; ++k) {
        const size_t i = (k * 7919 + 13) % p0.size();
        std::vector<float> a = p0, b = p0;
        a[i] += static_cast<float>(h);
        b[i] -= static_cast<float>(h);
        const double fd = (loss_at(a) - loss_at(b)) / (2 * h);
        worst = std::max(worst, std::fabs(fd - grad[i]) / std::max(0.05, std::fabs(fd) + std::fabs(grad[i])));
    }
    std::printf("gradients: worst relative difference to finite differences %.3g (h = %g)\n", worst, h);
    check(worst < 2e-2, "LoRA gradients match finite differences");
    tr->set_params(p0);

    // 3. SFT steps lower the loss.
    adamw_params ap;
    ap.lr = 1e-2f;
    double first = 0.0, last = 0.0;
    for (int s = 0; s < 20; ++s) {
        double norm = 0.0;
        if (!tr->accumulate(batch, 1.0f / static_cast<float>(n), loss, n, err) || !tr->step(ap, norm, err)) break;
        if (s == 0) first = loss / n;
        last = loss / n;
    }
    std::printf("training: mean loss %.4f -> %.4f over 20 steps\n", first, last);
    check(last < first * 0.5, "20 steps halve the loss");

    std::remove(path.c_str());
    std::printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
