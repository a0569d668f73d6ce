// Benchmark, not a test: Q8_0 MUL_MAT with the weights in the CPU_REPACK buffer (on AVX2 without VNNI or
// AVX-512: native/ggml-cpu/q8_0_gemm.inc) against the plain buffer (llamafile's tinyBLAS, or ggml's vec_dot
// at one column), both in this process, at 1 and 2 threads, best of 5 timed batches each; prints GOP/s and the
// ratio. Shapes: the bench model's FFN and attention projections (K 256 / 768), its 32k-vocabulary output,
// a 7B-size square, at 64 (the sampler's decode batch), 8 and 1 columns.
//   w2s_bench_repack <folder with the ggml backend plugins>   (W2S_CPU_BACKEND_LIB: the build to measure)
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <string>
#include <vector>
#include "ggml.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "backend.h"
using namespace w2s;
static uint64_t gx = 1;
static float u() { gx = gx * 6364136223846793005ull + 1442695040888963407ull; return (float)((double)(gx >> 11) / 9007199254740992.0 * 2.0 - 1.0); }
int main(int argc, char ** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: w2s_bench_repack <folder with the ggml backend plugins>\n");
        return 2;
    }
    std::string err, src;
    const char * own = std::getenv("W2S_CPU_BACKEND_LIB");
    if (!backend_init(argv[1], err, {}, nullptr, own ? own : "", &src)) { std::fprintf(stderr, "%s\n", err.c_str()); return 1; }
    ggml_backend_t cpu = ggml_backend_init_by_type(GGML_BACKEND_DEVICE_TYPE_CPU, nullptr);
    ggml_backend_dev_t dev = ggml_backend_get_device(cpu);
    auto reg = ggml_backend_dev_backend_reg(dev);
    auto set_threads = (void (*)(ggml_backend_t, int)) ggml_backend_reg_get_proc_address(reg, "ggml_backend_set_n_threads");
    auto get_extra = (ggml_backend_buffer_type_t * (*)(ggml_backend_dev_t)) ggml_backend_reg_get_proc_address(reg, "ggml_backend_dev_get_extra_bufts");
    ggml_backend_buffer_type_t rep = nullptr;
    for (auto * b = get_extra ? get_extra(dev) : nullptr; b && *b; ++b) if (std::string(ggml_backend_buft_name(*b)) == "CPU_REPACK") rep = *b;
    std::printf("CPU backend: %s%s%s\n", src.c_str(), own ? " " : "", own ? own : "");
    if (!rep) {
        std::printf("this CPU backend has no CPU_REPACK buffer type\n");
        return 1;
    }
    struct sh { int64_t K, N, M; };
    for (sh s : {sh{256, 768, 64}, sh{768, 256, 64}, sh{256, 32000, 64}, sh{4096, 4096, 64}, sh{256, 768, 8}, sh{256, 768, 1}}) {
        std::vector<float> wf(s.K * s.N), x(s.K * s.M);
        for (auto & e : wf) e = u();
        for (auto & e : x) e = u();
        std::vector<uint8_t> wq(ggml_row_size(GGML_TYPE_Q8_0, s.K) * s.N);
        ggml_quantize_chunk(GGML_TYPE_Q8_0, wf.data(), wq.data(), 0, s.N, s.K, nullptr);
        for (int threads : {1, 2}) {
            set_threads(cpu, threads);
            double t[2];
            for (int which = 0; which < 2; ++which) {
                ggml_backend_buffer_type_t bt = which ? rep : ggml_backend_get_default_buffer_type(cpu);
                ggml_context * cw = ggml_init({ggml_tensor_overhead(), nullptr, true});
                ggml_context * c = ggml_init({8 * ggml_tensor_overhead() + ggml_graph_overhead(), nullptr, true});
                ggml_tensor * w = ggml_new_tensor_2d(cw, GGML_TYPE_Q8_0, s.K, s.N);
                ggml_tensor * xt = ggml_new_tensor_2d(c, GGML_TYPE_F32, s.K, s.M);
                ggml_tensor * y = ggml_mul_mat(c, w, xt);
                ggml_backend_buffer_t wb = ggml_backend_alloc_ctx_tensors_from_buft(cw, bt);
                ggml_backend_buffer_set_usage(wb, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
                ggml_backend_buffer_t xb = ggml_backend_alloc_ctx_tensors(c, cpu);
                if (which && !ggml_backend_dev_supports_op(dev, y)) {
                    std::printf("CPU_REPACK declines Q8_0 here (our kernel runs on AVX2 without VNNI or AVX-512 only)\n");
                    return 1;
                }
                ggml_backend_tensor_set(w, wq.data(), 0, wq.size());
                ggml_backend_tensor_set(xt, x.data(), 0, x.size() * 4);
                ggml_cgraph * g = ggml_new_graph(c);
                ggml_build_forward_expand(g, y);
                ggml_backend_graph_compute(cpu, g);
                double best = 1e9;
                const int reps = std::max<int64_t>(3, 2000000000LL / (s.K * s.N * s.M * 2) / 4);
                for (int r = 0; r < 5; ++r) {
                    auto t0 = std::chrono::steady_clock::now();
                    for (int i = 0; i < reps; ++i) ggml_backend_graph_compute(cpu, g);
                    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps);
                }
                t[which] = best;
                ggml_backend_buffer_free(xb); ggml_backend_buffer_free(wb); ggml_free(c); ggml_free(cw);
            }
            const double gop = 2.0 * s.K * s.N * s.M / 1e9;
            std::printf("K %5lld N %5lld M %3lld threads %d: plain (tinyBLAS/vec_dot) %.1f GOP/s, repacked (ours) %.1f GOP/s: %.2fx\n",
                        (long long) s.K, (long long) s.N, (long long) s.M, threads, gop / t[0], gop / t[1], t[0] / t[1]);
        }
    }
}
