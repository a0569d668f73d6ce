// Process-wide llama.cpp/ggml setup and per-thread capture of llama.cpp's log errors.
#include "backend.h"

#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "ggml-backend.h"
#include "llama.h"

namespace w2s {
namespace {

thread_local std::string t_log_errors;
bool g_verbose = false;

// llama.cpp logs from the thread doing the work, so a thread_local buffer ties messages to the call that
// caused them, even with several workers (worker_threads, two addon instances) running at once.
void log_callback(ggml_log_level level, const char * text, void *) {
    if (g_verbose) std::fputs(text, stderr);
    if (level == GGML_LOG_LEVEL_ERROR || level == GGML_LOG_LEVEL_WARN) {
        if (t_log_errors.size() < 4096) t_log_errors += text;
    }
}

}  // namespace

bool backend_init(const std::string & lib_dir, std::string & err) {
    static std::once_flag once;
    static std::string init_err;
    std::call_once(once, [&lib_dir]() {
        const char * v = std::getenv("W2S_LLAMA_LOG");
        g_verbose = v != nullptr && v[0] != '\0' && v[0] != '0';
        llama_log_set(log_callback, nullptr);
        // Loading the plugins twice would register duplicate devices (native-notes.md).
        if (ggml_backend_reg_by_name("CPU") == nullptr && !lib_dir.empty()) {
            ggml_backend_load_all_from_path(lib_dir.c_str());
        }
        if (ggml_backend_reg_by_name("CPU") == nullptr) {
            init_err = "no ggml CPU backend could be loaded from " + lib_dir +
                       " (ggml_backend_load_all_from_path found no libggml-cpu-*.so this CPU supports)";
            return;
        }
        llama_backend_init();
    });
    err = init_err;
    return init_err.empty();
}

std::string backend_devices() {
    std::string out;
    for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
        if (!out.empty()) out += ",";
        out += ggml_backend_dev_name(ggml_backend_dev_get(i));
    }
    return out;
}

std::string take_log_errors() {
    std::string out;
    out.swap(t_log_errors);
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
    return out;
}

void clear_log_errors() { t_log_errors.clear(); }

}  // namespace w2s
