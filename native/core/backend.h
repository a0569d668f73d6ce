// Process-wide llama.cpp/ggml setup (backend plugins, logging) and the capture of llama.cpp's error
// messages, so failures reach users as text instead of stderr noise. No N-API here.
#pragma once
#include <string>

namespace w2s {

// Loads the ggml backend plugins from `lib_dir` (once per process; skipped when another addon such as
// node-llama-cpp already registered a CPU backend) and initialises llama.cpp. Thread-safe.
// Returns false with `err` set when no CPU backend could be loaded.
bool backend_init(const std::string & lib_dir, std::string & err);

// Names of the registered ggml devices, e.g. "CPU" (for diagnostics).
std::string backend_devices();

// Error and warning lines llama.cpp logged on the calling thread since the last call (then cleared).
// llama.cpp reports most failures (bad GGUF, adapter mismatch) only through its log.
std::string take_log_errors();

// Forget earlier captured messages on this thread (call before a llama.cpp call whose errors you want).
void clear_log_errors();

}  // namespace w2s
