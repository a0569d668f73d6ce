#!/usr/bin/env node
// `npm install` hook: use the prebuilt addon shipped in prebuilds/ when it loads on this machine,
// otherwise build it from source (scripts/build-native.mjs). Users of the published package normally
// never reach the build: npm 11 skips dependency install scripts, and the prebuild is in the tarball.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const prebuild = path.join(root, "prebuilds", `${process.platform}-${process.arch}`, "weak2strong.napi.node");

if (!process.env.W2S_BUILD_FROM_SOURCE && fs.existsSync(prebuild)) {
  // Load it in a child process: a missing shared library must not take this process down.
  const probe = spawnSync(process.execPath, ["-e", `require(${JSON.stringify(prebuild)})`], { encoding: "utf8" });
  if (probe.status === 0) {
    console.error(`weak2strong: using the prebuilt addon ${path.relative(root, prebuild)}`);
    process.exit(0);
  }
  console.error(`weak2strong: the prebuilt addon does not load here (${probe.stderr.trim().split("\n")[0]}); building from source`);
}
const r = spawnSync(process.execPath, [path.join(root, "scripts", "build-native.mjs")], { stdio: "inherit" });
process.exit(r.status ?? 1);
