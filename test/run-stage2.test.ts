// `w2s run` through Stage II on models that answer: a tiny model taught to answer "#### 5" (adapter merged
// into its weights) is both weak and strong, so Stage I keeps questions, M_plus's samples at T = 0.5 mostly
// agree with the weak answer, and the ones that stray become rejected sides: pairs exist and the
// preference step trains M_pro.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { parseConfig } from '../lib/pipeline/run/config.js';
import { runMethod } from '../lib/pipeline/run/method.js';
import { trainSft } from '../lib/train/sft.js';
import { mergeAdapterFile } from './helpers/lora.js';
import { TMP, tinyModel } from './helpers/models.js';
import { dataTest, gsm8kDataYaml } from './helpers/shared-data.js';

async function answeringModel(): Promise<string> {
  const base = await tinyModel({ ctx: 1024, seed: 21 });
  const rows = Array.from({ length: 24 }, (_, i) => ({ prompt: `Question: How many apples does person ${i} have?\nAnswer:`, response: ' #### 5' }));
  const adapter = path.join(TMP, 'five.gguf');
  await trainSft({ model: base, data: rows, out: adapter, epochs: 25, batch: 8, lr: 5e-3, seed: 1, threads: 2, warmupRatio: 0 });
  const merged = path.join(TMP, 'five-merged.gguf');
  await mergeAdapterFile(base, adapter, merged);
  return merged;
}

dataTest('w2s run reaches Stage II: pairs from majority votes, ORPO from M_plus, M_pro evaluated', async (t) => {
  const model = await answeringModel();
  const file = path.join(TMP, 'stage2.yaml');
  fs.writeFileSync(file, [
    `out: ${JSON.stringify(path.join(TMP, 'stage2-run'))}`,
    `weak: { model: ${JSON.stringify(model)} }`,
    `strong: { model: ${JSON.stringify(model)} }`,
    ...gsm8kDataYaml({ train1: 8, train2: 16, test: 8 }),
    'prompt: { shots: 0 }',
    'generation: { maxTokens: 12, threads: 2 }',
    'train: { weak: { lr: 1.0e-6, maxLen: 256 }, strong: { lr: 1.0e-6, maxLen: 256 }, preference: { batch: 2, maxLen: 256 } }',
    'stage2: { samples: 8, minConfidence: 0.5, temperature: 0.5 }',
    'baselines: { fullWeakFt: false, ceiling: false }',
    '',
  ].join('\n'));
  const cfg = parseConfig(fs.readFileSync(file, 'utf8'), file);
  const r = await runMethod(cfg, { start() {}, progress() {}, end() {} });
  const stat = (name: string) => r.steps.find((s) => s.name === name)?.stats as Record<string, number> | undefined;
  t.log(JSON.stringify({ dWeak: stat('02-d-weak'), select: stat('04-select-1'), sample: stat('20-stage2-sample'), pairs: stat('21-pairs') }));
  t.true(stat('04-select-1')!.kept > 0);
  const pairs = JSON.parse(fs.readFileSync(path.join(cfg.out, '21-pairs', 'pairs.json'), 'utf8')) as { output: [string, string] }[];
  t.true(pairs.length > 0);
  t.is(pairs.length, stat('21-pairs')!.pairs);
  for (const p of pairs) t.not(p.output[0], p.output[1]);
  const pro = stat('22-stage2-orpo')!;
  t.is(pro.pairs, pairs.length);
  t.true(fs.existsSync(path.join(cfg.out, '22-stage2-orpo', 'adapter.gguf')));
  t.is(typeof (r.metrics.accuracy as Record<string, number>).stage2, "number");
});
