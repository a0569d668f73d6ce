#!/usr/bin/env node
// Runs before `npm test` and `npm run demo` (pretest / predemo), with Node's own modules only: on a fresh
// clone it runs `npm install` (dependencies, the addon, the TypeScript, the CPU backend for this machine), builds
// that CPU backend when an older install lacks it, and for the tests it makes sure Chromium is there
// (scripts/chromium.mjs). So the README's two commands work with nothing done by hand.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const needs = ["typescript", "ava", "node-llama-cpp", "commander"];

const missing = needs.filter((p) => !fs.existsSync(path.join(root, "node_modules", p, "package.json")));
const addon = ["build/Release/weak2strong.node", `prebuilds/${process.platform}-${process.arch}/weak2strong.napi.node`]
  .some((p) => fs.existsSync(path.join(root, p)));
if (missing.length > 0 || !addon) {
  console.error(`weak2strong: ${missing.length ? `${missing.join(", ")} not installed` : "the addon is not built"}; running npm install first`);
  const npm = process.env.npm_execpath
    ? [process.execPath, [process.env.npm_execpath, "install", "--no-audit", "--no-fund"]]
    : ["npm", ["install", "--no-audit", "--no-fund"]];
  const r = spawnSync(npm[0], npm[1], { cwd: root, stdio: "inherit" });
  if (r.status !== 0) {
    console.error("weak2strong: npm install failed (see above); fix that first, then run the command again");
    process.exit(r.status || 1);
  }
}

// A checkout installed before the CPU backend build existed, or a cleared cache: build it once (never fatal).
if (process.env.W2S_CPU_BACKEND !== "prebuilt") {
  const script = path.join(root, "scripts", "cpu-backend.mjs");
  if (spawnSync(process.execPath, [script, "--path"], { stdio: "ignore" }).status !== 0) {
    spawnSync(process.execPath, [script, "--if-possible"], { cwd: root, stdio: ["ignore", "ignore", "inherit"] });
  }
}

if (process.argv.includes("--chromium")) {
  const { ensureChromium } = await import("./chromium.mjs");
  try {
    const at = ensureChromium();
    if (process.env.W2S_VERBOSE) console.error(`weak2strong tests: Chromium ${at}`);
  } catch (err) {
    console.error(`weak2strong tests: ${err.message}`);
    process.exit(1);
  }
}
