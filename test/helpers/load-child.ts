// Child process for tests that hand possibly-bad GGUFs to llama.cpp or the trainer: a GGML_ASSERT would abort
// the process, so it must not be ava's. Reads a JSON list of cases (argv[2]), runs them in order and prints
// `START <id>` before and `RESULT <json>` after each, so an abort names its case; a case running past its
// time prints `TIMEOUT <id>` and exits 124.
import fs from 'node:fs';
import path from 'node:path';
import { W2sError } from '../../lib/errors.js';
import { mergeAdapterFile } from '../../lib/lora/merge.js';
import { loadModel } from '../../lib/model.js';
import { addon, mapNativeError } from '../../lib/native.js';
import { trainSft } from '../../lib/train/sft.js';

/**
 * load/vocab/sample/score/lora: through loadModel (the gate, then llama.cpp); train/merge: trainSft and
 * mergeAdapterFile; native-train: the addon's trainer directly (no TS gate) for one accumulate + step.
 */
export type ChildAction = 'load' | 'vocab' | 'sample' | 'score' | 'lora' | 'train' | 'merge' | 'native-train';

export interface ChildCase {
  id: string;
  action: ChildAction;
  model: string;
  /** Adapter for 'lora' and 'merge'; the init adapter for 'train'. */
  lora?: string;
  /** Output folder for 'train' and 'merge'. */
  outDir?: string;
  timeoutMs?: number;
}

export interface ChildResult {
  id: string;
  ok: boolean;
  ms: number;
  /** For failures: the error's class name, code and message, and whether it is a W2sError. */
  name?: string;
  code?: string;
  message?: string;
  typed?: boolean;
}

const DATA = Array.from({ length: 4 }, (_, i) => ({ prompt: `Q: ${i} + 1?\nA:`, response: ` ${i + 1}` }));

async function run(c: ChildCase): Promise<void> {
  const out = (name: string) => path.join(c.outDir ?? path.dirname(c.model), `${c.id.replace(/[^\w.-]/g, '_')}.${name}`);
  switch (c.action) {
    case 'train':
      await trainSft({ model: c.model, ...(c.lora ? { lora: c.lora } : {}), out: out('adapter.gguf'), data: DATA, batch: 2, maxSteps: 2, threads: 1, warmupRatio: 0, maxLen: 64, seed: 1 });
      return;
    case 'merge':
      await mergeAdapterFile(c.model, c.lora!, out('merged.gguf'));
      return;
    case 'native-train': {
      let tr;
      try {
        tr = await addon().createTrainer(c.model, { rank: 4, alpha: 8, dropout: 0, targets: 0x7f, seed: 1, threads: 1, ...(c.lora ? { initAdapter: c.lora } : {}) });
      } catch (err) {
        throw mapNativeError(err, `setting up training on ${c.model}`);
      }
      try {
        await tr.accumulate({ T: 4, B: 1, tokens: Int32Array.from([1, 5, 6, 7]), targets: Int32Array.from([5, 6, 7, -1]), lossScale: 1 });
        await tr.step({ lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, clip: 1 });
      } catch (err) {
        throw mapNativeError(err, 'a training step'); // e.g. NaN weights: TrainingDivergedError
      } finally {
        tr.dispose();
      }
      return;
    }
    default:
  }
  const model = await loadModel(c.model, { vocabOnly: c.action === 'vocab' });
  try {
    if (c.action === 'vocab') model.tokenize('Hello world');
    if (c.action === 'sample') await model.sample(['Hello'], { n: 1, maxTokens: 3, threads: 1, seed: 1, contextSize: 64 });
    if (c.action === 'score') await model.score([{ prompt: 'Hello', completion: ' world' }], { threads: 1, contextSize: 64 });
    if (c.action === 'lora') {
      const lora = await model.loadLora(c.lora!);
      await model.score([{ prompt: 'Hello', completion: ' world' }], { threads: 1, contextSize: 64, lora });
    }
  } finally {
    model.dispose();
  }
}

const cases = JSON.parse(fs.readFileSync(process.argv[2]!, 'utf8')) as ChildCase[];
for (const c of cases) {
  process.stdout.write(`START ${c.id}\n`);
  const timer = setTimeout(() => {
    process.stdout.write(`TIMEOUT ${c.id}\n`);
    process.exit(124);
  }, c.timeoutMs ?? 30_000);
  const t0 = performance.now();
  let result: ChildResult;
  try {
    await run(c);
    result = { id: c.id, ok: true, ms: performance.now() - t0 };
  } catch (err) {
    const e = err as Error & { code?: string };
    result = { id: c.id, ok: false, ms: performance.now() - t0, name: e?.name ?? typeof err, code: e?.code, message: String(e?.message ?? err), typed: err instanceof W2sError };
  }
  clearTimeout(timer);
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
}
