#!/usr/bin/env node
// `npm install` hook: use the prebuilt addon shipped in prebuilds/ when it loads on this machine,
// otherwise build it from source (scripts/build-native.mjs). Users of the published package normally
// never reach the build: npm 11 skips dependency install scripts, and the prebuild is in the tarball.
// Then, where cmake and a compiler are present, a ggml CPU backend for this machine (scripts/cpu-backend.mjs;
// about a minute on 2 cores, cached per CPU outside the package; users of the tarball run it themselves).
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const prebuild = path.join(root, "prebuilds", `${process.platform}-${process.arch}`, "weak2strong.napi.node");

/** The ggml CPU backend for this machine (scripts/cpu-backend.mjs): faster than the prebuilt variants; never fails the install. */
function cpuBackend() {
  if (process.env.W2S_CPU_BACKEND === "prebuilt") return;
  spawnSync(process.execPath, [path.join(root, "scripts", "cpu-backend.mjs"), "--if-possible"], { stdio: ["ignore", "ignore", "inherit"] });
}

if (!process.env.W2S_BUILD_FROM_SOURCE && fs.existsSync(prebuild)) {
  // Load it in a child process: a missing shared library must not take this process down.
  const probe = spawnSync(process.execPath, ["-e", `require(${JSON.stringify(prebuild)})`], { encoding: "utf8" });
  if (probe.status === 0) {
    console.error(`weak2strong: using the prebuilt addon ${path.relative(root, prebuild)}`);
    cpuBackend();
    process.exit(0);
  }
  console.error(`weak2strong: the prebuilt addon does not load here (${probe.stderr.trim().split("\n")[0]}); building from source`);
}
const r = spawnSync(process.execPath, [path.join(root, "scripts", "build-native.mjs")], { stdio: "inherit" });
if (r.status === 0) cpuBackend();
process.exit(r.status ?? 1);
