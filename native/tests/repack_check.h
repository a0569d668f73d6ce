// MUL_MAT with the weights in each of the CPU backend's extra buffer types (AMX, CPU_REPACK: the layouts the
// model loader repacks quantized weights into when `repack` is on) against a float64 reference
// (repack_check.cpp).
#pragma once

#include <string>
#include <vector>

#include "ggml-backend.h"

struct repack_result {
    std::string what;       // "<buffer type> <weight type> [K x N] by M columns"
    double max_diff = 0.0;  // max |reference - repacked path|
    double plain_diff = 0.0;  // max |reference - the plain CPU buffer's path| (same inputs)
    double max_ref = 0.0;   // max |reference|
};

// One result per (extra buffer type, weight type, batch width) that the buffer type takes; `skipped` lists
// the pairs it declines (supports_op false), so the caller can print what ran on this CPU.
std::vector<repack_result> check_repacked_matmul(ggml_backend_t cpu, std::vector<std::string> & skipped);
