// One measurement of `w2s bench train` in its own process, so its peak RSS is its own: weak2strong's LoRA
// trainer, llama.cpp's llama_opt_epoch (full fine-tune), or the bare addon (the baseline RSS of Node + libraries).
// Usage: node train-runner.js '<json TrainRunJob>'  -> one JSON line {seconds, tokens, steps, loss, nParams, stepSeconds, maxRssKiB, cpuSeconds}
import fs from 'node:fs';
import { addon } from '../native.js';
import { makeBatch, type Sequence } from '../train/batches.js';

export interface TrainRunJob {
  engine: 'lora' | 'llama-opt' | 'baseline';
  model: string;
  /** Little-endian Int32 token stream. */
  tokensFile: string;
  steps: number;
  threads: number;
  lr: number;
  /** lora: sequences per step, tokens per sequence, prompt tokens (no loss) per sequence, rank. */
  batch: number;
  seqLen: number;
  promptLen: number;
  rank: number;
  /** llama-opt: context (one causal sequence per datapoint), tokens per AdamW step, tokens per physical batch. */
  nCtx: number;
  nBatch: number;
  nUbatch: number;
  /** llama-opt: a LoRA adapter of the model, loaded (never applied) only to raise llama.cpp's graph node budget. */
  budgetAdapter: string;
  /** lora: the engine: 'v2' (default options) or 'v1' (ggml autodiff's OUT_PROD, dense head, no checkpointing). */
  loraEngine?: 'v2' | 'v1';
  /** lora v2: activation checkpointing (default 'auto'). */
  checkpointing?: 'auto' | 'on' | 'off';
  /** lora v2: the addon's CPU OUT_PROD kernel (default true) or ggml's. */
  cpuOutProd?: boolean;
  /** lora v2: the addon's packed CPU GEMM (default true) or ggml's MUL_MAT. */
  cpuGemm?: boolean;
}

export interface TrainRunResult {
  seconds: number;
  tokens: number;
  steps: number;
  loss: number;
  nParams: number;
  /** Wall time of each optimizer step, s. */
  stepSeconds: number[];
  /** Peak resident set of this process, KiB. */
  maxRssKiB: number;
  /** CPU time of this process (user + system), s: the parent compares it with the machine's busy time. */
  cpuSeconds: number;
  /** lora: the trainer's memory plan of the step shape (weights + LoRA state + compute + checkpoints), bytes. */
  planBytes?: number;
  /** lora: whether the step shape ran checkpointed (what 'auto' chose). */
  checkpointed?: boolean;
}

function readTokens(file: string): Int32Array {
  const buf = fs.readFileSync(file);
  return new Int32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
}

async function runLora(job: TrainRunJob, stream: Int32Array): Promise<Omit<TrainRunResult, 'maxRssKiB' | 'cpuSeconds'>> {
  const trainer = await addon().createTrainer(job.model, { rank: job.rank, alpha: 2 * job.rank, dropout: 0, targets: 0x7f, seed: 0, threads: job.threads,
    ...(job.loraEngine === 'v1' ? { frozenGrad: 'out_prod', head: 'dense', checkpointing: 'off' } as const : { checkpointing: job.checkpointing ?? 'auto', cpuOutProd: job.cpuOutProd ?? true, cpuGemm: job.cpuGemm ?? true }) });
  try {
    // Sequence k = stream[k·seqLen, +seqLen): every token is real (no padding), the first promptLen carry no loss.
    const seq = (k: number): Sequence => ({ tokens: Array.from(stream.subarray(k * job.seqLen, (k + 1) * job.seqLen)), nPrompt: job.promptLen });
    const batches = Array.from({ length: job.steps }, (_, s) => makeBatch(Array.from({ length: job.batch }, (_, b) => seq(s * job.batch + b)), 0));
    let tokens = 0;
    let loss = 0;
    const stepSeconds: number[] = [];
    const t0 = performance.now();
    for (const b of batches) {
      const s0 = performance.now();
      const r = await trainer.accumulate({ ...b, lossScale: 1 / b.nTargets });
      await trainer.step({ lr: job.lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, clip: 1 });
      stepSeconds.push((performance.now() - s0) / 1000);
      tokens += b.nTokens;
      loss += r.lossSum / r.nTargets;
    }
    const seconds = (performance.now() - t0) / 1000;
    const p = await trainer.plan({ T: job.seqLen, B: job.batch, pairs: false });
    const planBytes = p.weights + p.lora + p.compute + p.checkpoints;
    return { seconds, tokens, steps: job.steps, loss: loss / job.steps, nParams: trainer.info().nParams, stepSeconds, planBytes, checkpointed: p.checkpointing };
  } finally {
    trainer.dispose();
  }
}

async function main(): Promise<void> {
  const job = JSON.parse(process.argv[2]!) as TrainRunJob;
  let r: Omit<TrainRunResult, 'maxRssKiB' | 'cpuSeconds'>;
  if (job.engine === 'baseline') {
    addon();
    r = { seconds: 0, tokens: 0, steps: 0, loss: 0, nParams: 0, stepSeconds: [] };
  } else if (job.engine === 'lora') {
    r = await runLora(job, readTokens(job.tokensFile));
  } else {
    const o = await addon().benchLlamaOpt(job.model, {
      tokens: readTokens(job.tokensFile), nCtx: job.nCtx, nBatch: job.nBatch, nUbatch: job.nUbatch, steps: job.steps, threads: job.threads, lr: job.lr,
      budgetAdapter: job.budgetAdapter,
    });
    r = { ...o, nParams: 0, stepSeconds: Array.from(o.stepSeconds) };
  }
  const u = process.resourceUsage();
  const out: TrainRunResult = { ...r, maxRssKiB: u.maxRSS, cpuSeconds: (u.userCPUTime + u.systemCPUTime) / 1e6 };
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((err) => {
  process.stderr.write(String(err?.stack ?? err) + '\n');
  process.exit(1);
});
