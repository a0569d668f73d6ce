// Finds the llama.cpp pieces that the pinned node-llama-cpp ships (source bundle, prebuilt libraries),
// wherever npm put them (nested or hoisted). Shared by the build scripts and the runtime loader
// (lib/native.ts); it only looks, it never builds or loads.
import fs from "node:fs";
import path from "node:path";

/** Library file names of the prebuilt CPU build of llama.cpp tag v0.5.0 (see native-notes.md). */
export const PREBUILT_LIBS = ["libllama.v0.5.0.so", "libggml.v0.5.0.so", "libggml-base.so"];

/** The prebuilt package for this platform, e.g. `@node-llama-cpp/linux-x64`. */
export function prebuiltPackageName(platform = process.platform, arch = process.arch) {
  return `@node-llama-cpp/${platform}-${arch}`;
}

/**
 * The GPU flavors node-llama-cpp ships prebuilt for this platform, as addon variants: the package, its bins
 * folder, and its library names (the CPU names with the flavor inserted: libllama.cuda.v0.5.0.so; libggml-base.so
 * is shared). `runtime`: a second build of the GPU plugin (linux-x64-cuda-ext's fallback/libggml-cuda.so, for
 * CUDA 12 systems; the main one needs CUDA 13). Metal (macOS arm64) is in the CPU package itself: no variant.
 */
export const GPU_VARIANTS = ["cuda", "vulkan"];
export function variantInfo(variant, platform = process.platform, arch = process.arch) {
  const flavor = `${platform}-${arch}-${variant}`;
  return {
    variant,
    pkg: `@node-llama-cpp/${flavor}`,
    bins: flavor,
    libs: PREBUILT_LIBS.map((l) => l.replace(/^lib(llama|ggml)\.v/, `lib$1.${variant}.v`)),
    runtime: variant === "cuda" ? { pkg: `@node-llama-cpp/${flavor}-ext`, bins: `${flavor}/fallback` } : undefined,
  };
}

/** The bins folder of `pkg` (looked up from node-llama-cpp's folder first, then from `from`) holding every file of `libs`. */
function findBins(pkgName, bins, libs, from, tried) {
  const starts = [];
  const nlc = findNodeLlamaCppDir(from, []);
  if (nlc) starts.push(nlc);
  starts.push(from);
  for (const start of starts) {
    const pkg = findPackageDir(pkgName, start, tried);
    if (!pkg) continue;
    const dir = path.join(pkg, "bins", bins);
    if (libs.every((lib) => fs.existsSync(path.join(dir, lib)))) return dir;
    tried.push(`${dir} (missing one of ${libs.join(", ")})`);
  }
  return undefined;
}

/** The library folder of a GPU variant's prebuilt flavor, or undefined when npm did not install it. */
export function findVariantLibDir(variant, from, tried = []) {
  const v = variantInfo(variant);
  return findBins(v.pkg, v.bins, v.libs, from, tried);
}

/** The folder of a variant's fallback plugin build (CUDA: cuda-ext's fallback/), or undefined. */
export function findVariantRuntimeDir(variant, from, tried = []) {
  const r = variantInfo(variant).runtime;
  if (!r) return undefined;
  const dir = findBins(r.pkg, r.bins, [], from, tried);
  return dir && fs.existsSync(dir) ? dir : undefined;
}

/** Run-time search path entries of a variant's addon (relative to it, as prebuiltRpath). */
export function variantRpath(variant) {
  const v = variantInfo(variant);
  return rpathFor(`${v.pkg}/bins/${v.bins}`);
}

/**
 * Node's package lookup: `node_modules/<name>` in `from` and every parent folder.
 * Returns the package folder or undefined; `tried` collects every folder looked at.
 */
export function findPackageDir(name, from, tried = []) {
  let dir = path.resolve(from);
  for (;;) {
    const candidate = path.join(dir, "node_modules", name);
    tried.push(candidate);
    if (fs.existsSync(path.join(candidate, "package.json"))) return fs.realpathSync(candidate);
    const parent = path.dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

/** The folder of the node-llama-cpp package as seen from `from` (our package root). */
export function findNodeLlamaCppDir(from, tried = []) {
  return findPackageDir("node-llama-cpp", from, tried);
}

/**
 * The folder holding the prebuilt llama.cpp shared libraries (`bins/<platform>-<arch>` inside the
 * platform package), looked up from node-llama-cpp's folder first (where npm nests it), then from `from`.
 */
export function findPrebuiltLibDir(from, tried = []) {
  return findBins(prebuiltPackageName(), `${process.platform}-${process.arch}`, PREBUILT_LIBS, from, tried);
}

/** The llama.cpp git bundle shipped by node-llama-cpp. */
export function findSourceBundle(from, tried = []) {
  const nlc = findNodeLlamaCppDir(from, tried);
  if (!nlc) return undefined;
  const bundle = path.join(nlc, "llama", "gitRelease.bundle");
  tried.push(bundle);
  return fs.existsSync(bundle) ? bundle : undefined;
}

/**
 * Run-time search path entries of the addon, relative to the addon file (`$ORIGIN`), which sits two
 * folders below the package root (`build/Release/` or `prebuilds/<platform>-<arch>/`). They cover the
 * prebuilt package nested in our own node_modules, nested under node-llama-cpp, and hoisted beside us.
 */
export function prebuiltRpath() {
  return rpathFor(`${prebuiltPackageName()}/bins/${process.platform}-${process.arch}`);
}

/** The four places npm may put a package's `bins` folder, relative to an addon two folders below our root. */
function rpathFor(bins) {
  return [
    `$ORIGIN/../../node_modules/${bins}`,
    `$ORIGIN/../../node_modules/node-llama-cpp/node_modules/${bins}`,
    `$ORIGIN/../../../${bins}`,
    `$ORIGIN/../../../node-llama-cpp/node_modules/${bins}`,
  ];
}
