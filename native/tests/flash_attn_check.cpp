// FLASH_ATTN_EXT on the CPU backend against a float64 reference of its definition, at the shapes the
// sampler's decode has and at every edge of native/ggml-cpu/flash_attn_decode.inc (the kernel the CPU backend
// built on the machine runs): head sizes with 8-wide and scalar tails, K and V of different sizes, grouped
// KV heads, several streams, masked cells, windows over many 128-cell blocks, the split-KV path (one query,
// >= 512 cells: partial results reduced), several queries per stream, ALiBi, logit soft-capping and sinks.
#include "flash_attn_check.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "ggml-alloc.h"
#include "ggml-backend.h"

namespace {

struct fa_case {
    const char * what;
    int64_t DK, DV, H, Hkv, N, S, n_kv;
    float max_bias, softcap;
    bool sinks;
};

uint64_t g_x = 2024;
float uniform() {  // [-1, 1)
    g_x = g_x * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<float>(static_cast<double>(g_x >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

double run_case(ggml_backend_t cpu, const fa_case & c, double & scale_out) {
    ggml_init_params ip = {16 * ggml_tensor_overhead() + ggml_graph_overhead(), nullptr, true};
    ggml_context * ctx = ggml_init(ip);
    ggml_tensor * q = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, c.DK, c.N, c.H, c.S);
    ggml_tensor * k = ggml_new_tensor_4d(ctx, GGML_TYPE_F16, c.DK, c.n_kv, c.Hkv, c.S);
    ggml_tensor * v = ggml_new_tensor_4d(ctx, GGML_TYPE_F16, c.DV, c.n_kv, c.Hkv, c.S);
    ggml_tensor * m = ggml_new_tensor_4d(ctx, GGML_TYPE_F16, c.n_kv, c.N, 1, c.S);
    ggml_tensor * sk = c.sinks ? ggml_new_tensor_1d(ctx, GGML_TYPE_F32, c.H) : nullptr;
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.DK));
    ggml_tensor * out = ggml_flash_attn_ext(ctx, q, k, v, m, scale, c.max_bias, c.softcap);
    ggml_flash_attn_ext_set_prec(out, GGML_PREC_F32);
    if (sk) ggml_flash_attn_ext_add_sinks(out, sk);
    ggml_cgraph * g = ggml_new_graph(ctx);
    ggml_build_forward_expand(g, out);
    ggml_backend_buffer_t buf = ggml_backend_alloc_ctx_tensors(ctx, cpu);

    // Scores spread over several nats, growing along the window so that the running maximum moves late.
    std::vector<float> qv(ggml_nelements(q)), sv(c.H);
    for (auto & e : qv) e = 3.0f * uniform();
    std::vector<ggml_fp16_t> kv(ggml_nelements(k)), vv(ggml_nelements(v)), mv(ggml_nelements(m));
    for (int64_t i = 0; i < ggml_nelements(k); ++i) {
        const int64_t cell = (i / c.DK) % c.n_kv;
        kv[i] = ggml_fp32_to_fp16(uniform() * (1.0f + static_cast<float>(cell) / static_cast<float>(c.n_kv)));
    }
    for (auto & e : vv) e = ggml_fp32_to_fp16(uniform());
    for (auto & e : sv) e = 2.0f * uniform();
    // Stream s sees its first n_kv - 37·s cells (the rest is another stream's or padding), minus every
    // 7th; query n of a stream is causal over the last N cells of its window.
    std::vector<float> maskf(ggml_nelements(m));
    for (int64_t s = 0; s < c.S; ++s) {
        const int64_t len = c.n_kv - 37 * s;
        for (int64_t n = 0; n < c.N; ++n) {
            for (int64_t j = 0; j < c.n_kv; ++j) {
                const bool visible = j < len - (c.N - 1 - n) && j % 7 != 3;
                maskf[(s * c.N + n) * c.n_kv + j] = visible ? (c.max_bias > 0.0f ? -static_cast<float>(len - 1 - j) : 0.0f) : -INFINITY;
            }
        }
    }
    for (size_t i = 0; i < maskf.size(); ++i) mv[i] = ggml_fp32_to_fp16(maskf[i]);
    ggml_backend_tensor_set(q, qv.data(), 0, ggml_nbytes(q));
    ggml_backend_tensor_set(k, kv.data(), 0, ggml_nbytes(k));
    ggml_backend_tensor_set(v, vv.data(), 0, ggml_nbytes(v));
    ggml_backend_tensor_set(m, mv.data(), 0, ggml_nbytes(m));
    if (sk) ggml_backend_tensor_set(sk, sv.data(), 0, ggml_nbytes(sk));
    ggml_backend_graph_compute(cpu, g);
    std::vector<float> got(ggml_nelements(out));
    ggml_backend_tensor_get(out, got.data(), 0, ggml_nbytes(out));

    // The definition in float64: q rounded to F16 (as ggml's CPU kernels take it), ALiBi slopes per head.
    const uint32_t n_head_log2 = 1u << static_cast<uint32_t>(std::floor(std::log2(static_cast<double>(c.H))));
    const double m0 = std::pow(2.0, -c.max_bias / n_head_log2), m1 = std::pow(2.0, -(c.max_bias / 2.0) / n_head_log2);
    double worst = 0.0, peak = 0.0;
    std::vector<double> sc(c.n_kv), acc(c.DV);
    for (int64_t s = 0; s < c.S; ++s) {
        for (int64_t n = 0; n < c.N; ++n) {
            for (int64_t h = 0; h < c.H; ++h) {
                const int64_t hk = h / (c.H / c.Hkv);
                const double slope = c.max_bias > 0.0f ? (h < n_head_log2 ? std::pow(m0, h + 1) : std::pow(m1, 2 * (h - n_head_log2) + 1)) : 1.0;
                const float * qr = &qv[((s * c.H + h) * c.N + n) * c.DK];
                double mx = c.sinks ? sv[h] : -INFINITY;
                for (int64_t j = 0; j < c.n_kv; ++j) {
                    const float mk = ggml_fp16_to_fp32(mv[(s * c.N + n) * c.n_kv + j]);
                    if (mk == -INFINITY) { sc[j] = -INFINITY; continue; }
                    double d = 0.0;
                    for (int64_t e = 0; e < c.DK; ++e) {
                        d += static_cast<double>(ggml_fp16_to_fp32(ggml_fp32_to_fp16(qr[e]))) * ggml_fp16_to_fp32(kv[((s * c.Hkv + hk) * c.n_kv + j) * c.DK + e]);
                    }
                    d *= scale;
                    if (c.softcap != 0.0f) d = c.softcap * std::tanh(d / c.softcap);
                    sc[j] = d + slope * mk;
                    mx = std::max(mx, sc[j]);
                }
                double sum = c.sinks ? std::exp(sv[h] - mx) : 0.0;
                std::fill(acc.begin(), acc.end(), 0.0);
                for (int64_t j = 0; j < c.n_kv; ++j) {
                    if (sc[j] == -INFINITY) continue;
                    const double w = std::exp(sc[j] - mx);
                    sum += w;
                    for (int64_t e = 0; e < c.DV; ++e) acc[e] += w * ggml_fp16_to_fp32(vv[((s * c.Hkv + hk) * c.n_kv + j) * c.DV + e]);
                }
                const float * o = &got[((s * c.N + n) * c.H + h) * c.DV];  // out is [DV, H, N, S]
                for (int64_t e = 0; e < c.DV; ++e) {
                    const double ref = acc[e] / sum;
                    worst = std::max(worst, std::fabs(ref - o[e]));
                    peak = std::max(peak, std::fabs(ref));
                }
            }
        }
    }
    ggml_backend_buffer_free(buf);
    ggml_free(ctx);
    scale_out = peak;
    return worst;
}

}  // namespace

std::vector<flash_attn_result> check_flash_attention(ggml_backend_t cpu) {
    const fa_case cases[] = {
        {"decode, head 32, 4 streams, 300 cells", 32, 32, 8, 8, 1, 4, 300, 0.0f, 0.0f, false},
        {"decode, head 40 (8-wide tail), 8 over 2 KV heads, split-KV path (1 stream, 600 cells)", 40, 40, 8, 2, 1, 1, 600, 0.0f, 0.0f, false},
        {"decode, head 40, 8 over 2 KV heads (groups of 4), 3 streams, 333 cells", 40, 40, 8, 2, 1, 3, 333, 0.0f, 0.0f, false},
        {"3 queries, head 20 (scalar tail), ALiBi, soft-cap 30", 20, 20, 4, 4, 3, 2, 200, 8.0f, 30.0f, false},
        {"decode, head 128, sinks, 2 streams", 128, 128, 4, 2, 1, 2, 256, 0.0f, 0.0f, true},
        {"decode, K 64 / V 48, 6 heads, 1 KV head", 64, 48, 6, 1, 1, 3, 129, 0.0f, 0.0f, false},
    };
    std::vector<flash_attn_result> out;
    for (const fa_case & c : cases) {
        flash_attn_result r;
        r.what = c.what;
        r.max_diff = run_case(cpu, c, r.max_ref);
        out.push_back(r);
    }
    return out;
}
