// MUL_MAT through the CPU backend's extra buffer types against float64 and against the plain CPU buffer.
// Why: the model loader puts quantized weights in these buffers by default (`repack`), and their kernels are
// CPU-specific code that no other check reaches. ggml's AMX tile setup compiled by GCC 12 raised SIGILL on the
// first Q8_0 matmul of an AMX CPU (native/ggml-cpu/amx-tile-config.patch); on such a CPU this check runs it.
// Shapes: W [K = 512, N = 96] (whole AMX tiles and 8-row repack groups) and, for Q8_0, [256, 36] (an odd
// number of 4-row tiles); X [K, M] for M = 1 (the vector kernels), 5 (a ragged tile) and 64 (the sampler's
// decode batch).
#include "repack_check.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "ggml-alloc.h"
#include "ggml-backend.h"

namespace {

uint64_t g_x = 77;
float uniform() {  // [-1, 1)
    g_x = g_x * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<float>(static_cast<double>(g_x >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

// Computes W^T X on the CPU backend with W allocated in `wbuft`; false when the buffer type declines the op.
bool run_matmul(ggml_backend_t cpu, ggml_backend_buffer_type_t wbuft, ggml_type type, int64_t K, int64_t N, int64_t M,
                const std::vector<uint8_t> & wq, const std::vector<float> & x, std::vector<float> & out) {
    ggml_context * cw = ggml_init({ggml_tensor_overhead(), nullptr, true});
    ggml_context * c = ggml_init({8 * ggml_tensor_overhead() + ggml_graph_overhead(), nullptr, true});
    ggml_tensor * w = ggml_new_tensor_2d(cw, type, K, N);
    ggml_tensor * xt = ggml_new_tensor_2d(c, GGML_TYPE_F32, K, M);
    ggml_tensor * y = ggml_mul_mat(c, w, xt);  // [N, M]
    ggml_backend_buffer_t wb = ggml_backend_alloc_ctx_tensors_from_buft(cw, wbuft);
    ggml_backend_buffer_t xb = ggml_backend_alloc_ctx_tensors(c, cpu);
    ggml_backend_buffer_set_usage(wb, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
    // As the model loader asks: the device must take this op with W in this buffer, else the data is never
    // set (a repack buffer aborts on a type it has no layout for).
    const bool ok = ggml_backend_dev_supports_op(ggml_backend_get_device(cpu), y) &&
                    (wbuft == ggml_backend_get_default_buffer_type(cpu) || ggml_backend_dev_supports_buft(ggml_backend_get_device(cpu), wbuft));
    if (ok) {
        ggml_backend_tensor_set(w, wq.data(), 0, wq.size());
        ggml_backend_tensor_set(xt, x.data(), 0, x.size() * sizeof(float));
        ggml_cgraph * g = ggml_new_graph(c);
        ggml_build_forward_expand(g, y);
        ggml_backend_graph_compute(cpu, g);
        out.resize(static_cast<size_t>(N * M));
        ggml_backend_tensor_get(y, out.data(), 0, out.size() * sizeof(float));
    }
    ggml_backend_buffer_free(xb);
    ggml_backend_buffer_free(wb);
    ggml_free(c);
    ggml_free(cw);
    return ok;
}

}  // namespace

std::vector<repack_result> check_repacked_matmul(ggml_backend_t cpu, std::vector<std::string> & skipped) {
    std::vector<repack_result> results;
    ggml_backend_dev_t dev = ggml_backend_get_device(cpu);
    ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(dev);
    auto get_extra = reinterpret_cast<ggml_backend_buffer_type_t * (*)(ggml_backend_dev_t)>(
        ggml_backend_reg_get_proc_address(reg, "ggml_backend_dev_get_extra_bufts"));
    if (!get_extra) return results;
    struct shape { ggml_type type; int64_t K, N; };
    // N = 36: an odd number of 4-row weight tiles (q8_0_gemm.inc pairs them), below AMX's 32-row multiple.
    for (const shape sh : {shape{GGML_TYPE_Q8_0, 512, 96}, shape{GGML_TYPE_Q8_0, 256, 36}, shape{GGML_TYPE_Q4_0, 512, 96},
                           shape{GGML_TYPE_Q4_K, 512, 96}, shape{GGML_TYPE_Q6_K, 512, 96}}) {
        const ggml_type type = sh.type;
        const int64_t K = sh.K, N = sh.N;
        // W: uniform values quantized by ggml; the reference uses their dequantized values, so only the
        // kernels' own rounding (X to 8 bits, F32 sums) is measured.
        std::vector<float> wf(static_cast<size_t>(K * N));
        for (auto & e : wf) e = uniform();
        std::vector<uint8_t> wq(ggml_row_size(type, K) * N);
        ggml_quantize_chunk(type, wf.data(), wq.data(), 0, N, K, nullptr);
        std::vector<float> wd(wf.size());
        ggml_get_type_traits(type)->to_float(wq.data(), wd.data(), K * N);
        for (const int64_t M : {1, 5, 64}) {
            std::vector<float> x(static_cast<size_t>(K * M));
            for (auto & e : x) e = uniform();
            std::vector<double> ref(static_cast<size_t>(N * M));
            double max_ref = 0.0;
            for (int64_t m = 0; m < M; ++m) {
                for (int64_t n = 0; n < N; ++n) {
                    double s = 0.0;
                    for (int64_t k = 0; k < K; ++k) s += static_cast<double>(wd[n * K + k]) * x[m * K + k];
                    ref[m * N + n] = s;
                    max_ref = std::max(max_ref, std::fabs(s));
                }
            }
            auto worst = [&](const std::vector<float> & got) {
                double d = 0.0;
                for (size_t i = 0; i < ref.size(); ++i) d = std::max(d, std::fabs(ref[i] - got[i]));
                return d;
            };
            std::vector<float> plain;
            run_matmul(cpu, ggml_backend_get_default_buffer_type(cpu), type, K, N, M, wq, x, plain);
            for (ggml_backend_buffer_type_t * b = get_extra(dev); b && *b; ++b) {
                const std::string what = std::string(ggml_backend_buft_name(*b)) + " " + ggml_type_name(type) + " [" +
                                         std::to_string(K) + " x " + std::to_string(N) + "] by " + std::to_string(M) + " columns";
                std::vector<float> got;
                if (!run_matmul(cpu, *b, type, K, N, M, wq, x, got)) {
                    skipped.push_back(what);
                    continue;
                }
                results.push_back({what, worst(got), worst(plain), max_ref});
            }
        }
    }
    return results;
}
