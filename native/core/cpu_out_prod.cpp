#include "cpu_out_prod.h"

#include "cpu_swap.h"

#include <algorithm>
#include <cstring>
#include <memory>

namespace w2s {
namespace {

// One (i2, i3) slice: the addresses and strides of its operands.
struct slice {
    const char * a;  // a[0, 0] of the slice; rows of ne0 floats, `a_k` bytes apart
    size_t a_k;
    const char * b;  // b[0, 0]; b[i1, k] at b + i1·b_col + k·b_k
    size_t b_col, b_k;
    float * dst;     // dst[0, 0]; column i1 starts at dst + i1·ld
    int64_t ld, K;
};

// Any rectangle, one element at a time (ragged edges: ne0 % 8 rows, and what tiles do not cover).
inline void edge(const slice & s, int64_t i0, int64_t n0, int64_t i1, int64_t n1) {
    for (int64_t c = i1; c < i1 + n1; ++c) {
        for (int64_t i = i0; i < i0 + n0; ++i) {
            float sum = 0.0f;
            for (int64_t k = 0; k < s.K; ++k) {
                float av, bv;
                std::memcpy(&av, s.a + k * s.a_k + i * sizeof(float), sizeof(float));
                std::memcpy(&bv, s.b + c * s.b_col + k * s.b_k, sizeof(float));
                sum += av * bv;
            }
            s.dst[c * s.ld + i] = sum;
        }
    }
}

#if defined(__GNUC__)
typedef float v8f __attribute__((vector_size(32)));

// A (8·V) × C tile of dst held in registers over the whole k loop: per k, V vector loads of a's rows,
// C scalar loads of b, V·C fused multiply-adds. Always inlined into its caller's clone.
template <int V, int C>
__attribute__((always_inline)) inline void tile(const slice & s, int64_t i0, int64_t i1) {
    v8f acc[C][V];
    for (int c = 0; c < C; ++c)
        for (int v = 0; v < V; ++v) acc[c][v] = v8f{};
    const char * ap = s.a + i0 * sizeof(float);
    const char * bp = s.b + i1 * s.b_col;
    for (int64_t k = 0; k < s.K; ++k) {
        v8f av[V];
        for (int v = 0; v < V; ++v) std::memcpy(&av[v], ap + k * s.a_k + v * sizeof(v8f), sizeof(v8f));
        for (int c = 0; c < C; ++c) {
            float bv;
            std::memcpy(&bv, bp + c * s.b_col + k * s.b_k, sizeof(float));
            for (int v = 0; v < V; ++v) acc[c][v] += av[v] * bv;
        }
    }
    for (int c = 0; c < C; ++c)
        for (int v = 0; v < V; ++v) std::memcpy(s.dst + (i1 + c) * s.ld + i0 + 8 * v, &acc[c][v], sizeof(v8f));
}

// One grid cell [i0, i0 + TI) × [i1, i1 + TC), clipped to the slice: the full tile, or 8-row single
// columns and the scalar edge.
template <int V, int C>
__attribute__((always_inline)) inline void cell(const slice & s, int64_t i0, int64_t i1, int64_t ne0, int64_t ne1) {
    const int64_t n0 = std::min<int64_t>(8 * V, ne0 - i0), n1 = std::min<int64_t>(C, ne1 - i1);
    if (n0 == 8 * V && n1 == C) {
        tile<V, C>(s, i0, i1);
        return;
    }
    const int64_t v0 = n0 / 8 * 8;
    for (int64_t c = i1; c < i1 + n1; ++c)
        for (int64_t i = i0; i < i0 + v0; i += 8) tile<1, 1>(s, i, c);
    if (v0 < n0) edge(s, i0 + v0, n0 - v0, i1, n1);
}
#endif

__attribute__((always_inline)) inline void run_cells_body(const slice * slices, int64_t first, int64_t last, int64_t cells0,
                                                          int64_t cells1, int64_t ne0, int64_t ne1, bool wide) {
    for (int64_t t = first; t < last; ++t) {
        const int64_t per_slice = cells0 * cells1;
        const slice & s = slices[t / per_slice];
        const int64_t r = t % per_slice;
        const int64_t c0 = r % cells0, c1 = r / cells0;  // i0 fastest: neighbouring cells share b's columns
#if defined(__GNUC__)
        if (wide) cell<2, 4>(s, c0 * 16, c1 * 4, ne0, ne1);
        else cell<1, 8>(s, c0 * 8, c1 * 8, ne0, ne1);
#else
        const int64_t TI = wide ? 16 : 8, TC = wide ? 4 : 8;
        edge(s, c0 * TI, std::min(TI, ne0 - c0 * TI), c1 * TC, std::min(TC, ne1 - c1 * TC));
#endif
    }
}

// The body compiled twice: for AVX2 + FMA (fused multiply-adds on ymm registers) and for the baseline
// (SSE2 pairs), chosen by the CPU at run time. (target_clones cannot name two extensions in one clone.)
#if defined(__GNUC__) && defined(__x86_64__)
__attribute__((target("avx2,fma"))) void run_cells_avx2(const slice * slices, int64_t first, int64_t last, int64_t cells0,
                                                        int64_t cells1, int64_t ne0, int64_t ne1, bool wide) {
    run_cells_body(slices, first, last, cells0, cells1, ne0, ne1, wide);
}
#endif

void run_cells(const slice * slices, int64_t first, int64_t last, int64_t cells0, int64_t cells1, int64_t ne0, int64_t ne1, bool wide) {
#if defined(__GNUC__) && defined(__x86_64__)
    static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (avx2) {
        run_cells_avx2(slices, first, last, cells0, cells1, ne0, ne1, wide);
        return;
    }
#endif
    run_cells_body(slices, first, last, cells0, cells1, ne0, ne1, wide);
}

}  // namespace

bool cpu_out_prod_applies(const ggml_tensor * n) {
    if (n->op != GGML_OP_OUT_PROD) return false;
    const ggml_tensor * a = n->src[0];
    const ggml_tensor * b = n->src[1];
    return n->type == GGML_TYPE_F32 && a->type == GGML_TYPE_F32 && b->type == GGML_TYPE_F32 &&
           a->nb[0] == sizeof(float) && ggml_is_contiguous(n) && n->ne[2] % a->ne[2] == 0 && n->ne[3] % a->ne[3] == 0;
}

void cpu_out_prod(ggml_tensor * dst, const ggml_tensor * a, const ggml_tensor * b, int ith, int nth, void * /*userdata*/) {
    const int64_t ne0 = dst->ne[0], ne1 = dst->ne[1], ne2 = dst->ne[2], ne3 = dst->ne[3];
    const int64_t K = a->ne[1];
    // Rows of 16+ floats take 16 × 4 tiles; shorter rows (a LoRA rank of 8) 8 × 8.
    const bool wide = ne0 >= 16;
    const int64_t TI = wide ? 16 : 8, TC = wide ? 4 : 8;
    const int64_t cells0 = (ne0 + TI - 1) / TI, cells1 = (ne1 + TC - 1) / TC;
    const int64_t n_slices = ne2 * ne3;
    // A few slices at most per call (heads × sequences): kept on the stack up to 256, else on the heap.
    slice local[256];
    std::unique_ptr<slice[]> heap;
    slice * slices = local;
    if (n_slices > 256) {
        heap.reset(new slice[static_cast<size_t>(n_slices)]);
        slices = heap.get();
    }
    const int64_t r2 = ne2 / a->ne[2], r3 = ne3 / a->ne[3];
    for (int64_t i3 = 0; i3 < ne3; ++i3) {
        for (int64_t i2 = 0; i2 < ne2; ++i2) {
            slice & s = slices[i3 * ne2 + i2];
            s.a = static_cast<const char *>(a->data) + (i2 / r2) * a->nb[2] + (i3 / r3) * a->nb[3];
            s.a_k = a->nb[1];
            s.b = static_cast<const char *>(b->data) + i2 * b->nb[2] + i3 * b->nb[3];
            s.b_col = b->nb[0];
            s.b_k = b->nb[1];
            s.dst = reinterpret_cast<float *>(static_cast<char *>(dst->data) + i2 * dst->nb[2] + i3 * dst->nb[3]);
            s.ld = dst->nb[1] / static_cast<int64_t>(sizeof(float));
            s.K = K;
        }
    }
    const int64_t total = n_slices * cells0 * cells1;
    const int64_t per = (total + nth - 1) / nth;
    const int64_t first = std::min(total, per * ith), last = std::min(total, first + per);
    run_cells(slices, first, last, cells0, cells1, ne0, ne1, wide);
}

int use_cpu_out_prod(ggml_context * ctx, ggml_cgraph * gf) { return swap_to_custom2(ctx, gf, cpu_out_prod_applies, cpu_out_prod); }

}  // namespace w2s
