#!/usr/bin/env node
// `npm pack` hook: puts the compiled addon into prebuilds/<platform>-<arch>/weak2strong.napi.node
// (node-gyp-build's layout; Node-API, so one binary serves every Node version >= 20).
// Why not prebuildify: it drives node-gyp (a second build definition beside CMakeLists.txt); our one
// build is cmake-js, so this script does prebuildify's remaining job, copying the binary into place.
// The prebuild must link the prebuilt llama.cpp libraries (relative rpath), never a from-source build.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const built = path.join(root, "build", "Release", "weak2strong.node");
const manifest = path.join(root, "build", "Release", "weak2strong.build.json");
const isPrebuiltLink = fs.existsSync(manifest) && JSON.parse(fs.readFileSync(manifest, "utf8")).source === "prebuilt";
if (!fs.existsSync(built) || !isPrebuiltLink) {
  const r = spawnSync(process.execPath, [path.join(root, "scripts", "build-native.mjs")], { stdio: "inherit" });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
const dir = path.join(root, "prebuilds", `${process.platform}-${process.arch}`);
fs.mkdirSync(dir, { recursive: true });
const dest = path.join(dir, "weak2strong.napi.node");
fs.copyFileSync(built, dest);
console.error(`weak2strong: prebuild ${path.relative(root, dest)} (${fs.statSync(dest).size} bytes)`);
// The GPU variants (weak2strong-<variant>.node, linked to node-llama-cpp's CUDA and Vulkan flavors): every one
// the build made; a stale one from an earlier pack whose flavor is gone is removed.
const variants = JSON.parse(fs.readFileSync(manifest, "utf8")).variants ?? {};
for (const v of ["cuda", "vulkan"]) {
  const out = path.join(dir, `weak2strong-${v}.napi.node`);
  if (!variants[v]) {
    fs.rmSync(out, { force: true });
    continue;
  }
  fs.copyFileSync(path.join(root, "build", "Release", variants[v]), out);
  console.error(`weak2strong: prebuild ${path.relative(root, out)} (${fs.statSync(out).size} bytes)`);
}
