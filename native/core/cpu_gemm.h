// A packed, cache-blocked MUL_MAT for the CPU backend's training graphs: F32 activations by an F32, F16, BF16
// or quantized (Q4_0, Q5_0, Q8_0, Q2_K–Q6_K) matrix, computed in F32. ggml's CPU F32 × F32 product
// (llamafile's tinyBLAS: a 4 × 3 register tile with no packing or K blocking) ran at 19–25 GFLOPS on one
// core of the 2-vCPU AMD EPYC where OpenBLAS runs the same shapes at 60–72, and it was 76% of an F32 LoRA
// step in perf: the projections, the chunked head (logits: K = n_embd, M = n_vocab; W·p: K = n_vocab), and
// the input gradients through the transposed frozen weights of frozen_grad.h.
//
// The layout is Goto/BLIS's: K in blocks of 256, M in blocks of 128, N in blocks of up to 768, each block of
// both operands packed into panels (A: 16 rows × k, B: 6 columns × k) so that a 16 × 6 dst tile stays in
// twelve 8-float registers over the block's k loop (2 vector loads, 6 broadcasts, 12 fused multiply-adds per
// k). Each dst element is summed by one thread, in the same order whatever the thread count, so results do
// not depend on it (bitwise resume stays exact).
#pragma once

#include "ggml.h"

namespace w2s {

// dst[m, n, i2, i3] = Σ_k a[k, m, i2 / (ne2 / a.ne2), i3 / (ne3 / a.ne3)] · b[k, n, i2, i3]: ggml's MUL_MAT
// (rows of a and b contiguous in k; any row and slice strides; b and dst F32, dst contiguous). A quantized or
// F16 a is dequantized as it is packed, and b rounded as ggml rounds it for a's type (cpu_gemm.cpp).
// The ggml_custom2_op_t signature: thread ith of nth computes its share of the columns.
void cpu_gemm(ggml_tensor * dst, const ggml_tensor * a, const ggml_tensor * b, int ith, int nth, void * userdata);

// Whether `node` is a MUL_MAT the kernel above computes: a of a type above, b and dst F32, k-contiguous rows,
// and at least 16 rows, 6 columns and 16 k (smaller products, e.g. a rank-8 LoRA factor, stay with ggml).
bool cpu_gemm_applies(const ggml_tensor * node);

// Turns every applicable MUL_MAT of `gf` into the custom op above, in place (same shape, sources and result).
// CPU backend only: GPU backends keep ggml's MUL_MAT. Returns the count.
int use_cpu_gemm(ggml_context * ctx, ggml_cgraph * gf);

}  // namespace w2s
