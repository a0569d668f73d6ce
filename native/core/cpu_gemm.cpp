#include "cpu_gemm.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu_swap.h"

namespace w2s {
namespace {

// Register tile (MR rows × NR columns of dst) and cache blocks, in floats: an A block (MC × KC, 128 KiB)
// stays in L2 while every B panel of the N block passes it; one B panel (KC × NR, 6 KiB) and one A panel
// (KC × MR, 16 KiB) stay in L1 over a micro-tile. NC is a multiple of NR and MC of MR, so packed blocks
// (padded to whole panels) never pass their buffers.
constexpr int64_t MR = 16, NR = 6, KC = 256, MC = 128, NC = 768;

// What ggml's CPU backend turns src1 into before its dot products with a src0 of each type
// (type_traits_cpu[].vec_dot_type in ggml-cpu.c): F32 for F32, F16 / BF16 for those, Q8_0 for the symmetric
// 32-blocks, Q8_K for the K-quants. GGML_TYPE_COUNT: a type this kernel leaves to ggml, among them Q4_1 and
// Q5_1, whose dot product with Q8_1 adds min · sum(src1 block) with that sum rounded to F16 (5e-3 off a
// float product at K = 256, measured), and every I-quant.
ggml_type activation_type(ggml_type t) {
    switch (t) {
        case GGML_TYPE_F32: case GGML_TYPE_F16: case GGML_TYPE_BF16: return t;
        case GGML_TYPE_Q4_0: case GGML_TYPE_Q5_0: case GGML_TYPE_Q8_0: return GGML_TYPE_Q8_0;
        case GGML_TYPE_Q2_K: case GGML_TYPE_Q3_K: case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K: case GGML_TYPE_Q6_K: return GGML_TYPE_Q8_K;
        default: return GGML_TYPE_COUNT;
    }
}

// Round to nearest, ties to even (the default rounding mode), as _mm256_round_ps(_MM_ROUND_NEAREST) and
// ggml's nearest_int do. rint, not the v + 1.5·2^23 trick: the compiler may fuse that addition with the
// product before it into one FMA, which rounds once and moves ties (measured: one int8 off, 2e-3 in a dot
// product). With SSE4.1 (the AVX2 clone) it is one roundps instruction.
__attribute__((always_inline)) inline float round_even(float v) { return __builtin_rintf(v); }

// x[0, n) (n a multiple of the block) as ggml's CPU backend quantizes it for `t` and then as floats again, so
// that the float products below are ggml's integer dot products up to rounding: Q8_0 as its AVX2
// quantize_row_q8_0 (d = max|x| / 127 stored as F16, q = round-to-even(x · 127 / max|x|)), Q8_K as
// quantize_row_q8_K_ref (the x86 build's own: d = max / -127 by the signed extreme, q ≤ 127), F16 and BF16
// with ggml's conversions of a whole row.
__attribute__((always_inline)) inline void round_trip(ggml_type t, const float * x, float * y, int64_t n) {
    switch (t) {
        case GGML_TYPE_F16: {
            ggml_fp16_t h[KC];
            ggml_fp32_to_fp16_row(x, h, n);
            ggml_fp16_to_fp32_row(h, y, n);
            return;
        }
        case GGML_TYPE_BF16: {
            ggml_bf16_t h[KC];
            ggml_fp32_to_bf16_row(x, h, n);
            ggml_bf16_to_fp32_row(h, y, n);
            return;
        }
        case GGML_TYPE_Q8_0:
            for (int64_t b = 0; b < n; b += 32) {
                float amax = 0.0f;
                for (int64_t i = b; i < b + 32; ++i) amax = std::max(amax, std::fabs(x[i]));
                const float d = ggml_fp16_to_fp32(ggml_fp32_to_fp16(amax / 127.0f)), id = amax != 0.0f ? 127.0f / amax : 0.0f;
                for (int64_t i = b; i < b + 32; ++i) y[i] = d * round_even(x[i] * id);
            }
            return;
        case GGML_TYPE_Q8_K:
            for (int64_t b = 0; b < n; b += 256) {
                float amax = 0.0f, mx = 0.0f;
                for (int64_t i = b; i < b + 256; ++i) {
                    if (std::fabs(x[i]) > amax) amax = std::fabs(x[i]), mx = x[i];
                }
                if (amax == 0.0f) {
                    std::fill(y + b, y + b + 256, 0.0f);
                    continue;
                }
                const float iscale = -127.0f / mx, d = 1.0f / iscale;
                for (int64_t i = b; i < b + 256; ++i) y[i] = d * std::min(127.0f, round_even(iscale * x[i]));
            }
            return;
        default:
            std::memcpy(y, x, static_cast<size_t>(n) * sizeof(float));
    }
}

// One (i2, i3) slice of the product.
struct operands {
    const char * a;  // a row m (k contiguous, in a_type's blocks) at a + m·a_row
    size_t a_row;
    ggml_type a_type;
    ggml_to_float_t a_to_float;  // nullptr for F32
    ggml_type b_type;            // activation_type(a_type)
    const char * b;  // b column n (k contiguous) at b + n·b_row
    size_t b_row;
    float * c;       // dst column n at c + n·ldc
    int64_t ldc, M, N, K;
};

#if defined(__GNUC__)
typedef float v8f __attribute__((vector_size(32)));

// Rows [m0, m0 + mc) × k [k0, k0 + kc) of a as panels of MR rows, dequantized: element (k, i) of the panel at
// row p is dst[p·kc + k·MR + i]; rows past the block (only at M's end) are zero. k0 is a multiple of KC, so of
// every block size (32, 256).
__attribute__((always_inline)) inline void pack_a(const operands & o, int64_t m0, int64_t mc, int64_t k0, int64_t kc, float * dst) {
    float deq[KC];
    const size_t k0_bytes = ggml_row_size(o.a_type, k0);
    for (int64_t p = 0; p < mc; p += MR) {
        float * panel = dst + p * kc;
        for (int64_t i = 0; i < MR; ++i) {
            if (p + i < mc) {
                const char * bytes = o.a + (m0 + p + i) * o.a_row + k0_bytes;
                const float * row = reinterpret_cast<const float *>(bytes);
                if (o.a_to_float) {
                    o.a_to_float(bytes, deq, kc);
                    row = deq;
                }
                for (int64_t k = 0; k < kc; ++k) panel[k * MR + i] = row[k];
            } else {
                for (int64_t k = 0; k < kc; ++k) panel[k * MR + i] = 0.0f;
            }
        }
    }
}

// Columns [n0, n0 + nc) × k [k0, k0 + kc) of b as panels of NR columns, laid out like pack_a's, each column
// rounded as ggml rounds it for a's type (round_trip).
__attribute__((always_inline)) inline void pack_b(const operands & o, int64_t n0, int64_t nc, int64_t k0, int64_t kc, float * dst) {
    float rt[KC];
    for (int64_t q = 0; q < nc; q += NR) {
        float * panel = dst + q * kc;
        for (int64_t j = 0; j < NR; ++j) {
            if (q + j < nc) {
                const float * col = reinterpret_cast<const float *>(o.b + (n0 + q + j) * o.b_row) + k0;
                if (o.b_type != GGML_TYPE_F32) {
                    round_trip(o.b_type, col, rt, kc);
                    col = rt;
                }
                for (int64_t k = 0; k < kc; ++k) panel[k * NR + j] = col[k];
            } else {
                for (int64_t k = 0; k < kc; ++k) panel[k * NR + j] = 0.0f;
            }
        }
    }
}

// The MR × NR tile at c from one A panel and one B panel over kc: 2 vector loads, NR broadcasts and 2·NR
// fused multiply-adds per k. The first k block stores, later ones add (`accumulate`); an edge tile (mr < MR
// or nr < NR: padding computed, not written) goes through a local copy.
__attribute__((always_inline)) inline void micro(int64_t kc, const float * ap, const float * bp, float * c, int64_t ldc, int64_t mr, int64_t nr,
                                                 bool accumulate) {
    v8f acc[NR][2];
    for (int64_t j = 0; j < NR; ++j) acc[j][0] = acc[j][1] = v8f{};
    for (int64_t k = 0; k < kc; ++k) {
        v8f a0, a1;
        std::memcpy(&a0, ap + k * MR, sizeof(v8f));
        std::memcpy(&a1, ap + k * MR + 8, sizeof(v8f));
        const float * bk = bp + k * NR;
        for (int64_t j = 0; j < NR; ++j) {
            acc[j][0] += a0 * bk[j];
            acc[j][1] += a1 * bk[j];
        }
    }
    if (mr == MR && nr == NR) {
        for (int64_t j = 0; j < NR; ++j) {
            float * cj = c + j * ldc;
            if (accumulate) {
                v8f c0, c1;
                std::memcpy(&c0, cj, sizeof(v8f));
                std::memcpy(&c1, cj + 8, sizeof(v8f));
                acc[j][0] += c0;
                acc[j][1] += c1;
            }
            std::memcpy(cj, &acc[j][0], sizeof(v8f));
            std::memcpy(cj + 8, &acc[j][1], sizeof(v8f));
        }
        return;
    }
    float tile[NR][MR];
    std::memcpy(tile, acc, sizeof(tile));
    for (int64_t j = 0; j < nr; ++j) {
        for (int64_t i = 0; i < mr; ++i) c[j * ldc + i] = accumulate ? c[j * ldc + i] + tile[j][i] : tile[j][i];
    }
}

// dst columns [n_begin, n_end) of one slice, Goto's loop order: N blocks, K blocks (pack B), M blocks
// (pack A), then micro-tiles. Each element's sum runs over k in ascending blocks, whichever thread does it.
__attribute__((always_inline)) inline void columns_body(const operands & o, int64_t n_begin, int64_t n_end) {
    static thread_local std::vector<float> abuf, bbuf;  // ggml's worker threads live as long as the backend
    abuf.resize(static_cast<size_t>(MC * KC));
    bbuf.resize(static_cast<size_t>(NC * KC));
    for (int64_t jc = n_begin; jc < n_end; jc += NC) {
        const int64_t nc = std::min(NC, n_end - jc);
        for (int64_t pc = 0; pc < o.K; pc += KC) {
            const int64_t kc = std::min(KC, o.K - pc);
            pack_b(o, jc, nc, pc, kc, bbuf.data());
            for (int64_t ic = 0; ic < o.M; ic += MC) {
                const int64_t mc = std::min(MC, o.M - ic);
                pack_a(o, ic, mc, pc, kc, abuf.data());
                for (int64_t jr = 0; jr < nc; jr += NR) {
                    for (int64_t ir = 0; ir < mc; ir += MR) {
                        micro(kc, abuf.data() + ir * kc, bbuf.data() + jr * kc, o.c + (jc + jr) * o.ldc + ic + ir, o.ldc,
                              std::min(MR, mc - ir), std::min(NR, nc - jr), pc > 0);
                    }
                }
            }
        }
    }
}

// The body compiled twice: for AVX2 + FMA and for the baseline, chosen by the CPU at run time (as in
// cpu_out_prod.cpp).
#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) void columns_avx2(const operands & o, int64_t n_begin, int64_t n_end) { columns_body(o, n_begin, n_end); }
#endif

void columns(const operands & o, int64_t n_begin, int64_t n_end) {
#if defined(__x86_64__)
    static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (avx2) {
        columns_avx2(o, n_begin, n_end);
        return;
    }
#endif
    columns_body(o, n_begin, n_end);
}
#endif

}  // namespace

bool cpu_gemm_applies(const ggml_tensor * n) {
#if defined(__GNUC__)
    if (n->op != GGML_OP_MUL_MAT) return false;
    const ggml_tensor * a = n->src[0];
    const ggml_tensor * b = n->src[1];
    return n->type == GGML_TYPE_F32 && activation_type(a->type) != GGML_TYPE_COUNT && b->type == GGML_TYPE_F32 &&
           a->nb[0] == ggml_type_size(a->type) && a->ne[0] % ggml_blck_size(activation_type(a->type)) == 0 &&
           (a->type == GGML_TYPE_F32 || ggml_get_type_traits(a->type)->to_float) && b->nb[0] == sizeof(float) && ggml_is_contiguous(n) &&
           a->ne[0] >= 16 && a->ne[1] >= 16 && b->ne[1] >= NR && n->ne[2] % a->ne[2] == 0 && n->ne[3] % a->ne[3] == 0;
#else
    (void)n;
    return false;  // no vector extensions: ggml's MUL_MAT stays
#endif
}

void cpu_gemm(ggml_tensor * dst, const ggml_tensor * a, const ggml_tensor * b, int ith, int nth, void * /*userdata*/) {
#if defined(__GNUC__)
    const int64_t M = dst->ne[0], N = dst->ne[1], ne2 = dst->ne[2], ne3 = dst->ne[3], K = a->ne[0];
    const int64_t slices = ne2 * ne3, r2 = ne2 / a->ne[2], r3 = ne3 / a->ne[3];
    // Work items are column ranges of one slice: at most NC wide, and enough of them for every thread.
    int64_t per_slice = std::max((N + NC - 1) / NC, (nth + slices - 1) / slices);
    per_slice = std::min(per_slice, (N + NR - 1) / NR);
    const int64_t width = ((N + per_slice - 1) / per_slice + NR - 1) / NR * NR;
    per_slice = (N + width - 1) / width;
    const int64_t total = slices * per_slice, per = (total + nth - 1) / nth;
    const int64_t first = std::min(total, per * ith), last = std::min(total, first + per);
    for (int64_t t = first; t < last; ++t) {
        const int64_t s = t / per_slice, i2 = s % ne2, i3 = s / ne2, j = t % per_slice;
        operands o;
        o.a = static_cast<const char *>(a->data) + (i2 / r2) * a->nb[2] + (i3 / r3) * a->nb[3];
        o.a_row = a->nb[1];
        o.a_type = a->type;
        o.a_to_float = a->type == GGML_TYPE_F32 ? nullptr : ggml_get_type_traits(a->type)->to_float;
        o.b_type = activation_type(a->type);
        o.b = static_cast<const char *>(b->data) + i2 * b->nb[2] + i3 * b->nb[3];
        o.b_row = b->nb[1];
        o.c = reinterpret_cast<float *>(static_cast<char *>(dst->data) + i2 * dst->nb[2] + i3 * dst->nb[3]);
        o.ldc = M;
        o.M = M;
        o.N = N;
        o.K = K;
        columns(o, j * width, std::min(N, (j + 1) * width));
    }
#else
    (void)dst, (void)a, (void)b, (void)ith, (void)nth;
#endif
}

int use_cpu_gemm(ggml_context * ctx, ggml_cgraph * gf) { return swap_to_custom2(ctx, gf, cpu_gemm_applies, cpu_gemm); }

}  // namespace w2s
