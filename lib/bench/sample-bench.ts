// `w2s bench sample`: generated tokens/s of weak2strong's native batched sampler against node-llama-cpp
// doing the same work in the same run (its own process), and llama.cpp's own llama-batched-bench at the same
// parallelism, prompt length and new tokens; each at thread counts 1 … physical cores.
//
// Two figures for weak2strong: end to end (prompts, first tokens and decode: what a caller waits for) and
// the generation phase alone, the like-for-like peer of llama-batched-bench's text-generation (S_TG)
// figure, which leaves its prompt processing out. The generation phase is measured as a marginal rate:
// the same job run again with one new token per sample, (tokens(M) − tokens(1)) / (seconds(M) − seconds(1)).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AbortError, InvalidArgumentError } from '../errors.js';
import { createModel } from '../model/create.js';
import { loadModel, type Model } from '../model.js';
import { defaultParallel } from '../sample-options.js';
import { addonLocation } from '../native.js';
import { kernelsPhrase } from '../../scripts/cpu-backend.mjs';
import { physicalCores } from '../threads.js';
import { batchedBenchBinary, runBatchedBench, type BatchedBenchRow } from './peer-batched-bench.js';
import { median, spread } from './stats.js';
import type { AttentionOption } from '../model/attention.js';

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
  /** Attention kernels to try for weak2strong (lib/model/attention.ts); defaults to 'auto' alone. */
  attention?: AttentionOption[];
  /**
   * weak2strong with quantized weights repacked for this CPU's kernels (true: `loadModel`'s default) and/or
   * not (false: ggml's plain layout; for Q8_0 llamafile's tinyBLAS, what node-llama-cpp and llama.cpp run
   * without AMX). Defaults to [true].
   */
  repack?: boolean[];
  /** Solved examples before each question (weak-ICL's long few-shot prompts). Defaults to 0. */
  fewShot?: number;
  /**
   * With `fewShot`: every prompt opens with its own examples instead of the same ones. The pipeline's
   * weak-ICL step selects one set of demonstrations for every question (lib/pipeline/run/method.ts), so the
   * same-examples default is the method's shape and this one the worst case (no common prefix to share).
   */
  distinctDemos?: boolean;
  /** Questions with a longer setting (~100 tokens instead of ~47), the zero-shot prompts of the method. */
  longQuestions?: boolean;
  /** Also measure llama-batched-bench (built once from the bundled source, cached). Defaults to true. */
  batchedBench?: boolean;
  /** Also measure node-llama-cpp. Defaults to true. */
  nodeLlamaCpp?: boolean;
  /**
   * A node-llama-cpp run is stopped once it takes this many times weak2strong's best seconds (it is then
   * reported as a bound: that much slower at least). Defaults to 20; the method suite uses 3.1, just past
   * the ≥ 3× target, to keep its long shapes inside an hour.
   */
  peerLimitFactor?: number;
  /**
   * Rounds of a closing, alternated comparison with llama-batched-bench at each parallelism (0: none, the
   * default): each round times our generation phase and its text generation back to back, in alternating
   * order, so both meet the same moment of the host. Judged by the median of the rounds' ratios.
   */
  paired?: number;
  /** Print the default (calibrated) thread count at the end. Defaults to true. */
  calibration?: boolean;
  log?: (line: string) => void;
}

export interface SampleBenchRow {
  engine: 'weak2strong' | 'node-llama-cpp' | 'llama-batched-bench';
  threads: number;
  generated: number;
  seconds: number;
  /** End to end (weak2strong, node-llama-cpp); text generation only (llama-batched-bench's S_TG). */
  tokensPerSecond: number;
  sequences: number;
  /** weak2strong: the attention kernel the job ran; llama-batched-bench: the one it was given (-fa). */
  attention?: 'flash' | 'plain';
  /** weak2strong: false when the job ran with `repack: false` (unset: repacked, the default). */
  repack?: boolean;
  /** Whether `sequences` was the sampler's default (not set by --parallel). */
  defaultParallel?: boolean;
  /** The run was stopped (it could not be the best, or the peer limit passed): tokensPerSecond is an upper bound. */
  stopped?: boolean;
  /** weak2strong: the generation phase alone (marginal rate, see the file comment). */
  generationTokensPerSecond?: number;
  /** llama-batched-bench: its new tokens / (prompt processing + text generation seconds), no prompt shared. */
  endToEndTokensPerSecond?: number;
  /** llama-batched-bench: batches of `sequences` run in a row and pooled (see runBatchedBench). */
  runs?: number;
  /** A row of the closing paired comparison (round 1, 2, …); bestRow and the table leave these out. */
  round?: number;
}

/** The ≥ 0.9 target of issue 14: our generation phase over llama-batched-bench's text generation. */
export const BATCHED_BENCH_TARGET = 0.9;
/** Most tokens one llama-batched-bench row generates when it repeats batches to match our job. */
const BB_TOKEN_CAP = 40_960;

/**
 * Batches llama-batched-bench runs for `parallel` sequences: as many as our job has waves (work / parallel),
 * so both generate the same tokens, up to BB_TOKEN_CAP.
 */
export function batchedBenchRepeats(parallel: number, work: number, newTokens: number): number {
  return Math.max(1, Math.min(Math.ceil(work / parallel), Math.floor(BB_TOKEN_CAP / (parallel * newTokens))));
}

/** Which ggml CPU backend our sampler runs on: built here (scripts/cpu-backend.mjs) or a prebuilt variant. */
function cpuBackendLine(): string {
  const b = addonLocation().cpuBackend;
  const kernels = b.kernels?.length ? `, ${kernelsPhrase(b.kernels)}` : '';
  return b.source === 'host' ? `built here (${b.path}${kernels})` : `${b.source} (${b.note})`;
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
const ITEMS = ['clips', 'apples', 'marbles', 'stickers', 'books', 'cookies', 'pencils', 'shells'];
const question = (i: number) => `Question: ${NAMES[i % NAMES.length]} sold ${12 + 7 * i} clips in April and half as many in May. ` +
  `How many clips did ${NAMES[i % NAMES.length]} sell altogether in April and May?\nAnswer:`;
/** A GSM8K-length question (~100 tokens on the bench vocabulary): a setting, three quantities, one ask. */
const longQuestion = (i: number) => {
  const who = NAMES[i % NAMES.length]!, friend = NAMES[(i + 3) % NAMES.length]!, item = ITEMS[i % ITEMS.length]!;
  const a = 20 + 3 * i, b = 4 + (i % 9), c = 2 + (i % 5);
  return `Question: ${who} runs a small stall at the weekend market with ${friend}. On Saturday morning ${who} ` +
    `brought ${a} ${item} from home, and during the day ${friend} added ${b} boxes with ${c} ${item} in each box. ` +
    `By the evening they had sold half of everything on the table. ` +
    `How many ${item} were left at the stall at the end of Saturday?\nAnswer:`;
};
const solved = (i: number) => {
  const a = 12 + 7 * i;
  return `${question(i)} In May ${NAMES[i % NAMES.length]} sold ${a} / 2 = ${a / 2} clips. Altogether ${a} + ${a / 2} = ${a * 1.5} clips.\n#### ${a * 1.5}\n\n`;
};

/**
 * Bench prompts; with `fewShot` k, each starts with k solved examples (about 113 tokens each), as weak-ICL's do:
 * the same k before every question, as the pipeline's one selection of demonstrations gives. With
 * `distinctDemos` each prompt draws its own (37 and 97 are coprime: no two of up to 97 prompts open with the
 * same example), so no engine gains from a common prefix.
 */
export function benchPrompts(count: number, fewShot = 0, longQuestions = false, distinctDemos = false): string[] {
  return Array.from({ length: count }, (_, i) => Array.from({ length: fewShot }, (_, k) => solved(1000 + (((distinctDemos ? i * 37 : 0) + k * 11) % 97) * 2)).join('') +
    (longQuestions ? longQuestion(i) : question(i)));
}

interface Timed { generated: number; seconds: number; stopped: boolean }

/** One sample job; stopped (AbortError) after `limitMs`, when given. */
async function timedSample(model: Model, prompts: string[], o: { n: number; maxTokens: number; threads: number; parallel: number; attention?: AttentionOption; limitMs?: number }): Promise<Timed> {
  const signal = o.limitMs === undefined ? undefined : AbortSignal.timeout(Math.max(1, Math.round(o.limitMs)));
  const start = performance.now();
  try {
    const samples = await model.sample(prompts, { n: o.n, maxTokens: o.maxTokens, temperature: 1, seed: 1, threads: o.threads, parallel: o.parallel, attention: o.attention, signal });
    return { generated: samples.reduce((a, s) => a + s.tokens, 0), seconds: (performance.now() - start) / 1000, stopped: false };
  } catch (err) {
    if (!(err instanceof AbortError)) throw err;
    return { generated: prompts.length * o.n * o.maxTokens, seconds: (performance.now() - start) / 1000, stopped: true };
  }
}

const fmt = (x: number) => x.toFixed(1);

/** The generation phase: the marginal rate of the job at M new tokens over the same job at 1 (file comment). */
const generationRate = (long: Pick<Timed, 'generated' | 'seconds'>, short: Pick<Timed, 'generated' | 'seconds'>) => (long.generated - short.generated) / (long.seconds - short.seconds);

/** A llama-batched-bench row of the report: its pooled text generation, and its end to end over all its runs. */
function batchedBenchRow(b: BatchedBenchRow, round?: number): SampleBenchRow {
  const generated = b.runs * b.parallel * b.newTokens;
  return { engine: 'llama-batched-bench', threads: b.threads, generated, seconds: b.tgSeconds, tokensPerSecond: b.tgTokensPerSecond, sequences: b.parallel,
    endToEndTokensPerSecond: generated / (b.ppSeconds + b.tgSeconds), runs: b.runs, ...(round === undefined ? {} : { round }) };
}

export async function runSampleBench(o: SampleBenchOptions = {}): Promise<SampleBenchRow[]> {
  const log = o.log ?? ((line: string) => process.stderr.write(line + '\n'));
  if (o.peerLimitFactor !== undefined && !(o.peerLimitFactor > 0)) throw InvalidArgumentError.expected('number > 0', 'peerLimitFactor', o.peerLimitFactor);
  const modelFile = o.model ?? (await benchModel(path.join(os.tmpdir(), 'weak2strong-bench')));
  const prompts = benchPrompts(o.prompts ?? 16, o.fewShot ?? 0, o.longQuestions ?? false, o.distinctDemos ?? false);
  const n = o.n ?? 4;
  const maxTokens = o.maxTokens ?? 64;
  const cores = physicalCores();
  const threadCounts = o.threads ?? Array.from({ length: cores }, (_, i) => i + 1);
  const rows: SampleBenchRow[] = [];

  const first = await loadModel(modelFile, { repack: o.repack?.[0] ?? true });
  const promptTokens = prompts.map((p) => first.tokenize(p).length);
  log(`model ${modelFile}; ${prompts.length} prompts (${Math.min(...promptTokens)}–${Math.max(...promptTokens)} tokens) × ${n} samples × ${maxTokens} new tokens, ` +
    `temperature 1; ${cores} physical cores; CPU ${os.cpus()[0]?.model ?? 'unknown'}; our CPU backend: ${cpuBackendLine()}`);
  const byDefault = defaultParallel(first.info, prompts.length * n, maxTokens, Math.max(...promptTokens) + 1);
  const parallels = o.parallel ?? [byDefault];
  const attentions = o.attention ?? ['auto'];
  const repacks = [...new Set(o.repack ?? [true])];
  for (const repack of repacks) {
    const model = repack === repacks[0] ? first : await loadModel(modelFile, { repack });
    try {
      await model.sample(prompts.slice(0, 2), { n: 1, maxTokens: 4 }); // warm-up: page in the weights
      for (const attention of attentions) {
        const chosen = model.attention(attention, { promptTokens: Math.max(...promptTokens), maxTokens });
        log(`weak2strong attention ${attention}: ${chosen.mode} (${chosen.reason})`);
        for (const parallel of parallels) {
          const label = `weak2strong     parallel ${parallel}${o.parallel === undefined ? ' (default)' : ''}${attentions.length > 1 ? ` ${chosen.mode}` : ''}${repack ? '' : ' repack off'}`;
          let best: SampleBenchRow | undefined;
          for (const threads of threadCounts) {
            // A thread count 25% slower than the best so far cannot be the best: stopped there, reported as a bound.
            const t = await timedSample(model, prompts, { n, maxTokens, threads, parallel, attention, limitMs: best ? 1250 * best.seconds : undefined });
            const row: SampleBenchRow = { engine: 'weak2strong', threads, generated: t.generated, seconds: t.seconds, tokensPerSecond: t.generated / t.seconds, sequences: parallel,
              attention: chosen.mode, defaultParallel: o.parallel === undefined, ...(repack ? {} : { repack: false }) };
            if (t.stopped) row.stopped = true;
            rows.push(row);
            log(t.stopped
              ? `${label} threads ${threads}: stopped after ${t.seconds.toFixed(2)} s, 1.25× the best (< ${fmt(row.tokensPerSecond)} tokens/s)`
              : `${label} threads ${threads}: ${t.generated} tokens in ${t.seconds.toFixed(2)} s = ${fmt(row.tokensPerSecond)} tokens/s end to end`);
            if (!t.stopped && (!best || row.tokensPerSecond > best.tokensPerSecond)) best = row;
          }
          if (best && maxTokens > 1) {
            // The generation phase of the best thread count: the same job with one new token per sample.
            const short = await timedSample(model, prompts, { n, maxTokens: 1, threads: best.threads, parallel, attention });
            if (best.seconds > short.seconds && best.generated > short.generated) {
              best.generationTokensPerSecond = generationRate(best, short);
              log(`${label} threads ${best.threads}: prompts + first tokens ${short.seconds.toFixed(2)} s; generation phase ${fmt(best.generationTokensPerSecond)} tokens/s`);
            }
          }
        }
      }
    } finally {
      model.dispose();
    }
  }
  if (repacks.length > 1) {
    // Repacked weights against ggml's plain layout, each at its best thread count: what this CPU's repack
    // kernels (AMX, CPU_REPACK; for Q8_0 on AVX2 without VNNI our q8_0_gemm.inc) give over tinyBLAS.
    for (const p of parallels) {
      const best = (on: boolean) => rows.filter((r) => r.engine === 'weak2strong' && r.sequences === p && !r.stopped && (r.repack !== false) === on)
        .reduce<SampleBenchRow | undefined>((b, r) => (!b || r.tokensPerSecond > b.tokensPerSecond ? r : b), undefined);
      const on = best(true);
      const off = best(false);
      if (on && off) log(`parallel ${p}: repacked weights ${fmt(on.tokensPerSecond)} (${on.threads} t) vs the plain layout ${fmt(off.tokensPerSecond)} (${off.threads} t) tokens/s end to end: ${(on.tokensPerSecond / off.tokensPerSecond).toFixed(2)}×`);
    }
  }
  const oursBestSeconds = Math.min(...rows.filter((r) => !r.stopped).map((r) => r.seconds));

  if (o.nodeLlamaCpp ?? true) {
    const peer = path.join(path.dirname(fileURLToPath(import.meta.url)), 'peer-node-llama-cpp.js');
    // Some thread counts make node-llama-cpp orders of magnitude slower on small machines (its threads spin
    // against its own JS thread): a run is stopped after `peerLimitFactor` × our best time (at least 60 s
    // with the default factor) or 1.25× its own best whole-process time, and reported as a bound.
    const factor = o.peerLimitFactor ?? 20;
    const total = prompts.length * n * maxTokens;
    let peerBestWall = Infinity; // seconds of its whole process (load included) at its best
    for (const threads of threadCounts) {
      const limitMs = Math.round(Math.min(1250 * peerBestWall, Math.max(o.peerLimitFactor === undefined ? 60_000 : 0, 1000 * factor * oursBestSeconds)));
      const start = performance.now();
      const r = spawnSync(process.execPath, [peer, JSON.stringify({ model: modelFile, prompts, n, maxTokens, threads })], { encoding: 'utf8', timeout: limitMs });
      if (r.error && (r.error as NodeJS.ErrnoException).code === 'ETIMEDOUT') {
        const seconds = (performance.now() - start) / 1000;
        rows.push({ engine: 'node-llama-cpp', threads, generated: total, seconds, tokensPerSecond: total / seconds, sequences: prompts.length * n, stopped: true });
        log(`node-llama-cpp  threads ${threads}: stopped after ${seconds.toFixed(0)} s (< ${fmt(total / seconds)} tokens/s)`);
        continue;
      }
      if (r.status !== 0) {
        log(`node-llama-cpp  threads ${threads}: failed: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
        continue;
      }
      const res = JSON.parse(r.stdout.trim().split('\n').pop()!) as Omit<SampleBenchRow, 'engine' | 'threads'>;
      rows.push({ engine: 'node-llama-cpp', threads, ...res });
      peerBestWall = Math.min(peerBestWall, (performance.now() - start) / 1000);
      log(`node-llama-cpp  threads ${threads}: ${res.generated} tokens in ${res.seconds.toFixed(2)} s = ${fmt(res.tokensPerSecond)} tokens/s (${res.sequences} sequences)`);
    }
  }

  if (o.batchedBench ?? true) {
    const t0 = performance.now();
    const bin = await batchedBenchBinary(log);
    const builtSeconds = (performance.now() - t0) / 1000;
    if (builtSeconds > 5) log(`llama-batched-bench: ready after ${builtSeconds.toFixed(0)} s (the build; cached for later runs)`);
    // Its sequences are all alike (one prompt length): the mean of ours, at each parallelism we ran.
    const meanPrompt = Math.round(promptTokens.reduce((a, b) => a + b, 0) / promptTokens.length);
    const parallelsRun = [...new Set(rows.filter((r) => r.engine === 'weak2strong').map((r) => Math.min(r.sequences, prompts.length * n)))];
    // Both of its kernels, whichever ours ran: the peer is llama.cpp at its best here. Since our CPU backend
    // carries its own flash-attention kernel, "the same kernel" is no longer the same code (on an AVX-512 host
    // ggml's flash attention ran the bench model 1.5–2× slower than its plain attention, 2026-12-04).
    const kernels: ('flash' | 'plain')[] = ['flash', 'plain'];
    for (const attention of kernels) for (const threads of threadCounts) {
      try {
        const repeats = parallelsRun.map((p) => batchedBenchRepeats(p, prompts.length * n, maxTokens));
        for (const b of runBatchedBench(bin, modelFile, { promptTokens: meanPrompt, newTokens: maxTokens, parallels: parallelsRun, repeats, threads, attention,
          timeoutMs: Math.round(Math.max(120_000, 20_000 * oursBestSeconds)) })) {
          const bbRow = { ...batchedBenchRow(b), attention };
          rows.push(bbRow);
          log(`llama-batched-bench parallel ${b.parallel} threads ${threads} ${attention === 'flash' ? '-fa on' : '-fa off'}: text generation ${fmt(b.tgTokensPerSecond)} tokens/s over ${b.runs} batch(es); ` +
            `end to end ${fmt(bbRow.endToEndTokensPerSecond!)} (prompt ${b.promptTokens} tokens per sequence at ${b.ppTokensPerSecond.toFixed(0)} tokens/s)`);
        }
      } catch (err) {
        log(`llama-batched-bench threads ${threads}: ${(err as Error).message}`);
      }
    }
  }

  if ((o.paired ?? 0) > 0 && (o.batchedBench ?? true)) {
    rows.push(...await pairedRounds(o.paired!, { modelFile, prompts, n, maxTokens, promptTokens, rows: rows.filter((r) => r.repack !== false), bin: await batchedBenchBinary(log), log }));
  }

  if (o.calibration ?? true) {
    // The default a user gets without `threads` (lib/thread-calibration.ts), beside the counts measured above.
    const calModel = await loadModel(modelFile);
    try {
      const cal = await calModel.calibrateThreads();
      log(`default threads (calibrated${cal.cached ? ', from the cache' : ''}): ${cal.threads}; probe best seconds ${Object.entries(cal.seconds).map(([t, s]) => `${t} thread(s) ${s.toFixed(3)}`).join(', ') || '(none: one core, or W2S_THREAD_CALIBRATION=0)'}`);
    } finally {
      calModel.dispose();
    }
  }

  // The verdicts judge the default, repacked weights (the plain layout's rows only feed the line above).
  for (const line of summarize(rows.filter((r) => r.repack !== false), prompts.length * n)) log(line);
  return rows;
}

/**
 * The closing paired comparison: at each parallelism we ran, `rounds` rounds of our generation phase (the job
 * at M and at 1 new token, at our best thread count) and llama-batched-bench's text generation (the same
 * tokens, its best thread count), back to back, the order alternated. One run of either moves ±10–15% on
 * this host; a ratio taken from two runs minutes apart carries both errors.
 */
async function pairedRounds(rounds: number, c: { modelFile: string; prompts: string[]; n: number; maxTokens: number; promptTokens: number[]; rows: SampleBenchRow[]; bin: string; log: (line: string) => void }): Promise<SampleBenchRow[]> {
  if (!Number.isInteger(rounds) || rounds < 2) throw InvalidArgumentError.expected('integer >= 2 (the noise band needs two runs)', 'paired', rounds);
  if (c.maxTokens < 2) throw InvalidArgumentError.expected('maxTokens >= 2 (the generation phase is a difference of two jobs)', 'maxTokens', c.maxTokens);
  const work = c.prompts.length * c.n;
  const meanPrompt = Math.round(c.promptTokens.reduce((a, b) => a + b, 0) / c.promptTokens.length);
  const out: SampleBenchRow[] = [];
  const model = await loadModel(c.modelFile);
  try {
    for (const p of [...new Set(c.rows.filter((r) => r.engine === 'weak2strong').map((r) => r.sequences))]) {
      const ours = bestRow(c.rows, 'weak2strong', p);
      const bb = bestRow(c.rows, 'llama-batched-bench', Math.min(p, work));
      if (!ours || !bb) continue;
      const repeats = batchedBenchRepeats(Math.min(p, work), work, c.maxTokens);
      const gens: number[] = [];
      const tgs: number[] = [];
      for (let i = 0; i < rounds; i++) {
        const order = i % 2 === 0 ? ['ours', 'bb'] : ['bb', 'ours'];
        for (const who of order) {
          if (who === 'ours') {
            const long = await timedSample(model, c.prompts, { n: c.n, maxTokens: c.maxTokens, threads: ours.threads, parallel: p, attention: ours.attention });
            const short = await timedSample(model, c.prompts, { n: c.n, maxTokens: 1, threads: ours.threads, parallel: p, attention: ours.attention });
            gens[i] = generationRate(long, short);
            out.push({ engine: 'weak2strong', threads: ours.threads, generated: long.generated, seconds: long.seconds, tokensPerSecond: long.generated / long.seconds,
              sequences: p, attention: ours.attention, generationTokensPerSecond: gens[i], round: i + 1 });
          } else {
            const b = runBatchedBench(c.bin, c.modelFile, { promptTokens: meanPrompt, newTokens: c.maxTokens, parallels: [Math.min(p, work)], repeats: [repeats], threads: bb.threads,
              attention: bb.attention, timeoutMs: 600_000 })[0]!;
            tgs[i] = b.tgTokensPerSecond;
            out.push({ ...batchedBenchRow(b, i + 1), attention: bb.attention });
          }
        }
        c.log(`paired parallel ${p} round ${i + 1} (${order.map((w) => (w === 'ours' ? 'weak2strong' : 'llama-batched-bench')).join(' then ')}): ` +
          `generation phase ${fmt(gens[i]!)} (${ours.threads} t) vs text generation ${fmt(tgs[i]!)} (${bb.threads} t): ${(gens[i]! / tgs[i]!).toFixed(3)}×`);
      }
      for (const line of pairedVerdict(p, gens, tgs)) c.log(line);
    }
  } finally {
    model.dispose();
  }
  return out;
}

/** The verdict on the ≥ 0.9 target from paired rounds at one parallelism. */
export function pairedVerdict(parallel: number, gens: number[], tgs: number[]): string[] {
  const ratios = gens.map((g, i) => g / tgs[i]!);
  const m = median(ratios);
  const noise = spread(gens);
  // Below the target by less than our runs' own spread is not a measured miss; it is reported as such.
  const verdict = m >= BATCHED_BENCH_TARGET ? 'met'
    : m * (1 + noise) >= BATCHED_BENCH_TARGET ? `met within the noise (${(100 * (1 - m / BATCHED_BENCH_TARGET)).toFixed(1)}% short, less than our runs' own ±${(100 * noise).toFixed(1)}%)`
    : `missed (${(100 * (1 - m / BATCHED_BENCH_TARGET)).toFixed(1)}% short, more than our runs' ±${(100 * noise).toFixed(1)}%)`;
  return [`paired parallel ${parallel}: ${ratios.length} rounds, ratios ${ratios.map((r) => r.toFixed(3)).join(', ')}; median ${m.toFixed(3)}× ` +
    `(median generation phase ${fmt(median(gens))} ±${(100 * noise).toFixed(1)}%, median text generation ${fmt(median(tgs))} ±${(100 * spread(tgs)).toFixed(1)}%). ` +
    `Target >= ${BATCHED_BENCH_TARGET}: ${verdict}`];
}

/** The best finished row of an engine (at one parallelism, when given); the best bound when every run was stopped. Paired rounds are left out. */
export function bestRow(rows: SampleBenchRow[], engine: SampleBenchRow['engine'], sequences?: number): SampleBenchRow | undefined {
  const pick = rows.filter((r) => r.engine === engine && r.round === undefined && (sequences === undefined || r.sequences === sequences));
  const done = pick.filter((r) => !r.stopped);
  return (done.length > 0 ? done : pick).sort((a, b) => b.tokensPerSecond - a.tokensPerSecond)[0];
}

/** The ratio lines: against node-llama-cpp (best vs best) and llama-batched-bench (same parallelism). */
export function summarize(rows: SampleBenchRow[], work: number): string[] {
  const lines: string[] = [];
  const ours = bestRow(rows, 'weak2strong');
  const theirs = bestRow(rows, 'node-llama-cpp');
  if (ours && theirs) {
    const ratio = ours.tokensPerSecond / theirs.tokensPerSecond;
    lines.push(`best: weak2strong ${fmt(ours.tokensPerSecond)} tokens/s (threads ${ours.threads}, parallel ${ours.sequences}) vs node-llama-cpp ` +
      `${theirs.stopped ? '< ' : ''}${fmt(theirs.tokensPerSecond)} tokens/s (threads ${theirs.threads}): ratio ${theirs.stopped ? '> ' : ''}${ratio.toFixed(2)}× (target >= 3)`);
  }
  for (const p of [...new Set(rows.filter((r) => r.engine === 'weak2strong').map((r) => r.sequences))]) {
    const our = bestRow(rows, 'weak2strong', p)!;
    const bb = bestRow(rows, 'llama-batched-bench', Math.min(p, work));
    if (!bb) continue;
    const gen = our.generationTokensPerSecond;
    lines.push(`parallel ${p}: generation phase ${gen === undefined ? 'n/a' : fmt(gen)} vs llama-batched-bench text generation ${fmt(bb.tokensPerSecond)}: ` +
      `ratio ${gen === undefined ? 'n/a' : (gen / bb.tokensPerSecond).toFixed(2) + '×'} (target >= 0.9); end to end ${fmt(our.tokensPerSecond)} vs its ` +
      `${fmt(bb.endToEndTokensPerSecond!)} (prompt per sequence, not shared): ${(our.tokensPerSecond / bb.endToEndTokensPerSecond!).toFixed(2)}×`);
  }
  return lines;
}
