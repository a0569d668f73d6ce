#!/usr/bin/env node
// Builds llama.cpp tools (CPU) from the llama.cpp source we link (deps/llama.cpp, or a clone of
// node-llama-cpp's bundle) and caches each OUTSIDE the clone, keyed by the tool, the llama.cpp commit and the
// CPU, so the test suite, CI and later runs reuse one build: `llama-server` (the remote-generation tests,
// `w2s bench remote`) and `llama-batched-bench` (the peer of `w2s bench sample`).
//
//   node scripts/llama-server.mjs [--tool llama-batched-bench]          build when missing, print the binary's path
//   node scripts/llama-server.mjs [--tool llama-batched-bench] --path   print the path only if cached (exit 1 otherwise)
//
// Environment: W2S_LLAMA_SERVER=/path/to/llama-server (W2S_LLAMA_BATCHED_BENCH for the other) uses that
// binary and never builds; W2S_CACHE_DIR moves the cache (default ~/.cache/weak2strong); W2S_BUILD_JOBS (default 2).
import { execFileSync, spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { cacheRoot, cpuKey, packageRoot } from "./cache-paths.mjs";
import { findSourceBundle } from "./llama-paths.mjs";

export { cacheRoot };

/** The llama.cpp source folder and its commit: deps/llama.cpp when present, else the bundle's head. */
export function llamaSource(root = packageRoot()) {
  const deps = path.join(root, "deps", "llama.cpp");
  if (fs.existsSync(path.join(deps, "CMakeLists.txt"))) {
    const commit = execFileSync("git", ["-C", deps, "rev-parse", "HEAD"], { encoding: "utf8" }).trim();
    return { dir: deps, commit, clone: undefined };
  }
  const tried = [];
  const bundle = findSourceBundle(root, tried);
  if (!bundle) throw new Error(`no llama.cpp source: neither ${deps} nor node-llama-cpp's bundle (looked at ${tried.join(", ")}); run npm install`);
  const head = execFileSync("git", ["bundle", "list-heads", bundle], { encoding: "utf8" }).trim().split("\n")[0].split(" ")[0];
  return { dir: undefined, commit: head, clone: bundle };
}

/**
 * Fixes applied to the tools' private source copy (native/ggml-cpu/): only the AMX tile setup, without which
 * GCC's -march=native build dies with SIGILL on the first Q8_0 matmul of an AMX CPU. Our kernels are left
 * out: the tools are llama.cpp's own engine, the peer our sampler is measured against.
 */
const TOOL_PATCHES = ["amx-tile-config.patch"];
const PATCH_DIR = path.join(packageRoot(), "native", "ggml-cpu");

/** sha256 over TOOL_PATCHES (hex): part of the cache key, so a build without a fix is never reused. */
export function toolPatchSha256() {
  const h = crypto.createHash("sha256");
  for (const f of TOOL_PATCHES) h.update(fs.readFileSync(path.join(PATCH_DIR, f)));
  return h.digest("hex");
}

const TOOL_ENV = { "llama-server": "W2S_LLAMA_SERVER", "llama-batched-bench": "W2S_LLAMA_BATCHED_BENCH" };

export function toolPaths(tool = "llama-server", root = packageRoot()) {
  if (!TOOL_ENV[tool]) throw new Error(`unknown llama.cpp tool ${tool} (known: ${Object.keys(TOOL_ENV).join(", ")})`);
  const src = llamaSource(root);
  const dir = path.join(cacheRoot(), `${tool}-${src.commit.slice(0, 12)}-${cpuKey({ all: true })}-p${toolPatchSha256().slice(0, 8)}`);
  return { tool, src, dir, binary: path.join(dir, "bin", tool), stamp: path.join(dir, "build.json") };
}
export const serverPaths = (root = packageRoot()) => toolPaths("llama-server", root);

/** The cached binary if complete (the stamp is written last), else undefined. */
export function cachedTool(tool = "llama-server", root = packageRoot()) {
  if (process.env[TOOL_ENV[tool]]) return process.env[TOOL_ENV[tool]];
  const p = toolPaths(tool, root);
  return fs.existsSync(p.stamp) && fs.existsSync(p.binary) ? p.binary : undefined;
}
export const cachedServer = (root = packageRoot()) => cachedTool("llama-server", root);

export function run(cmd, args, log) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    let tail = "";
    const keep = (d) => {
      tail = (tail + d.toString()).slice(-8000);
    };
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(" ")} exited with ${code}:\n${tail}`))));
    log?.(`  $ ${cmd} ${args.join(" ")}`);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function pidAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === "EPERM";
  }
}

/**
 * Returns the path of a llama-server binary, building it when the cache has none (a few minutes on 2 cores).
 * Concurrent callers (test processes) wait on one build through a lock folder holding the builder's pid.
 */
export function ensureLlamaServer(o = {}) {
  return ensureLlamaTool("llama-server", o);
}

/** The same for any tool of TOOL_ENV. Resolves to the binary's path; `built` says how long a build took. */
export async function ensureLlamaTool(tool, { log = (l) => process.stderr.write(`${l}\n`), jobs = Number(process.env.W2S_BUILD_JOBS || 2) } = {}) {
  const cachedServer = () => cachedTool(tool);
  const ready = cachedServer();
  if (ready) return ready;
  const p = toolPaths(tool);
  return withBuildLock(p.dir, cachedServer, async () => {
    const started = Date.now();
    log(`${tool}: not cached; building it from llama.cpp ${p.src.commit.slice(0, 12)} into ${p.dir} (CPU, -j${jobs}; a few minutes on 2 cores, once per commit)`);
    // A private copy of the source (a local clone: hard links, seconds), since TOOL_PATCHES are applied to it.
    const srcDir = path.join(p.dir, "src");
    const build = path.join(p.dir, "build");
    const cleanUp = () => { for (const d of [build, srcDir]) fs.rmSync(d, { recursive: true, force: true }); };
    cleanUp();
    try {
      await run("git", ["-c", "advice.detachedHead=false", "clone", "--quiet", p.src.dir ?? p.src.clone, srcDir], log);
      await run("git", ["-c", "advice.detachedHead=false", "-C", srcDir, "checkout", "--quiet", p.src.commit], log);
      for (const patch of TOOL_PATCHES) await run("git", ["-C", srcDir, "apply", "--whitespace=nowarn", path.join(PATCH_DIR, patch)], log);
    } catch (err) {
      cleanUp();
      throw new Error(`preparing the llama.cpp source for ${tool} failed: ${err.message.split("\n")[0]}`);
    }
    // The web UI needs npm or a download: off (the API is all we use). OpenSSL off: loopback HTTP only.
    try {
      await run("nice", ["-n", "10", "cmake", "-S", srcDir, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON", "-DBUILD_SHARED_LIBS=OFF",
        "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_TOOLS=ON", "-DLLAMA_BUILD_SERVER=ON", "-DLLAMA_BUILD_APP=OFF",
        "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF", "-DLLAMA_OPENSSL=OFF", "-DGGML_CCACHE=OFF"], log);
      await run("nice", ["-n", "10", "cmake", "--build", build, "--target", tool, "-j", String(jobs)], log);
    } catch (err) {
      cleanUp(); // no stamp was written: nothing of this build is trusted
      throw err;
    }
    const built = path.join(build, "bin", tool);
    fs.mkdirSync(path.dirname(p.binary), { recursive: true });
    fs.copyFileSync(built, `${p.binary}.tmp`);
    fs.chmodSync(`${p.binary}.tmp`, 0o755);
    fs.renameSync(`${p.binary}.tmp`, p.binary);
    const seconds = (Date.now() - started) / 1000;
    fs.writeFileSync(p.stamp, JSON.stringify({ commit: p.src.commit, cpu: cpuKey({ all: true }), seconds, builtAt: new Date().toISOString() }, null, 2) + "\n");
    // The objects and the source copy are not needed any more (hundreds of MB); a rebuild starts fresh anyway.
    cleanUp();
    log(`${tool}: built in ${seconds.toFixed(0)} s -> ${p.binary}`);
    return p.binary;
  });
}

/**
 * Runs `build` holding a lock folder in `dir` (with the builder's pid), so concurrent processes (test workers,
 * an install beside a test run) build once: a waiter returns `ready()` as soon as it is truthy. A lock whose
 * pid is dead is taken over.
 */
export async function withBuildLock(dir, ready, build) {
  fs.mkdirSync(dir, { recursive: true });
  const lock = path.join(dir, "lock");
  for (;;) {
    try {
      fs.mkdirSync(lock);
      fs.writeFileSync(path.join(lock, "pid"), String(process.pid));
      break;
    } catch (err) {
      if (err.code !== "EEXIST") throw err;
      let pid = 0;
      try {
        pid = Number(fs.readFileSync(path.join(lock, "pid"), "utf8").trim() || 0);
      } catch {
        // the holder has not written its pid yet
      }
      if (pid && !pidAlive(pid)) {
        fs.rmSync(lock, { recursive: true, force: true });
        continue;
      }
      const done = ready();
      if (done) return done;
      await sleep(2000);
    }
  }
  try {
    return ready() || (await build());
  } finally {
    fs.rmSync(lock, { recursive: true, force: true });
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const at = process.argv.indexOf("--tool");
  const tool = at > 0 ? process.argv[at + 1] : "llama-server";
  if (process.argv.includes("--path")) {
    const bin = cachedTool(tool);
    if (!bin) process.exit(1);
    process.stdout.write(`${bin}\n`);
  } else {
    ensureLlamaTool(tool).then((bin) => process.stdout.write(`${bin}\n`), (err) => {
      process.stderr.write(`${tool} build failed: ${err.message}\n`);
      process.exit(1);
    });
  }
}
