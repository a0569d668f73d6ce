#!/usr/bin/env node
// A ggml CPU backend (libggml-cpu.so) compiled on this machine from the llama.cpp source we link, loaded by
// the addon instead of node-llama-cpp's prebuilt CPU variants (native/core/backend.cpp).
//
// Why: the prebuilt variants are slower here for the same instruction sets. Measured 2026-12-03 on a 2-vCPU
// AMD EPYC with AVX-512 (prebuilt `zen4` variant against this build with the same -m flags, GCC 12), one
// thread: llama-batched-bench's flash-attention text generation 551, 510 against 880, 883 tokens/s; our
// sampler on the 16 × 4 × 64 shape 597 / 898 tokens/s with flash attention.
//
// It is built for the instruction sets this CPU reports (GGML_NATIVE cannot be combined with a dynamically
// loaded backend, so each is passed as its GGML_<ISA> option, as ggml's own variants are), linked against the
// prebuilt libggml-base.so's ABI (same llama.cpp commit; unversioned sonames, as node-llama-cpp builds them, so
// that it binds to the libggml-base.so already loaded), with OpenMP off (as the prebuilt: ggml's own thread
// pool, which the thread settings drive). It is cached outside the clone, keyed by that libggml-base.so and
// by the CPU: a new node-llama-cpp or another CPU means another build, never a stale or foreign one.
//
//   node scripts/cpu-backend.mjs            build when missing (about a minute on 2 cores), print the path
//   node scripts/cpu-backend.mjs --path     print the path only when built (exit 1 otherwise)
//   node scripts/cpu-backend.mjs --if-possible   build, but exit 0 with a note when it cannot (the install hook)
//
// Environment: W2S_CPU_BACKEND=prebuilt makes the addon ignore it; W2S_CACHE_DIR moves the cache;
// W2S_BUILD_JOBS (default: all cores).
import { execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { cacheRoot, cpuFlags, cpuKey, packageRoot } from "./cache-paths.mjs";
import { findPrebuiltLibDir, findSourceBundle } from "./llama-paths.mjs";

const BASE_LIB = "libggml-base.so";

/**
 * Our own kernels compiled into the backend (native/ggml-cpu/): each source file is copied into
 * ggml/src/ggml-cpu/ under `as`, and ops-hook.patch makes ggml call them. Their hash is part of the cache key,
 * so a changed kernel is a new build, never a stale one.
 */
export const KERNELS = [
  { name: "flash_attn_decode", file: "flash_attn_decode.inc", as: "w2s_flash_attn_decode.inc", runs: () => true },
  // Picked by ggml's repack for Q8_0 only where the build has AVX2 but neither VNNI nor AVX-512 (q8_0-repack.patch):
  // elsewhere tinyBLAS's VNNI path or AMX is the faster one.
  { name: "q8_0_gemm", file: "q8_0_gemm.inc", as: "w2s_q8_0_gemm.inc", runs: (isa) => isa.AVX2 && isa.F16C && isa.FMA && !isa.AVX512 && !isa.AVX_VNNI },
];

/** The kernels that run in a build with these GGML_<ISA> options (the stamp's `kernels`). */
export const activeKernels = (isa) => KERNELS.filter((k) => k.runs(isa)).map((k) => k.name);

/** How `w2s info`, `w2s cpu-backend` and the bench name a build's kernels: "with weak2strong's a, b kernels" ('' for none). */
export const kernelsPhrase = (names = []) => (names.length ? `with weak2strong's ${names.join(", ")} kernel${names.length > 1 ? "s" : ""}` : "");
const KERNEL_DIR = path.join(packageRoot(), "native", "ggml-cpu");
/**
 * Patches applied to the private source copy, in order: ops-hook.patch makes ggml call our kernels;
 * amx-tile-config.patch fixes ggml's AMX tile setup, which GCC 12 compiles into a SIGILL on the first Q8_0
 * matmul of every AMX CPU (Sapphire Rapids and later; seen 2026-12-04, see the patch); q8_0-repack.patch
 * lets AVX2 CPUs without VNNI repack Q8_0 weights for q8_0_gemm.inc.
 */
export const PATCHES = ["ops-hook.patch", "amx-tile-config.patch", "q8_0-repack.patch"];

/** sha256 over the kernel sources and the patches (hex). */
export function kernelSha256() {
  const h = crypto.createHash("sha256");
  for (const f of [...KERNELS.map((k) => k.file), ...PATCHES]) h.update(fs.readFileSync(path.join(KERNEL_DIR, f)));
  return h.digest("hex");
}

/**
 * The GGML_<ISA> cmake options for a set of x86 /proc/cpuinfo flags: each ON only when the CPU has every
 * instruction set ggml compiles it with (ggml-cpu/CMakeLists.txt: GGML_AVX512 is -mavx512f/cd/vl/dq/bw).
 * undefined off x86-64 Linux (not built there yet).
 */
export function ggmlIsaOptions(flags = cpuFlags(), platform = process.platform, arch = process.arch) {
  if (platform !== "linux" || arch !== "x64" || flags.length === 0) return undefined;
  const has = (...names) => names.every((n) => flags.includes(n));
  const isa = {
    SSE42: has("sse4_2"),
    AVX: has("avx"),
    F16C: has("f16c"),
    FMA: has("fma"),
    BMI2: has("bmi2"),
    AVX2: has("avx2"),
    AVX_VNNI: has("avx_vnni"),
    AVX512: has("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"),
    AVX512_VBMI: has("avx512vbmi"),
    AVX512_VNNI: has("avx512_vnni"),
    AVX512_BF16: has("avx512_bf16"),
    AMX_TILE: has("amx_tile"),
    AMX_INT8: has("amx_int8"),
    AMX_BF16: has("amx_bf16"),
  };
  // The AVX-512 extensions are compiled only on top of the base set, and ggml's AMX code needs AVX-512 VNNI.
  for (const k of ["AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16"]) isa[k] &&= isa.AVX512;
  for (const k of ["AMX_TILE", "AMX_INT8", "AMX_BF16"]) isa[k] &&= isa.AVX512_VNNI;
  return isa;
}

function sha256File(file) {
  return crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex");
}

/**
 * Where the build for the prebuilt libraries in `libDir` and this CPU lives: { dir, lib, stamp, baseSha256 },
 * or undefined when libDir has no libggml-base.so (a from-source addon links its CPU backend in).
 * @param {string} libDir
 */
export function cpuBackendPaths(libDir) {
  const base = path.join(libDir, BASE_LIB);
  if (!fs.existsSync(base)) return undefined;
  const baseSha256 = sha256File(base);
  const kernelSha = kernelSha256();
  const dir = path.join(cacheRoot(), `ggml-cpu-${baseSha256.slice(0, 12)}-${cpuKey()}-k${kernelSha.slice(0, 8)}`);
  return { dir, lib: path.join(dir, "libggml-cpu.so"), stamp: path.join(dir, "build.json"), baseSha256, kernelSha256: kernelSha };
}

/**
 * The built backend for `libDir`'s libraries if complete and made for them (the stamp, written last, names
 * the same libggml-base.so), else { lib: undefined, why }.
 * @param {string} libDir
 * @returns {{ lib: string, stamp: { seconds: number, builtAt: string, isa: string[], commit: string, kernels?: string[] }, why?: undefined } | { lib: undefined, why: string, stamp?: undefined }}
 */
export function cachedCpuBackend(libDir) {
  const p = cpuBackendPaths(libDir);
  if (!p) return { lib: undefined, why: `${libDir} has no ${BASE_LIB}` };
  if (!fs.existsSync(p.stamp) || !fs.existsSync(p.lib)) return { lib: undefined, why: `none built yet for this CPU and these libraries (\`w2s cpu-backend --build\` builds it into ${p.dir})` };
  try {
    const stamp = JSON.parse(fs.readFileSync(p.stamp, "utf8"));
    if (stamp.baseSha256 !== p.baseSha256) return { lib: undefined, why: `${p.stamp} was made for another ${BASE_LIB}` };
    if (stamp.kernelSha256 !== p.kernelSha256) return { lib: undefined, why: `${p.stamp} was built from other kernel sources than native/ggml-cpu/ holds now` };
    if (stamp.libSha256 !== sha256File(p.lib)) return { lib: undefined, why: `${p.lib} is not the file its build wrote (truncated or replaced)` };
    return { lib: p.lib, stamp };
  } catch (err) {
    return { lib: undefined, why: `${p.stamp} is unreadable (${err.message})` };
  }
}

/**
 * Builds the backend for `libDir` (default: the prebuilt CPU libraries) when missing; resolves to its path.
 * @param {{ libDir?: string, log?: (line: string) => void, jobs?: number }} [options]
 * @returns {Promise<string>}
 */
export async function ensureCpuBackend({ libDir, log = (l) => void process.stderr.write(`${l}\n`), jobs = Number(process.env.W2S_BUILD_JOBS || os.availableParallelism()) } = {}) {
  const { llamaSource, run, withBuildLock } = await import("./llama-server.mjs");
  const root = packageRoot();
  libDir ??= findPrebuiltLibDir(root);
  if (!libDir) throw new Error("node-llama-cpp's prebuilt libraries were not found: run npm install first");
  const isa = ggmlIsaOptions();
  if (!isa) throw new Error(`a CPU backend is built here only on x86-64 Linux (this is ${process.platform}-${process.arch}); the prebuilt variants are used`);
  const ready = () => cachedCpuBackend(libDir).lib;
  const cached = ready();
  if (cached) return cached;
  const p = cpuBackendPaths(libDir);
  return withBuildLock(p.dir, ready, async () => {
    const started = Date.now();
    let src = llamaSource();
    // The source must be the commit node-llama-cpp's libraries were built from (its bundle): deps/llama.cpp
    // may lag behind after an upgrade (the install hook re-clones it only when it builds the addon).
    const bundle = findSourceBundle(root);
    if (src.dir && bundle) {
      const head = execFileSync("git", ["bundle", "list-heads", bundle], { encoding: "utf8" }).trim().split(" ")[0];
      if (head && head !== src.commit) src = { dir: undefined, commit: head, clone: bundle };
    }
    // A private copy of the source (a local clone: hard links, about 2 s), since our kernels are patched in.
    const srcDir = path.join(p.dir, "src");
    const build = path.join(p.dir, "build");
    const cleanUp = () => { for (const d of [build, srcDir]) fs.rmSync(d, { recursive: true, force: true }); };
    cleanUp();
    const on = Object.entries(isa).filter(([, v]) => v).map(([k]) => k);
    log(`weak2strong: building a ggml CPU backend for this CPU (${on.join(" ") || "baseline x86-64"}) from llama.cpp ${src.commit.slice(0, 12)} with our kernels (${activeKernels(isa).join(", ")}) into ${p.dir} (-j${jobs}; about a minute on 2 cores, once)`);
    let step = "copying the llama.cpp source";
    try {
      await run("git", ["-c", "advice.detachedHead=false", "clone", "--quiet", src.dir ?? src.clone, srcDir], log);
      await run("git", ["-c", "advice.detachedHead=false", "-C", srcDir, "checkout", "--quiet", src.commit], log);
      for (const k of KERNELS) fs.copyFileSync(path.join(KERNEL_DIR, k.file), path.join(srcDir, "ggml", "src", "ggml-cpu", k.as));
      // A patch that no longer applies (the pin moved) fails the build: a backend without its kernels is not built silently.
      for (const patch of PATCHES) {
        step = `applying native/ggml-cpu/${patch} to llama.cpp ${src.commit.slice(0, 12)}`;
        await run("git", ["-C", srcDir, "apply", "--whitespace=nowarn", path.join(KERNEL_DIR, patch)], log);
      }
    } catch (err) {
      cleanUp();
      throw new Error(`${step} failed: ${err.message.split("\n")[0]}`);
    }
    const args = ["-S", srcDir, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=ON", "-DGGML_BACKEND_DL=ON",
      "-DGGML_NATIVE=OFF", "-DGGML_CPU_ALL_VARIANTS=OFF", "-DCMAKE_PLATFORM_NO_VERSIONED_SONAME=ON", "-DCMAKE_SKIP_BUILD_RPATH=ON", "-DGGML_OPENMP=OFF", "-DGGML_CCACHE=OFF", "-DLLAMA_BUILD_TESTS=OFF",
      "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_TOOLS=OFF", "-DLLAMA_BUILD_SERVER=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF",
      ...Object.entries(isa).map(([k, v]) => `-DGGML_${k}=${v ? "ON" : "OFF"}`)];
    try {
      await run("nice", ["-n", "10", "cmake", ...args], log);
      await run("nice", ["-n", "10", "cmake", "--build", build, "--target", "ggml-cpu", "-j", String(jobs)], log);
    } catch (err) {
      cleanUp(); // no stamp was written: nothing here is trusted, and nothing need stay
      throw err;
    }
    const built = [path.join(build, "bin", "libggml-cpu.so"), path.join(build, "ggml", "src", "libggml-cpu.so")].find((f) => fs.existsSync(f));
    if (!built) throw new Error(`the build finished but wrote no libggml-cpu.so under ${build}`);
    fs.copyFileSync(built, `${p.lib}.tmp`);
    fs.renameSync(`${p.lib}.tmp`, p.lib);
    const seconds = (Date.now() - started) / 1000;
    const stamp = { baseSha256: p.baseSha256, libSha256: sha256File(p.lib), commit: src.commit, isa: on, cpu: cpuKey(),
      kernels: activeKernels(isa), kernelSha256: p.kernelSha256, seconds, builtAt: new Date().toISOString() };
    fs.writeFileSync(`${p.stamp}.tmp`, JSON.stringify(stamp, null, 2) + "\n");
    fs.renameSync(`${p.stamp}.tmp`, p.stamp);
    cleanUp();
    log(`weak2strong: CPU backend built in ${seconds.toFixed(0)} s -> ${p.lib}`);
    return p.lib;
  });
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = packageRoot();
  if (process.argv.includes("--path")) {
    const libDir = findPrebuiltLibDir(root);
    const c = libDir ? cachedCpuBackend(libDir) : { why: "node-llama-cpp's prebuilt libraries were not found" };
    if (!c.lib) {
      process.stderr.write(`${c.why}\n`);
      process.exit(1);
    }
    process.stdout.write(`${c.lib}\n`);
  } else {
    const soft = process.argv.includes("--if-possible");
    ensureCpuBackend().then((lib) => process.stdout.write(`${lib}\n`), (err) => {
      const first = err.message.split("\n")[0];
      if (soft) {
        process.stderr.write(`weak2strong: no CPU backend built for this machine (${first}); the prebuilt variants are used (slower flash attention)\n`);
        process.exit(0);
      }
      process.stderr.write(`weak2strong: the CPU backend build failed: ${err.message}\n`);
      process.exit(1);
    });
  }
}
