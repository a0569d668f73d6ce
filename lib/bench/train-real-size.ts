// `w2s bench train-real`: one real-size training run, the Qwen2.5-0.5B shape in Q8_0 (494M parameters,
// 151,936-token vocabulary, 24 layers), micro-batches of 4 × 512 tokens: peak RSS, tokens/s and the memory
// plan of the v2 engine (as users get it) against the v1 engine (ggml autodiff's OUT_PROD, dense head, no
// checkpointing) measured in the same run, each in its own process. Target: v2's peak RSS <= 1.5 × the
// weights + 0.5 GB.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createModel } from '../model/create.js';
import { tokenStream } from './train-bench.js';
import type { TrainRunJob, TrainRunResult } from './train-runner.js';

export interface RealSizeBenchOptions {
  /** Optimizer steps of the v2 engine (v1 runs one: it is the slow, memory-hungry reference). Defaults to 2. */
  steps?: number;
  threads?: number;
  log?: (line: string) => void;
}

const QWEN05 = { arch: 'qwen2', layers: 24, embd: 896, heads: 14, kvHeads: 2, ff: 4864, vocab: 151936, ctx: 4096, type: 'q8_0', seed: 5 } as const;

export async function runRealSizeTrainBench(o: RealSizeBenchOptions = {}): Promise<Array<TrainRunResult & { engine: string }>> {
  const log = o.log ?? ((line: string) => process.stderr.write(line + '\n'));
  const steps = o.steps ?? 2, threads = o.threads ?? 1, batch = 4, seqLen = 512;
  const dir = path.join(os.tmpdir(), 'weak2strong-bench');
  fs.mkdirSync(dir, { recursive: true });
  const model = path.join(dir, 'bench-qwen2-0.5b-shape-q8_0.gguf');
  if (!fs.existsSync(model)) {
    const t0 = performance.now();
    await createModel({ ...QWEN05, out: model });
    log(`created ${model} in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  }
  const weights = fs.statSync(model).size;
  const tokensFile = await tokenStream(model, dir, steps * batch * seqLen + 1);
  const runner = path.join(path.dirname(fileURLToPath(import.meta.url)), 'train-runner.js');
  const base: TrainRunJob = { engine: 'lora', model, tokensFile, steps, threads, lr: 1e-4, batch, seqLen, promptLen: 64, rank: 8, nCtx: seqLen, nBatch: seqLen, nUbatch: seqLen, budgetAdapter: '' };
  const rows: Array<TrainRunResult & { engine: string }> = [];
  const GB = (b: number) => (b / 1e9).toFixed(2);
  log(`${path.basename(model)}: ${GB(weights)} GB of weights; ${batch} × ${seqLen} tokens per step (prompt 64 without loss), rank 8, ${threads} thread(s)`);
  for (const [engine, job] of [['v2', { loraEngine: 'v2', steps }], ['v1 (old)', { loraEngine: 'v1', steps: 1 }]] as const) {
    const r = spawnSync(process.execPath, [runner, JSON.stringify({ ...base, ...job })], { encoding: 'utf8', maxBuffer: 1 << 24 });
    if (r.status !== 0) {
      log(`  ${engine}: failed (${(r.stderr ?? String(r.error)).trim().split('\n').slice(-2).join(' | ')})`);
      continue;
    }
    const res = JSON.parse(r.stdout.trim().split('\n').pop()!) as TrainRunResult;
    rows.push({ engine, ...res });
    const peak = res.maxRssKiB * 1024;
    log(`  ${engine}: ${(res.tokens / res.seconds).toFixed(1)} tokens/s over ${res.steps} step(s); peak RSS ${GB(peak)} GB = ${(peak / weights).toFixed(2)} × the weights; ` +
      `memory plan ${GB(res.planBytes ?? 0)} GB (peak / plan ${(peak / (res.planBytes ?? 1)).toFixed(2)})`);
  }
  const v2 = rows.find((r) => r.engine === 'v2');
  if (v2) {
    const target = 1.5 * weights + 0.5e9;
    log(`v2 peak RSS ${GB(v2.maxRssKiB * 1024)} GB; target 1.5 × weights + 0.5 GB = ${GB(target)} GB: ${v2.maxRssKiB * 1024 <= target ? 'met' : 'missed'}`);
  }
  const v1 = rows.find((r) => r.engine !== 'v2');
  if (v1 && v2) log(`v2 / v1: peak RSS ${(v2.maxRssKiB / v1.maxRssKiB).toFixed(2)}×, tokens/s ${((v2.tokens / v2.seconds) / (v1.tokens / v1.seconds)).toFixed(2)}×`);
  return rows;
}
