// Process-wide llama.cpp/ggml setup (backend plugins, logging) and the capture of llama.cpp's error
// messages, so failures reach users as text instead of stderr noise. No N-API here.
#pragma once
#include <string>
#include <vector>

#include "ggml-backend.h"

namespace w2s {

// Loads the ggml backend plugins from `lib_dir` (once per process; skipped when another addon such as
// node-llama-cpp already registered a CPU backend) and initialises llama.cpp. Thread-safe.
// Returns false with `err` set when no CPU backend could be loaded.
// `fallback_dirs`: folders with other builds of a GPU plugin, tried when lib_dir's did not register (node-llama-cpp
// ships libggml-cuda.so for CUDA 13 and, in linux-x64-cuda-ext/fallback, for CUDA 12).
// `load_log`: why each GPU plugin that is present did not register (the dynamic linker's message).
// `cpu_backend`: a libggml-cpu.so built for this machine (scripts/cpu-backend.mjs), registered instead of
// lib_dir's prebuilt CPU variants when it loads. `cpu_source`: "host" (it did), "prebuilt" (lib_dir's best
// variant), or "already-registered" (linked in, or another addon such as node-llama-cpp loaded one first).
bool backend_init(const std::string & lib_dir, std::string & err, const std::vector<std::string> & fallback_dirs = {},
                  std::string * load_log = nullptr, const std::string & cpu_backend = "", std::string * cpu_source = nullptr);

// Names of the registered ggml devices, e.g. "CPU" (for diagnostics).
std::string backend_devices();

// The GPU device(s) a job should use. `want`: "" = every GPU device (llama.cpp's default; the first one for
// training), "none" = the CPU only, or a backend registry name ("CUDA", "Vulkan", "Metal") = that backend's
// devices. An explicit name with no such device is false + `err` (listing the devices that exist).
bool pick_gpus(const std::string & want, std::vector<ggml_backend_dev_t> & out, std::string & err);

// Error and warning lines llama.cpp logged on the calling thread since the last call (then cleared).
// llama.cpp reports most failures (bad GGUF, adapter mismatch) only through its log.
std::string take_log_errors();

// Forget earlier captured messages on this thread (call before a llama.cpp call whose errors you want).
void clear_log_errors();

}  // namespace w2s
