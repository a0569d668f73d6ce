// `w2s bench sample`: generated tokens/s of weak2strong's native batched sampler against node-llama-cpp
// doing the same work in the same run (its own process), and llama.cpp's own llama-batched-bench at the same
// parallelism, prompt length and new tokens; each at thread counts 1 … physical cores.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createModel } from '../model/create.js';
import { loadModel } from '../model.js';
import { defaultParallel } from '../sample-options.js';
import { physicalCores } from '../threads.js';
import { batchedBenchBinary, runBatchedBench } from './peer-batched-bench.js';

export interface SampleBenchOptions {
  /** Model to use; by default a ~25M-parameter, 32k-vocabulary q8_0 llama model is created (cached). */
  model?: string;
  prompts?: number;
  n?: number;
  maxTokens?: number;
  /** Thread counts to try; defaults to 1 … physical cores. */
  threads?: number[];
  /** Sequences in flight to try for weak2strong; defaults to the sampler's default alone. */
  parallel?: number[];
  /** Solved examples before each question (weak-ICL's long few-shot prompts). Defaults to 0. */
  fewShot?: number;
  /** Also measure llama-batched-bench (built once from the bundled source, cached). Defaults to true. */
  batchedBench?: boolean;
  log?: (line: string) => void;
}

export interface SampleBenchRow {
  engine: 'weak2strong' | 'node-llama-cpp' | 'llama-batched-bench';
  threads: number;
  generated: number;
  seconds: number;
  tokensPerSecond: number;
  sequences: number;
  /** Whether `sequences` was the sampler's default (not set by --parallel). */
  defaultParallel?: boolean;
}

/** The benchmark model: llama, 10 layers, 256 wide, 8 heads (4 KV), ff 768, 32k vocabulary, q8_0 ≈ 24M parameters. */
export async function benchModel(dir: string): Promise<string> {
  const file = path.join(dir, 'bench-llama-25m-32k-q8_0.gguf');
  if (!fs.existsSync(file)) {
    fs.mkdirSync(dir, { recursive: true });
    await createModel({ arch: 'llama', layers: 10, embd: 256, heads: 8, kvHeads: 4, ff: 768, ctx: 2048, vocab: 32000, type: 'q8_0', seed: 7, out: file });
  }
  return file;
}

const NAMES = ['Natalia', 'Weng', 'Betty', 'Julie', 'James', 'Albert', 'Ken', 'Alexis', 'Tina', 'Randy'];
const question = (i: number) => `Question: ${NAMES[i % NAMES.length]} sold ${12 + 7 * i} clips in April and half as many in May. ` +
  `How many clips did ${NAMES[i % NAMES.length]} sell altogether in April and May?\nAnswer:`;
const solved = (i: number) => {
  const a = 12 + 7 * i;
  return `${question(i)} In May ${NAMES[i % NAMES.length]} sold ${a} / 2 = ${a / 2} clips. Altogether ${a} + ${a / 2} = ${a * 1.5} clips.\n#### ${a * 1.5}\n\n`;
};

/** Bench prompts; with `fewShot` k, each starts with k solved examples (about 45 tokens each), as weak-ICL's do. */
export function benchPrompts(count: number, fewShot = 0): string[] {
  return Array.from({ length: count }, (_, i) => Array.from({ length: fewShot }, (_, k) => solved(1000 + 2 * k)).join('') + question(i));
}

export async function runSampleBench(o: SampleBenchOptions = {}): Promise<SampleBenchRow[]> {
  const log = o.log ?? ((line: string) => process.stderr.write(line + '\n'));
  const modelFile = o.model ?? (await benchModel(path.join(os.tmpdir(), 'weak2strong-bench')));
  const prompts = benchPrompts(o.prompts ?? 16, o.fewShot ?? 0);
  const n = o.n ?? 4;
  const maxTokens = o.maxTokens ?? 64;
  const cores = physicalCores();
  const threadCounts = o.threads ?? Array.from({ length: cores }, (_, i) => i + 1);
  const rows: SampleBenchRow[] = [];

  const model = await loadModel(modelFile);
  const promptTokens = prompts.map((p) => model.tokenize(p).length);
  log(`model ${modelFile}; ${prompts.length} prompts (${Math.min(...promptTokens)}–${Math.max(...promptTokens)} tokens) × ${n} samples × ${maxTokens} new tokens, ` +
    `temperature 1; ${cores} physical cores; CPU ${os.cpus()[0]?.model ?? 'unknown'}`);
  const byDefault = defaultParallel(model.info, prompts.length * n, maxTokens, Math.max(...promptTokens) + 1);
  const parallels = o.parallel ?? [byDefault];
  try {
    await model.sample(prompts.slice(0, 2), { n: 1, maxTokens: 4 }); // warm-up: page in the weights
    for (const parallel of parallels) {
      for (const threads of threadCounts) {
        const start = performance.now();
        const samples = await model.sample(prompts, { n, maxTokens, temperature: 1, seed: 1, threads, parallel });
        const seconds = (performance.now() - start) / 1000;
        const generated = samples.reduce((a, s) => a + s.tokens, 0);
        rows.push({ engine: 'weak2strong', threads, generated, seconds, tokensPerSecond: generated / seconds, sequences: parallel, defaultParallel: o.parallel === undefined });
        log(`weak2strong     parallel ${parallel}${o.parallel === undefined ? ' (default)' : ''} threads ${threads}: ${generated} tokens in ${seconds.toFixed(2)} s = ${(generated / seconds).toFixed(1)} tokens/s`);
      }
    }
  } finally {
    model.dispose();
  }

  const peer = path.join(path.dirname(fileURLToPath(import.meta.url)), 'peer-node-llama-cpp.js');
  // Some thread counts make node-llama-cpp orders of magnitude slower on small machines (its threads
  // spin against its own JS thread): stop a peer run after 20× our slowest time and report the bound.
  const limitMs = Math.round(Math.max(60_000, 20_000 * Math.max(...rows.map((r) => r.seconds))));
  for (const threads of threadCounts) {
    const r = spawnSync(process.execPath, [peer, JSON.stringify({ model: modelFile, prompts, n, maxTokens, threads })], { encoding: 'utf8', timeout: limitMs });
    if (r.error && (r.error as NodeJS.ErrnoException).code === 'ETIMEDOUT') {
      const total = prompts.length * n * maxTokens;
      log(`node-llama-cpp  threads ${threads}: stopped after ${(limitMs / 1000).toFixed(0)} s (< ${(total / (limitMs / 1000)).toFixed(1)} tokens/s)`);
      continue;
    }
    if (r.status !== 0) {
      log(`node-llama-cpp  threads ${threads}: failed: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
      continue;
    }
    const res = JSON.parse(r.stdout.trim().split('\n').pop()!) as Omit<SampleBenchRow, 'engine' | 'threads'>;
    rows.push({ engine: 'node-llama-cpp', threads, ...res });
    log(`node-llama-cpp  threads ${threads}: ${res.generated} tokens in ${res.seconds.toFixed(2)} s = ${res.tokensPerSecond.toFixed(1)} tokens/s (${res.sequences} sequences)`);
  }

  if (o.batchedBench ?? true) {
    const t0 = performance.now();
    const bin = await batchedBenchBinary(log);
    const builtSeconds = (performance.now() - t0) / 1000;
    if (builtSeconds > 5) log(`llama-batched-bench: ready after ${builtSeconds.toFixed(0)} s (the build; cached for later runs)`);
    // Its sequences are all alike (one prompt length): the mean of ours, at each parallelism we ran.
    const meanPrompt = Math.round(promptTokens.reduce((a, b) => a + b, 0) / promptTokens.length);
    const parallelsRun = [...new Set(rows.filter((r) => r.engine === 'weak2strong').map((r) => Math.min(r.sequences, prompts.length * n)))];
    for (const threads of threadCounts) {
      try {
        for (const b of runBatchedBench(bin, modelFile, { promptTokens: meanPrompt, newTokens: maxTokens, parallels: parallelsRun, threads, timeoutMs: limitMs })) {
          const generated = b.parallel * b.newTokens;
          rows.push({ engine: 'llama-batched-bench', threads, generated, seconds: generated / b.tgTokensPerSecond, tokensPerSecond: b.tgTokensPerSecond, sequences: b.parallel });
          log(`llama-batched-bench parallel ${b.parallel} threads ${threads}: text generation ${b.tgTokensPerSecond.toFixed(1)} tokens/s (prompt ${b.promptTokens} tokens at ${b.ppTokensPerSecond.toFixed(0)} tokens/s)`);
        }
      } catch (err) {
        log(`llama-batched-bench threads ${threads}: ${(err as Error).message}`);
      }
    }
  }

  // The default a user gets without `threads` (lib/thread-calibration.ts), beside the counts measured above.
  const calModel = await loadModel(modelFile);
  try {
    const cal = await calModel.calibrateThreads();
    log(`default threads (calibrated${cal.cached ? ', from the cache' : ''}): ${cal.threads}; probe best seconds ${Object.entries(cal.seconds).map(([t, s]) => `${t} thread(s) ${s.toFixed(3)}`).join(', ') || '(none: one core, or W2S_THREAD_CALIBRATION=0)'}`);
  } finally {
    calModel.dispose();
  }

  const best = (engine: SampleBenchRow['engine']) => rows.filter((r) => r.engine === engine).sort((a, b) => b.tokensPerSecond - a.tokensPerSecond)[0];
  const ours = best('weak2strong');
  const theirs = best('node-llama-cpp');
  if (ours && theirs) {
    log(`best: weak2strong ${ours.tokensPerSecond.toFixed(1)} tokens/s (threads ${ours.threads}) vs node-llama-cpp ` +
      `${theirs.tokensPerSecond.toFixed(1)} tokens/s (threads ${theirs.threads}): ratio ${(ours.tokensPerSecond / theirs.tokensPerSecond).toFixed(2)}× (target >= 3)`);
  }
  // Against llama-batched-bench at the same parallelism (its text-generation phase only; ours includes
  // prompt processing and sampling, so the ratio is conservative).
  for (const p of [...new Set(rows.filter((r) => r.engine === 'weak2strong').map((r) => r.sequences))]) {
    const ourBest = rows.filter((r) => r.engine === 'weak2strong' && r.sequences === p).sort((a, b) => b.tokensPerSecond - a.tokensPerSecond)[0]!;
    const bb = rows.filter((r) => r.engine === 'llama-batched-bench' && r.sequences === Math.min(p, prompts.length * n)).sort((a, b) => b.tokensPerSecond - a.tokensPerSecond)[0];
    if (bb) {
      log(`parallel ${p}: weak2strong ${ourBest.tokensPerSecond.toFixed(1)} tokens/s vs llama-batched-bench text generation ${bb.tokensPerSecond.toFixed(1)}: ` +
        `ratio ${(ourBest.tokensPerSecond / bb.tokensPerSecond).toFixed(2)}× (target >= 0.9)`);
    }
  }
  return rows;
}
