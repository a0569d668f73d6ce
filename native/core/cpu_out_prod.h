// A register-tiled F32 OUT_PROD for the CPU backend. ggml's autodiff builds every gradient of a MUL_MAT's
// first operand as OUT_PROD, and after frozen_grad.h the training graph still has them for F32 operands:
// the attention backward (dK, dV: [head_dim, T] per head) and the LoRA factors (dA: [n_in, r], dB: [r, n_out]).
// ggml's CPU kernel adds one src0 row into a whole dst row per (i1, k) pair (ggml_vec_mad_f32_unroll),
// reading and writing dst K times; with rows of 8–128 floats that ran ~2.5× slower per multiply-add than
// the GEMMs beside it (19% of an F32 LoRA step in perf). This one keeps a 16 × 4 (or 8 × 8) dst tile in
// registers over the whole k loop. Each dst element is summed by one thread in k order, so results do not
// depend on the thread count (bitwise resume stays exact).
#pragma once

#include "ggml.h"

namespace w2s {

// dst[i0, i1, i2, i3] = Σ_k a[i0, k, i2 / (ne2 / a.ne2), i3 / (ne3 / a.ne3)] · b[i1, k, i2, i3], all F32,
// ggml's OUT_PROD exactly (src0 rows contiguous, dst contiguous; b may be any strided view, e.g. transposed).
// The ggml_custom2_op_t signature: thread ith of nth computes its share of the tiles.
void cpu_out_prod(ggml_tensor * dst, const ggml_tensor * a, const ggml_tensor * b, int ith, int nth, void * userdata);

// Whether `node` is an OUT_PROD the kernel above computes (all F32, contiguous src0 rows and dst).
bool cpu_out_prod_applies(const ggml_tensor * node);

// Turns every applicable OUT_PROD node of `gf` into the custom op above, in place (same shape, sources and
// result). CPU backend only: GPU backends have no custom ops, and keep ggml's OUT_PROD. Returns the count.
int use_cpu_out_prod(ggml_context * ctx, ggml_cgraph * gf);

}  // namespace w2s
