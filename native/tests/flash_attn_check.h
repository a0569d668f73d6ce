// FLASH_ATTN_EXT on a CPU backend against a float64 reference (flash_attn_check.cpp).
#pragma once

#include <string>
#include <vector>

#include "ggml-backend.h"

struct flash_attn_result {
    std::string what;
    double max_diff = 0.0;  // max |reference - backend| over every output element
    double max_ref = 0.0;   // max |reference|
};

std::vector<flash_attn_result> check_flash_attention(ggml_backend_t cpu);
