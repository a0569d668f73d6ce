// `w2s bench train`: LoRA SFT tokens/s and peak RSS of weak2strong (F32, F16 and Q8_0 bases; engine v2 as
// users get it, v2 without and with activation checkpointing, v2 with ggml's own OUT_PROD or MUL_MAT kernel, and the v1
// engine: ggml autodiff's OUT_PROD on the frozen weights, dense head) against llama.cpp's own trainer (llama_opt_epoch, full fine-tune of the F32 model)
// measured in the same run, each in its own process.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidArgumentError } from '../errors.js';
import { createModel } from '../model/create.js';
import { loadModel } from '../model.js';
import { addon } from '../native.js';
import { createRng } from '../pipeline/random.js';
import { physicalCores } from '../threads.js';
import { benchModel } from './sample-bench.js';
import type { TrainRunJob, TrainRunResult } from './train-runner.js';
import { median, spread } from './stats.js';

/** The shape of benchModel() in sample-bench.ts (~24M parameters); the F32 twin is written next to it. */
const CFG = { layers: 10, embd: 256, heads: 8, kvHeads: 4, ff: 768, vocab: 32000 };

export interface TrainBenchOptions {
  /** Optimizer steps. Defaults to 20. */
  steps?: number;
  /** Sequences per step. Defaults to 8. */
  batch?: number;
  /** Tokens per sequence. Defaults to 256. */
  seqLen?: number;
  /** Leading tokens of each sequence without loss (SFT prompt). Defaults to 32. */
  promptLen?: number;
  rank?: number;
  /** Threads for both engines. Defaults to the physical cores. */
  threads?: number;
  /**
   * Rounds of the Q8_0-versus-F32 comparison that ends the run: engine v2 (default settings) on the F32 and
   * the Q8_0 base, alternated (F32 first in odd rounds, Q8_0 first in even ones, so a drift of the host's speed
   * cancels), at most 8 steps each, with the Q8_0 / F32 ratio per round, its median, and the F32 runs' spread
   * as the noise band. Defaults to 3.
   */
  paired?: number;
  /** Only that comparison, not the table. */
  pairedOnly?: boolean;
  log?: (line: string) => void;
}

export interface TrainBenchRow extends TrainRunResult {
  engine: string;
  base: 'f32' | 'f16' | 'q8_0';
  /** Whole run: tokens / seconds. */
  tokensPerSecond: number;
  /** Tokens per step / the median step time: robust to a few steps slowed by other load. */
  medianStepTokensPerSecond: number;
  /** weak2strong: its memory plan + the bare process; llama.cpp: GGUF size + activation estimate + optimizer state + KV cache. Bytes. */
  estimateBytes: number;
}

async function modelFile(dir: string, type: 'f32' | 'f16' | 'q8_0'): Promise<string> {
  if (type === 'q8_0') return benchModel(dir);
  const file = path.join(dir, `bench-llama-25m-32k-${type}.gguf`);
  if (!fs.existsSync(file)) {
    await createModel({ arch: 'llama', ...CFG, ctx: 2048, type, seed: 7, out: file });
  }
  return file;
}

/** GSM8K-like problems with varied names and numbers, tokenized with the model's vocabulary into a file. */
export async function tokenStream(model: string, dir: string, need: number): Promise<string> {
  const file = path.join(dir, `train-tokens-${need}.i32`);
  if (fs.existsSync(file)) return file;
  const rng = createRng(11);
  const names = ['Natalia', 'Weng', 'Betty', 'Julie', 'James', 'Albert', 'Ken', 'Alexis', 'Tina', 'Randy', 'Mark', 'Jasmine'];
  const items = ['clips', 'apples', 'marbles', 'stickers', 'books', 'cookies', 'pencils', 'shells'];
  const vocab = await loadModel(model, { vocabOnly: true });
  const tokens: number[] = [];
  try {
    while (tokens.length < need) {
      const [n1, n2] = rng.sample(names, 2);
      const it = items[rng.int(items.length)]!;
      const a = 10 + rng.int(90), b = 1 + rng.int(50), c = 1 + rng.int(a);
      const text = `Question: ${n1} has ${a} ${it}. ${n1} buys ${b} more ${it} and gives ${c} to ${n2}. How many ${it} does ${n1} have now?\n` +
        `Answer: ${n1} starts with ${a} ${it}. After buying ${b} more, ${n1} has ${a} + ${b} = ${a + b}. ` +
        `After giving ${c} away, ${n1} has ${a + b} - ${c} = ${a + b - c}.\n#### ${a + b - c}\n\n`;
      tokens.push(...vocab.tokenize(text));
    }
  } finally {
    vocab.dispose();
  }
  fs.writeFileSync(`${file}.tmp-${process.pid}`, Buffer.from(Int32Array.from(tokens.slice(0, need)).buffer));
  fs.renameSync(`${file}.tmp-${process.pid}`, file);
  return file;
}

/**
 * Bytes of the forward intermediates of one physical batch of `tokens` tokens with attention over `kv` keys:
 * per layer and token ~ (10·n_embd + 3·n_ff + n_head·kv) F32 values (norms, q/k/v/o, residuals; gate, up,
 * SwiGLU; attention scores), plus logits, softmax and their gradient (3·n_vocab per token), 4 bytes each.
 */
export function activationBytes(tokens: number, kv: number): number {
  const perToken = CFG.layers * (10 * CFG.embd + 3 * CFG.ff + CFG.heads * kv) + 3 * CFG.vocab;
  return perToken * tokens * 4;
}

const MiB = (b: number) => b / 2 ** 20;

/** Busy CPU seconds of the whole machine so far (Linux /proc/stat; 0 elsewhere), to spot other load. */
function machineBusySeconds(): number {
  try {
    const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const idle = (f[3] ?? 0) + (f[4] ?? 0);
    return (f.reduce((a, b) => a + b, 0) - idle) / 100; // USER_HZ = 100 ticks per second on Linux
  } catch {
    return 0;
  }
}

/**
 * Matrix multiply-adds per trained token of one step, from the shapes (what bounds the speed ratio at equal
 * kernel efficiency). P = the layers' projection weights, H = the output head (vocab × embd), A = the dense
 * attention products (QKᵀ and AV over all T keys: 2·T·embd per layer). Full fine-tune: forward, input
 * gradients and weight gradients of everything, head on every position (llama_opt's loss covers them all).
 * LoRA: forward and input gradients only (frozen weights get no gradient), the head on response tokens
 * only, + the layers' forward again when checkpointed. LoRA's own rank-r products are left out (< 1%).
 */
export function matmulWork(cfg: typeof CFG, seqLen: number, promptLen: number): { fullFt: number; lora: number; loraCheckpointed: number } {
  const kv = (cfg.embd / cfg.heads) * cfg.kvHeads;
  const P = cfg.layers * (2 * cfg.embd * cfg.embd + 2 * cfg.embd * kv + 3 * cfg.embd * cfg.ff);
  const H = cfg.vocab * cfg.embd;
  const A = cfg.layers * 2 * seqLen * cfg.embd;
  const response = (seqLen - promptLen) / seqLen;
  const fullFt = 3 * (P + H) + 3 * A;  // forward; input and weight gradients (attention backward: 2 products per forward one)
  const lora = 2 * P + 2 * H * response + 3 * A;
  return { fullFt, lora, loraCheckpointed: lora + P + A };
}

export async function runTrainBench(o: TrainBenchOptions = {}): Promise<TrainBenchRow[]> {
  const log = o.log ?? ((line: string) => process.stderr.write(line + '\n'));
  const steps = o.steps ?? 20, batch = o.batch ?? 8, seqLen = o.seqLen ?? 256, promptLen = o.promptLen ?? 32, rank = o.rank ?? 8;
  const threads = o.threads ?? physicalCores();
  // llama.cpp rounds contexts up to multiples of 256; a sequence needs a prompt and at least one target.
  if (seqLen % 256 !== 0) throw InvalidArgumentError.expected('multiple of 256', 'seqLen', seqLen);
  if (promptLen < 1 || promptLen > seqLen - 2) throw InvalidArgumentError.expected(`integer in [1, ${seqLen - 2}]`, 'promptLen', promptLen);
  const dir = path.join(os.tmpdir(), 'weak2strong-bench');
  const models = { f32: await modelFile(dir, 'f32'), f16: await modelFile(dir, 'f16'), q8_0: await modelFile(dir, 'q8_0') };
  const stepTokens = batch * seqLen;
  const tokensFile = await tokenStream(models.f32, dir, steps * stepTokens + 1);
  const runner = path.join(path.dirname(fileURLToPath(import.meta.url)), 'train-runner.js');
  // llama_opt_epoch's backward graph overflows llama.cpp's inference-sized node budget on this model
  // (GGML_ASSERT n_nodes < size); benchLlamaOpt loads this rank-1 adapter (never applied) to raise it.
  const budgetAdapter = path.join(dir, 'bench-llama-25m-32k-f32.budget-r1.gguf');
  if (!fs.existsSync(budgetAdapter)) {
    const t = await addon().createTrainer(models.f32, { rank: 1, alpha: 1, dropout: 0, targets: 0x7f, seed: 0, threads: 1 });
    try {
      await t.saveAdapter(budgetAdapter);
    } finally {
      t.dispose();
    }
  }
  const base: TrainRunJob = { engine: 'lora', model: models.f32, tokensFile, steps, threads, lr: 1e-4, batch, seqLen, promptLen, rank, nCtx: seqLen, nBatch: seqLen, nUbatch: seqLen, budgetAdapter };
  let otherCpu = 0; // CPU seconds other processes used while our children ran
  let ownCpu = 0;
  const run = (job: TrainRunJob): TrainRunResult => {
    const busy0 = machineBusySeconds();
    const r = spawnSync(process.execPath, [runner, JSON.stringify(job)], { encoding: 'utf8', maxBuffer: 1 << 24 });
    if (r.status !== 0) throw new Error(`bench train: ${job.engine} run failed: ${(r.stderr ?? String(r.error)).trim().split('\n').slice(-4).join(' | ')}`);
    const res = JSON.parse(r.stdout.trim().split('\n').pop()!) as TrainRunResult;
    otherCpu += Math.max(0, machineBusySeconds() - busy0 - res.cpuSeconds);
    ownCpu += res.cpuSeconds;
    return res;
  };

  log(`${steps} steps × ${batch} sequences × ${seqLen} tokens (LoRA: prompt ${promptLen} without loss, rank ${rank}, all 7 projections); ` +
    `threads ${threads} (physical cores ${physicalCores()}); models in ${dir}`);
  const baseline = run({ ...base, engine: 'baseline' });
  log(`baseline (Node + addon, no model): peak RSS ${MiB(baseline.maxRssKiB * 1024).toFixed(0)} MiB`);
  // The estimate as in the table: the trainer's plan plus the bare process.
  const paired = () => pairedRounds(o.paired ?? 3, (type) => run({ ...base, steps: Math.min(steps, 8), model: models[type], loraEngine: 'v2', checkpointing: 'auto' }),
    baseline.maxRssKiB * 1024, log);
  if (o.pairedOnly) return paired();
  const rows: TrainBenchRow[] = [];
  const add = (engine: string, type: 'f32' | 'f16' | 'q8_0', r: TrainRunResult, estimateBytes: number) => {
    const midStep = [...r.stepSeconds].sort((a, b) => a - b)[Math.floor(r.stepSeconds.length / 2)]!;
    rows.push({ engine, base: type, ...r, tokensPerSecond: r.tokens / r.seconds, medianStepTokensPerSecond: r.tokens / r.steps / midStep, estimateBytes });
    log(`  ${engine} ${type}: ${r.tokens} tokens in ${r.seconds.toFixed(1)} s, mean loss ${r.loss.toFixed(3)}` +
      `${r.checkpointed === undefined ? '' : r.checkpointed ? ' (checkpointed)' : ' (not checkpointed)'}`);
  };
  const variants = [
    { engine: 'weak2strong LoRA v2', job: { loraEngine: 'v2', checkpointing: 'auto' }, types: ['f32', 'f16', 'q8_0'] },
    { engine: 'weak2strong LoRA v2 no-ckpt', job: { loraEngine: 'v2', checkpointing: 'off' }, types: ['f32', 'q8_0'] },
    { engine: 'weak2strong LoRA v2 ckpt', job: { loraEngine: 'v2', checkpointing: 'on' }, types: ['f32', 'q8_0'] },
    { engine: 'weak2strong LoRA v2 ggml OUT_PROD', job: { loraEngine: 'v2', checkpointing: 'off', cpuOutProd: false }, types: ['f32', 'q8_0'] },
    { engine: 'weak2strong LoRA v2 ggml MUL_MAT', job: { loraEngine: 'v2', checkpointing: 'off', cpuGemm: false }, types: ['f32', 'q8_0'] },
    { engine: 'weak2strong LoRA v1 (old)', job: { loraEngine: 'v1' }, types: ['f32', 'q8_0'] },
  ] as const;
  for (const v of variants) {
    for (const type of v.types) {
      const r = run({ ...base, model: models[type], ...v.job });
      // LoRA optimizer state: A/B values, gradient accumulators, AdamW m and v, F32.
      // The estimate is the trainer's own memory plan plus the bare process (Node + addon).
      add(v.engine, type, r, (r.planBytes ?? 0) + baseline.maxRssKiB * 1024);
    }
  }

  // llama_opt_epoch feeds one causal sequence of n_ctx tokens per datapoint, and an AdamW step covers at
  // most one datapoint (n_batch <= n_ctx, opt_period = n_batch / n_ubatch). So "8 × 256 tokens per step"
  // and "independent 256-token sequences" cannot both hold; both layouts are measured, the faster is the peer.
  const trainable = CFG.layers * (2 * CFG.embd * CFG.embd + 2 * CFG.embd * (CFG.embd / CFG.heads) * CFG.kvHeads + 3 * CFG.embd * CFG.ff + 2 * CFG.embd) +
    CFG.embd + CFG.vocab * CFG.embd; // every F32 tensor but token_embd (llama.cpp does not train it)
  const kvDim = (CFG.embd / CFG.heads) * CFG.kvHeads;
  const layouts = [
    { name: `llama.cpp full FT (${batch}×${seqLen} in 1 seq)`, nCtx: stepTokens, nBatch: stepTokens, nUbatch: seqLen, steps },
    { name: `llama.cpp full FT (${seqLen}/step)`, nCtx: seqLen, nBatch: seqLen, nUbatch: seqLen, steps: steps * batch },
  ];
  for (const l of layouts) {
    const { name, ...layout } = l;
    const r = run({ ...base, engine: 'llama-opt', ...layout });
    // Full fine-tune state: gradients, AdamW m and v (+ an accumulator when opt_period > 1); F32 KV cache.
    const opt = trainable * 4 * (l.nBatch > l.nUbatch ? 4 : 3);
    const kv = 2 * CFG.layers * l.nCtx * kvDim * 4;
    add(name, 'f32', r, fs.statSync(models.f32).size + activationBytes(l.nUbatch, l.nCtx) + opt + kv);
  }

  const pad = Math.max(...rows.map((r) => r.engine.length));
  log(`${'engine'.padEnd(pad)}  base   tokens/s  (median step)  seconds  peak RSS MiB  estimate MiB  RSS/est`);
  for (const r of rows) {
    log(`${r.engine.padEnd(pad)}  ${r.base.padEnd(5)} ${r.tokensPerSecond.toFixed(1).padStart(9)}  ${r.medianStepTokensPerSecond.toFixed(1).padStart(13)}  ` +
      `${r.seconds.toFixed(1).padStart(7)}  ${MiB(r.maxRssKiB * 1024).toFixed(0).padStart(12)}  ${MiB(r.estimateBytes).toFixed(0).padStart(12)}  ` +
      `${((r.maxRssKiB * 1024) / r.estimateBytes).toFixed(2).padStart(7)}`);
  }
  // ggml's threads spin-wait at barriers: any other load on these cores distorts the figures badly.
  // Kernel threads alone account for ~1% on an idle machine; beyond 5% the figures are not trustworthy.
  const noisy = otherCpu > 0.05 * ownCpu;
  log(`other processes used ${otherCpu.toFixed(1)} CPU-s while the measurements ran (ours ${ownCpu.toFixed(0)})` +
    `${noisy ? ': the figures are NOT reliable, rerun on an idle machine' : ''}`);
  const best = (key: 'tokensPerSecond' | 'medianStepTokensPerSecond') =>
    rows.filter((r) => r.engine.startsWith('llama.cpp')).sort((a, b) => b[key] - a[key])[0]!;
  const peer = best('tokensPerSecond'), peerMedian = best('medianStepTokensPerSecond');
  log(`peer (the faster llama.cpp layout): ${peer.engine} ${peer.tokensPerSecond.toFixed(1)} tokens/s; by median step: ${peerMedian.engine} ${peerMedian.medianStepTokensPerSecond.toFixed(1)}`);
  for (const r of rows.filter((x) => x.engine.startsWith('weak2strong'))) {
    const speed = r.tokensPerSecond / peer.tokensPerSecond;
    const speedMedian = r.medianStepTokensPerSecond / peerMedian.medianStepTokensPerSecond;
    const mem = (r.maxRssKiB * 1024) / r.estimateBytes;
    log(`${r.engine} ${r.base}: ${speed.toFixed(2)}× the peer's tokens/s (median step ${speedMedian.toFixed(2)}×; target >= 2: ` +
      `${speed >= 2 ? 'met' : 'missed'}); peak RSS ${mem.toFixed(2)}× the estimate (target <= 1.3: ${mem <= 1.3 ? 'met' : 'missed'})`);
  }
  const row = (engine: string, type: string) => rows.find((r) => r.engine === engine && r.base === type)!;
  for (const type of ['f32', 'q8_0'] as const) {
    const [v2, noCkpt, ckpt, ggmlOp, ggmlMm, v1] = ['weak2strong LoRA v2', 'weak2strong LoRA v2 no-ckpt', 'weak2strong LoRA v2 ckpt',
      'weak2strong LoRA v2 ggml OUT_PROD', 'weak2strong LoRA v2 ggml MUL_MAT', 'weak2strong LoRA v1 (old)'].map((e) => row(e, type));
    log(`${type}: v2 ${(v2!.tokensPerSecond / v1!.tokensPerSecond).toFixed(2)}× v1's tokens/s, v2 without checkpointing ` +
      `${(noCkpt!.tokensPerSecond / v1!.tokensPerSecond).toFixed(2)}×, checkpointed ${(ckpt!.tokensPerSecond / v1!.tokensPerSecond).toFixed(2)}×; ` +
      `peak RSS v2 ${MiB(v2!.maxRssKiB * 1024).toFixed(0)}, no-ckpt ${MiB(noCkpt!.maxRssKiB * 1024).toFixed(0)}, ckpt ${MiB(ckpt!.maxRssKiB * 1024).toFixed(0)}, ` +
      `v1 ${MiB(v1!.maxRssKiB * 1024).toFixed(0)} MiB`);
    log(`${type}: the CPU OUT_PROD kernel (no-ckpt) ${(noCkpt!.tokensPerSecond / ggmlOp!.tokensPerSecond).toFixed(2)}× the tokens/s with ggml's OUT_PROD; ` +
      `the CPU GEMM ${(noCkpt!.tokensPerSecond / ggmlMm!.tokensPerSecond).toFixed(2)}× the tokens/s with ggml's MUL_MAT`);
  }
  const w = matmulWork(CFG, seqLen, promptLen);
  log(`matmul work per token (multiply-adds): full fine-tune ${(w.fullFt / 1e6).toFixed(1)}M, LoRA ${(w.lora / 1e6).toFixed(1)}M, ` +
    `checkpointed ${(w.loraCheckpointed / 1e6).toFixed(1)}M: at equal kernel efficiency LoRA would be ${(w.fullFt / w.lora).toFixed(2)}× ` +
    `(${(w.fullFt / w.loraCheckpointed).toFixed(2)}× checkpointed) the full fine-tune's tokens/s`);
  const q8 = row('weak2strong LoRA v2', 'q8_0'), f32 = row('weak2strong LoRA v2', 'f32');
  log(`v2 Q8_0 base / F32 base tokens/s in the table: ${(q8.tokensPerSecond / f32.tokensPerSecond).toFixed(2)} (one run each; one run moves by ` +
    'several % on a shared host, so the target is judged by the alternated rounds below)');
  return [...rows, ...paired()];
}

/**
 * The Q8_0-versus-F32 target measured against this host's noise: `rounds` pairs of runs, alternated. A single
 * pair of runs moved by ±7% between two invocations here (0.93 and 1.00), which is the size of the effect.
 */
function pairedRounds(rounds: number, run: (type: 'f32' | 'q8_0') => TrainRunResult, baselineBytes: number, log: (line: string) => void): TrainBenchRow[] {
  if (!Number.isInteger(rounds) || rounds < 2) throw InvalidArgumentError.expected('integer >= 2 (the noise band needs two F32 runs)', 'paired', rounds);
  const rows: TrainBenchRow[] = [];
  const ratios: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const order = i % 2 === 0 ? (['f32', 'q8_0'] as const) : (['q8_0', 'f32'] as const);
    const rate: Partial<Record<'f32' | 'q8_0', number>> = {};  // tokens/s by median step
    for (const type of order) {
      const r = run(type);
      rate[type] = r.tokens / r.steps / median(r.stepSeconds);
      rows.push({ engine: `weak2strong LoRA v2 (round ${i + 1})`, base: type, ...r, tokensPerSecond: r.tokens / r.seconds, medianStepTokensPerSecond: rate[type]!,
        estimateBytes: (r.planBytes ?? 0) + baselineBytes });
    }
    ratios.push(rate.q8_0! / rate.f32!);
    log(`round ${i + 1} (${order.join(' then ')}): F32 ${rate.f32!.toFixed(1)}, Q8_0 ${rate.q8_0!.toFixed(1)} tokens/s by median step; Q8_0 / F32 ${ratios[i]!.toFixed(3)}`);
  }
  const f32 = rows.filter((r) => r.base === 'f32').map((r) => r.medianStepTokensPerSecond);
  const q8 = rows.filter((r) => r.base === 'q8_0').map((r) => r.medianStepTokensPerSecond);
  // The noise band: how far one F32 run lands from the F32 runs' median (the same job, the same code).
  const f32Median = median(f32);
  const noise = spread(f32);
  const m = median(ratios);
  const pooled = median(q8) / f32Median;
  // "No slower" is judged against what this host can resolve: a median below 1 by less than the F32 runs'
  // own spread is not a measured slowdown.
  const verdict = m >= 1 ? 'met (Q8_0 ahead)' : 1 - m <= noise
    ? `met within the noise (Q8_0 ${(100 * (1 - m)).toFixed(1)}% behind, less than the F32 runs' own ±${(100 * noise).toFixed(1)}%)`
    : `missed (Q8_0 ${(100 * (1 - m)).toFixed(1)}% behind, more than the F32 runs' ±${(100 * noise).toFixed(1)}%)`;
  log(`Q8_0 / F32 over ${rounds} rounds: per round ${ratios.map((r) => r.toFixed(3)).join(', ')}; median ${m.toFixed(3)}, ` +
    `median Q8_0 / median F32 ${pooled.toFixed(3)}; F32 runs ${f32.map((x) => x.toFixed(1)).join(', ')} (spread ±${(100 * noise).toFixed(1)}%). ` +
    `Target Q8_0 >= F32: ${verdict}`);
  return rows;
}
