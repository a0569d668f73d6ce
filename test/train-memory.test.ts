// The memory plan against what a run really uses: peak RSS of a child process that trains one micro-batch of
// the planned shape, minus its RSS before the trainer existed, as a ratio to the plan (absolute figures
// belong to the benchmark); with and without activation checkpointing. And the typed error: a run whose plan
// passes the limit stops before its first step, naming the options that shrink it, with nothing written.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { OutOfMemoryError } from '../lib/errors.js';
import { addon } from '../lib/native.js';
import { trainSft } from '../lib/train/sft.js';
import type { MemoryPlan } from '../lib/train/memory-plan.js';
import type { NativeMemoryPlan } from '../lib/native.js';
import { TMP, tinyModel } from './helpers/models.js';

const child = path.join(path.dirname(fileURLToPath(import.meta.url)), 'helpers', 'train-memory-child.js');
const MiB = (n: number) => (n / 2 ** 20).toFixed(1);

// ~18M parameters in Q8_0 with a 16k vocabulary: a plan of 100-600 MiB, well above Node's own noise.
const SHAPE = { layers: 6, embd: 256, heads: 8, kvHeads: 4, ff: 1024, vocab: 16384, ctx: 1024, type: 'q8_0' } as const;

for (const checkpointing of ['off', 'on'] as const) {
  test(`peak memory of a training step is within 0.7-1.3x its plan (checkpointing ${checkpointing})`, async (t) => {
    const model = await tinyModel(SHAPE);
    const r = spawnSync(process.execPath, [child, model, '384', '4', checkpointing], { encoding: 'utf8' });
    t.is(r.status, 0, r.stderr);
    const { plan, baseline, peak } = JSON.parse(r.stdout.trim().split('\n').pop()!) as { plan: NativeMemoryPlan; baseline: number; peak: number };
    const total = plan.weights + plan.lora + plan.compute + plan.checkpoints;
    const ratio = (peak - baseline) / total;
    t.log(`plan ${MiB(total)} MiB (weights ${MiB(plan.weights)}, LoRA ${MiB(plan.lora)}, compute ${MiB(plan.compute)}, checkpoints ${MiB(plan.checkpoints)}); ` +
      `peak RSS ${MiB(peak)} MiB - ${MiB(baseline)} MiB before = ${MiB(peak - baseline)} MiB: ${ratio.toFixed(2)}x the plan`);
    t.is(plan.checkpointing, checkpointing === 'on');
    t.true(ratio >= 0.7 && ratio <= 1.3);
  });
}

test('a run whose memory plan passes the limit is an OutOfMemoryError naming batch, maxLen and checkpointing; nothing is written', async (t) => {
  const model = await tinyModel();
  const out = path.join(TMP, 'oom.gguf');
  const data = Array.from({ length: 8 }, (_, i) => ({ prompt: `Q: ${i}?`, response: ` ${i} and some answer text` }));
  let seen: MemoryPlan | undefined;
  const e = await t.throwsAsync(trainSft({ model, out, data, batch: 4, threads: 1, checkpointing: 'off', memoryLimit: 1 << 20, onMemoryPlan: (p) => { seen = p; } }), { instanceOf: OutOfMemoryError });
  t.log(e!.message);
  t.is(e!.code, 'ERR_W2S_OUT_OF_MEMORY');
  for (const hint of ['--batch', '--max-len', '--checkpointing on', '--memory-limit']) t.true(e!.message.includes(hint), hint);
  t.is(seen, undefined); // the plan is reported only when training goes ahead
  t.false(fs.existsSync(out));
  t.false(fs.existsSync(`${out}.ckpt`));
  // The same run with room: the plan is reported once, with every part counted.
  const ok = await trainSft({ model, out, data, batch: 4, threads: 1, onMemoryPlan: (p) => { seen = p; } });
  t.truthy(seen);
  t.true(seen!.weightsBytes > 0 && seen!.loraBytes > 0 && seen!.computeBytes > 0);
  t.is(seen!.totalBytes, seen!.weightsBytes + seen!.loraBytes + seen!.computeBytes + seen!.checkpointBytes);
  t.deepEqual(ok.memory, seen);
});

test("checkpointing 'auto' turns on only where the activations pass its budget (default: an eighth of the device memory)", async (t) => {
  const model = await tinyModel(SHAPE);
  // 4 × 384 tokens: activations ~0.55 GiB by the trainer's own estimate, under an eighth of a machine with 4.4+ GiB that
  // runs this suite (>= 4 GiB) but far over a 1 MiB budget.
  const plans: Record<string, boolean> = {};
  for (const [name, extra] of [['default', {}], ['1 MiB budget', { checkpointAutoBytes: 2 ** 20 }], ['64 GiB budget', { checkpointAutoBytes: 64 * 2 ** 30 }]] as const) {
    const tr = await addon().createTrainer(model, { rank: 4, alpha: 8, dropout: 0, targets: 0x7f, seed: 0, threads: 1, checkpointing: 'auto', ...extra });
    try {
      plans[name] = (await tr.plan({ T: 384, B: 4, pairs: false })).checkpointing;
    } finally {
      tr.dispose();
    }
  }
  t.log(`checkpointed: ${JSON.stringify(plans)}; machine memory ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`);
  t.deepEqual(plans, { default: os.totalmem() / 8 < 0.55 * 2 ** 30, '1 MiB budget': true, '64 GiB budget': false });
});
