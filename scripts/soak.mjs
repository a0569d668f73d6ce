#!/usr/bin/env node
// Memory soak: N cycles of load → sample → score → dispose on a tiny created model, printing the process RSS
// as it goes. A leak shows as RSS that keeps growing after warm-up; warm-up (allocator pools, ggml's CPU
// plugin state, V8 code) shows as growth in the first cycles and a flat line after.
// Usage: npm run soak -- [--cycles 1000] [--threads 1]   (needs `npm run build:ts`; the npm script passes --expose-gc)
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";

const { values } = parseArgs({ options: { cycles: { type: "string", default: "1000" }, threads: { type: "string", default: "1" } } });
const cycles = Number(values.cycles);
const threads = Number(values.threads);
const { createModel, loadModel } = await import(new URL("../dist/lib/index.js", import.meta.url).href);

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "w2s-soak-"));
process.on("exit", () => fs.rmSync(dir, { recursive: true, force: true }));
const file = path.join(dir, "m.gguf");
await createModel({ arch: "llama", layers: 2, embd: 64, heads: 4, kvHeads: 2, ff: 128, ctx: 256, type: "q8_0", seed: 1, out: file });

const mib = () => process.memoryUsage.rss() / 2 ** 20;
const rss = [];
const started = Date.now();
console.log(`soak: ${cycles} cycles of load/sample/score/dispose, ${threads} thread(s), ${os.cpus()[0]?.model ?? "unknown CPU"}`);
for (let i = 1; i <= cycles; i++) {
  const model = await loadModel(file);
  try {
    await model.sample(["Question: What is 2 + 2?\nAnswer:", "Hello"], { n: 2, maxTokens: 8, seed: i, threads });
    await model.score([{ prompt: "Hello", completion: " world" }], { threads });
  } finally {
    model.dispose();
  }
  // With --expose-gc, collect first: then growth is native memory (or live JS objects), not garbage.
  if (i % 50 === 0) globalThis.gc?.();
  rss[i] = mib();
  if (i === 1 || i % 50 === 0) {
    console.log(`cycle ${String(i).padStart(5)}: RSS ${rss[i].toFixed(1)} MiB, JS heap ${(process.memoryUsage().heapUsed / 2 ** 20).toFixed(1)} of ${(process.memoryUsage().heapTotal / 2 ** 20).toFixed(1)} MiB, external ${(process.memoryUsage().external / 2 ** 20).toFixed(1)} MiB`);
  }
}
const at = (i) => rss[Math.min(i, cycles)];
const warm = Math.min(250, Math.floor(cycles / 4)) || 1;
const after = rss.slice(warm).filter(Number.isFinite);
const spread = ((Math.max(...after) - Math.min(...after)) / at(warm)) * 100;
console.log(`RSS: ${at(1).toFixed(1)} MiB after cycle 1, ${at(warm).toFixed(1)} MiB after cycle ${warm} (warm-up), ` +
  `${at(cycles).toFixed(1)} MiB after cycle ${cycles}; from cycle ${warm} on: ${(((at(cycles) - at(warm)) / at(warm)) * 100).toFixed(1)}% ` +
  `net growth, ${spread.toFixed(1)}% spread; ${((Date.now() - started) / 1000).toFixed(0)} s`);
