// Process-wide llama.cpp/ggml setup and per-thread capture of llama.cpp's log errors.
#include "backend.h"

#include <dlfcn.h>

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

bool file_exists(const std::string & path) {
    FILE * f = std::fopen(path.c_str(), "rb");
    if (f) std::fclose(f);
    return f != nullptr;
}

// Registers the CPU backend built on this machine (scripts/cpu-backend.mjs) before any prebuilt variant.
// False (with the reason appended to `log`) when it does not load: a missing file, a dynamic-linker error, an
// ABI mismatch, or a CPU without a feature it was compiled for (its ggml_backend_score is 0).
bool load_own_cpu(const std::string & path, std::string & log) {
    clear_log_errors();
    ggml_backend_reg_t reg = file_exists(path) ? ggml_backend_load(path.c_str()) : nullptr;
    std::string why = take_log_errors();
    if (reg != nullptr && ggml_backend_reg_by_name("CPU") != nullptr) return true;
    if (!file_exists(path)) why = "no such file";
    if (why.empty()) why = "this CPU lacks an instruction set it was built for, or it is not a CPU backend";
    log += path + ": not loaded (" + why + "); using the prebuilt CPU variants\n";
    return false;
}

}  // namespace

bool backend_init(const std::string & lib_dir, std::string & err, const std::vector<std::string> & fallback_dirs, std::string * load_log,
                  const std::string & cpu_backend, std::string * cpu_source) {
    static std::once_flag once;
    static std::string init_err;
    static std::string log;
    static std::string source;
    std::call_once(once, [&lib_dir, &fallback_dirs, &cpu_backend]() {
        const char * v = std::getenv("W2S_LLAMA_LOG");
        g_verbose = v != nullptr && v[0] != '\0' && v[0] != '0';
        llama_log_set(log_callback, nullptr);
        // Loading the plugins twice would register duplicate devices (native-notes.md).
        source = "already-registered";
        if (ggml_backend_reg_by_name("CPU") == nullptr && !lib_dir.empty()) {
            source = "prebuilt";
            if (!cpu_backend.empty() && load_own_cpu(cpu_backend, log)) {
                source = "host";
                // Not ggml_backend_load_all_from_path: it would register lib_dir's prebuilt CPU variant as a
                // second CPU backend. The other plugins it knows, by path.
                clear_log_errors();
                for (const char * name : {"blas", "cuda", "hip", "vulkan", "opencl", "musa", "sycl", "rpc"}) {
                    const std::string path = lib_dir + "/libggml-" + name + ".so";
                    if (file_exists(path)) ggml_backend_load(path.c_str());
                }
                if (const char * extra = std::getenv("GGML_BACKEND_PATH")) ggml_backend_load(extra);
                // Silent like ggml_backend_load_all_from_path: a plugin that did not register is explained once,
                // by the dlopen loop below.
                take_log_errors();
            } else {
                clear_log_errors();
                ggml_backend_load_all_from_path(lib_dir.c_str());
            }
            log += take_log_errors();
            if (!log.empty()) log += "\n";
            // ggml loads the plugins silently. A GPU plugin that did not register: try the fallback folders
            // (node-llama-cpp's CUDA 12 build of libggml-cuda.so for systems without CUDA 13), then open each
            // copy once more to learn why it failed (typically a driver or runtime library: libcuda.so.1,
            // libcudart.so.12, libvulkan.so.1).
            const std::pair<const char *, const char *> gpu_plugins[] = {{"libggml-cuda.so", "CUDA"}, {"libggml-vulkan.so", "Vulkan"}};
            for (const auto & [file, reg] : gpu_plugins) {
                if (!file_exists(lib_dir + "/" + file) || ggml_backend_reg_by_name(reg) != nullptr) continue;
                std::vector<std::string> tried{lib_dir + "/" + file};
                for (const std::string & dir : fallback_dirs) {
                    const std::string path = dir + "/" + file;
                    if (!file_exists(path)) continue;
                    tried.push_back(path);
                    clear_log_errors();
                    ggml_backend_load(path.c_str());
                    take_log_errors();  // its failure is reported below, with the others
                    if (ggml_backend_reg_by_name(reg) != nullptr) break;
                }
                if (ggml_backend_reg_by_name(reg) != nullptr) continue;
                for (const std::string & path : tried) {
                    void * h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
                    const char * e = h ? nullptr : dlerror();
                    if (h) dlclose(h);
                    log += path + ": " + (e ? e : "loaded but registered no backend (no usable device)") + "\n";
                }
            }
        }
        if (ggml_backend_reg_by_name("CPU") == nullptr) {
            init_err = "no ggml CPU backend could be loaded from " + lib_dir +
                       " (ggml_backend_load_all_from_path found no libggml-cpu-*.so this CPU supports)";
            return;
        }
        llama_backend_init();
    });
    err = init_err;
    if (load_log) *load_log = log;
    if (cpu_source) *cpu_source = source;
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

bool pick_gpus(const std::string & want, std::vector<ggml_backend_dev_t> & out, std::string & err) {
    out.clear();
    if (want == "none") return true;
    for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
        ggml_backend_dev_t d = ggml_backend_dev_get(i);
        const auto type = ggml_backend_dev_type(d);
        if (type != GGML_BACKEND_DEVICE_TYPE_GPU && type != GGML_BACKEND_DEVICE_TYPE_IGPU) continue;
        if (!want.empty() && want != ggml_backend_reg_name(ggml_backend_dev_backend_reg(d))) continue;
        out.push_back(d);
    }
    if (!want.empty() && out.empty()) {
        err = "no " + want + " device is available (devices: " + backend_devices() + ")";
        return false;
    }
    return true;
}

std::string take_log_errors() {
    std::string out;
    out.swap(t_log_errors);
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
    return out;
}

void clear_log_errors() { t_log_errors.clear(); }

}  // namespace w2s
