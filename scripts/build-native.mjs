#!/usr/bin/env node
// Builds the addon (build/Release/weak2strong.node) with cmake-js from CMakeLists.txt.
// Default: headers from the llama.cpp source bundled in node-llama-cpp, linked to its prebuilt CPU libraries.
// `--from-source [--cuda]`: first builds llama.cpp itself from that bundle (patches in native/patches/).
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { findPrebuiltLibDir, findSourceBundle, findPackageDir, findVariantLibDir, GPU_VARIANTS, PREBUILT_LIBS, prebuiltRpath, variantInfo, variantRpath } from "./llama-paths.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const { values: opts } = parseArgs({
  options: {
    "from-source": { type: "boolean", default: false },
    cuda: { type: "boolean", default: false },
    debug: { type: "boolean", default: false },
    tests: { type: "boolean", default: false },
    jobs: { type: "string", default: String(Math.max(1, os.availableParallelism())) },
  },
});
if (opts.cuda && !opts["from-source"]) fail("--cuda needs --from-source: the prebuilt libraries are CPU-only.");
// W2S_BUILD_DIR: build somewhere else than build/ (e.g. two builds side by side); load the result with
// W2S_ADDON_PATH=<dir>/Release/weak2strong.node.
const buildDir = process.env.W2S_BUILD_DIR ? path.resolve(process.env.W2S_BUILD_DIR) : path.join(root, "build");

function fail(message) {
  console.error(`weak2strong build: ${message}`);
  process.exit(1);
}

function run(cmd, args, cwd = root) {
  console.error(`> ${cmd} ${args.join(" ")}`);
  const r = spawnSync(cmd, args, { cwd, stdio: "inherit" });
  if (r.error) fail(`could not run ${cmd}: ${r.error.message}`);
  if (r.status !== 0) fail(`${cmd} exited with ${r.status}`);
}

/** Clone the bundled llama.cpp source into deps/llama.cpp (ignored by git), once per bundle. */
function ensureSource() {
  const tried = [];
  const bundle = findSourceBundle(root, tried);
  if (!bundle) fail(`node-llama-cpp's llama.cpp bundle was not found; looked at:\n  ${tried.join("\n  ")}\nRun npm install first.`);
  const dest = path.join(root, "deps", "llama.cpp");
  const stamp = path.join(root, "deps", "llama.cpp.stamp");
  const id = `${bundle}:${fs.statSync(bundle).size}`;
  if (fs.existsSync(path.join(dest, "include", "llama.h")) && fs.existsSync(stamp) && fs.readFileSync(stamp, "utf8") === id) return dest;
  fs.rmSync(dest, { recursive: true, force: true });
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  run("git", ["-c", "advice.detachedHead=false", "clone", "--quiet", bundle, dest]);
  fs.writeFileSync(stamp, id);
  return dest;
}

/** Build llama.cpp from the bundle into build/llama/lib; returns the library folder and names. */
function buildLlamaFromSource(src) {
  const patches = path.join(root, "native", "patches");
  if (fs.existsSync(patches)) {
    for (const p of fs.readdirSync(patches).filter((f) => f.endsWith(".patch")).sort()) {
      const file = path.join(patches, p);
      const check = spawnSync("git", ["apply", "--check", file], { cwd: src });
      if (check.status === 0) run("git", ["apply", file], src);
      else console.error(`(patch ${p} does not apply cleanly; assuming it is already applied)`);
    }
  }
  const bdir = path.join(buildDir, opts.cuda ? "llama-cuda" : "llama-cpu");
  // Tuned for this machine (GGML_NATIVE), so the backends are linked in (GGML_NATIVE excludes GGML_BACKEND_DL):
  // the CPU and CUDA backends register themselves when libggml loads.
  const args = ["-S", src, "-B", bdir, "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=ON", "-DGGML_BACKEND_DL=OFF",
    "-DGGML_NATIVE=ON", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_TOOLS=OFF",
    "-DLLAMA_BUILD_SERVER=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF", `-DGGML_CUDA=${opts.cuda ? "ON" : "OFF"}`];
  if (spawnSync("ninja", ["--version"]).status === 0) args.push("-G", "Ninja");
  run("cmake", args);
  run("cmake", ["--build", bdir, "--target", "llama", "--parallel", opts.jobs]);
  // Gather every shared library the build produced (llama, ggml, ggml-base, ggml-cpu, ggml-cuda).
  const libDir = path.join(buildDir, "llama", "lib");
  fs.rmSync(libDir, { recursive: true, force: true });
  fs.mkdirSync(libDir, { recursive: true });
  const found = [];
  (function collect(dir) {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) collect(p);
      else if (/^lib(llama|ggml)[\w.-]*\.so(\.\d+)*$/.test(e.name)) found.push(p);
    }
  })(path.join(bdir, "bin"));
  if (fs.existsSync(path.join(bdir, "src"))) (function collect(dir) {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      if (e.isFile() && /^libllama\.so/.test(e.name)) found.push(path.join(dir, e.name));
    }
  })(path.join(bdir, "src"));
  for (const f of found) fs.copyFileSync(f, path.join(libDir, path.basename(f)));
  const link = ["libllama.so", "libggml.so", "libggml-base.so"];
  for (const l of link) if (!fs.existsSync(path.join(libDir, l))) fail(`the llama.cpp build did not produce ${l} (looked in ${bdir})`);
  return { libDir, libs: link, rpath: ["$ORIGIN/../llama/lib"] };
}

const src = ensureSource();
let target;
if (opts["from-source"]) {
  target = buildLlamaFromSource(src);
} else {
  const tried = [];
  const libDir = findPrebuiltLibDir(root, tried);
  if (!libDir) fail(`the prebuilt llama.cpp libraries were not found; looked at:\n  ${tried.join("\n  ")}\n` +
    "Install node-llama-cpp's optional platform package, or build from source: npm run build:native -- --from-source");
  target = { libDir, libs: PREBUILT_LIBS, rpath: prebuiltRpath() };
  // The GPU variants of every flavor npm installed (node-llama-cpp's optional packages; W2S_VARIANTS=none or a
  // list narrows it): the same objects linked to that flavor's libraries, weak2strong-<variant>.node.
  const wanted = process.env.W2S_VARIANTS === undefined ? GPU_VARIANTS : process.env.W2S_VARIANTS.split(",").filter((v) => GPU_VARIANTS.includes(v));
  target.variants = [];
  for (const v of wanted) {
    const dir = findVariantLibDir(v, root, []);
    if (dir) target.variants.push({ variant: v, libDir: dir, libs: variantInfo(v).libs, rpath: variantRpath(v) });
    else console.error(`(no ${variantInfo(v).pkg} installed: no ${v} variant)`);
  }
}

const cmakeJs = findPackageDir("cmake-js", root);
if (!cmakeJs) fail("cmake-js is not installed (it is a dependency: run npm install).");
// configure, then build: `cmake-js compile` alone keeps an existing cache, so a changed -D (a variant that
// appeared, another library folder) would not reach CMake.
const common = ["--directory", root, "--out", buildDir, ...(opts.debug ? ["--debug"] : [])];
const cmakeArgs = [path.join(cmakeJs, "bin", "cmake-js"), "configure", ...common,
  `--CDLLAMA_SRC_DIR=${src}`, `--CDLLAMA_LIB_DIR=${target.libDir}`, `--CDLLAMA_LIBS=${target.libs.join(";")}`,
  `--CDLLAMA_RPATH=${target.rpath.join(";")}`, `--CDW2S_BUILD_TESTS=${opts.tests ? "ON" : "OFF"}`,
  `--CDW2S_VARIANTS=${(target.variants ?? []).map((v) => v.variant).join(";")}`,
  ...(target.variants ?? []).flatMap((v) => [`--CDLLAMA_LIB_DIR_${v.variant}=${v.libDir}`, `--CDLLAMA_LIBS_${v.variant}=${v.libs.join(";")}`,
    `--CDLLAMA_RPATH_${v.variant}=${v.rpath.join(";")}`])];
run(process.execPath, cmakeArgs);
run(process.execPath, [path.join(cmakeJs, "bin", "cmake-js"), "build", ...common, "--parallel", opts.jobs]);

// Tell the runtime loader where the backend plugins of this build live (relative to the addon file).
const outDir = path.join(buildDir, opts.debug ? "Debug" : "Release");
const manifest = {
  source: opts["from-source"] ? "source" : "prebuilt",
  cuda: opts.cuda,
  libDir: opts["from-source"] ? path.relative(outDir, target.libDir) : null,
  // Addon files of the GPU variants beside weak2strong.node (prebuilt links only).
  variants: Object.fromEntries((target.variants ?? []).map((v) => [v.variant, `weak2strong-${v.variant}.node`])),
};
for (const v of GPU_VARIANTS) {
  // A variant from an earlier build whose flavor is gone must not be picked up as current.
  if (!(v in manifest.variants)) fs.rmSync(path.join(outDir, `weak2strong-${v}.node`), { force: true });
}
fs.writeFileSync(path.join(outDir, "weak2strong.build.json"), JSON.stringify(manifest, null, 2) + "\n");
console.error(`weak2strong build: ${path.join(outDir, "weak2strong.node")} (${manifest.source}${opts.cuda ? ", cuda" : ""})` +
  (Object.keys(manifest.variants).length ? `; variants ${Object.keys(manifest.variants).join(", ")}` : ""));
