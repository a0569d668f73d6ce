// Where weak2strong caches what it builds or measures outside the clone (llama.cpp tools, the CPU backend
// built for this machine, thread calibrations), and the CPU key those entries are tied to.
// Node's own modules only: the install hook imports this before the dependencies are built.
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** W2S_CACHE_DIR, default ~/.cache/weak2strong. */
export function cacheRoot() {
  return process.env.W2S_CACHE_DIR || path.join(os.homedir(), ".cache", "weak2strong");
}

/** This CPU's feature flags (Linux /proc/cpuinfo), sorted; [] where they cannot be read. */
export function cpuFlags({ all = false } = {}) {
  // W2S_CPU_FLAGS_OFF="avx512f avx_vnni": flags the builds treat as absent, so that the CPU backend is built
  // (and cached under another key) as for a lesser CPU: to reproduce an AVX2-only host's kernels on a newer
  // one, or to leave out an instruction set whose ggml path misbehaves here.
  // `all`: the CPU's own flags (the llama.cpp tools are built -march=native, whatever this says).
  const off = new Set(all ? [] : (process.env.W2S_CPU_FLAGS_OFF ?? "").split(/[\s,]+/).filter(Boolean));
  try {
    const flags = fs.readFileSync("/proc/cpuinfo", "utf8").match(/^(?:flags|Features)\s*:(.*)$/m)?.[1] ?? "";
    return flags.trim().split(/\s+/).filter((f) => f && !off.has(f)).sort();
  } catch {
    return [];
  }
}

/** 12 hex digits of this CPU's feature set: a build tuned for another CPU could crash here. */
export function cpuKey({ all = false } = {}) {
  const flags = cpuFlags({ all });
  return flags.length ? crypto.createHash("sha256").update(flags.join(" ")).digest("hex").slice(0, 12) : "unknown";
}

const here = path.dirname(fileURLToPath(import.meta.url));
/** The package root: scripts/ in a clone, dist/scripts/ for the compiled copies; the first folder up with package.json. */
export function packageRoot() {
  let dir = here;
  while (!fs.existsSync(path.join(dir, "package.json"))) {
    const up = path.dirname(dir);
    if (up === dir) return path.resolve(here, "..");
    dir = up;
  }
  return dir;
}
