// The training graph against independent computations: per-token log-probs against llama.cpp's inference
// path (scoring), LoRA gradients against central finite differences, the loss against scoring's sums.
import test from 'ava';
import path from 'node:path';
import { loadModel, type Model } from '../lib/model.js';
import { addon, type NativeTrainer } from '../lib/native.js';
import { makeBatch } from '../lib/train/batches.js';
import { writeLoraAndMerged, writeRandomLora } from './helpers/lora.js';
import { TMP, tinyModel } from './helpers/models.js';
import { FD_STEP, finiteDifferenceCheck, loraGradientCheck } from './helpers/gradcheck.js';

const ITEMS = [
  { prompt: 'Question: Natalia sold 48 clips in April and half as many in May. How many?\nAnswer:', completion: ' 48 / 2 = 24. 48 + 24 = 72. #### 72' },
  { prompt: 'Question: What is 2 + 2?\nAnswer:', completion: ' 4' },
  { prompt: 'Hi', completion: ' there, friend: é' },
];

/** Prompt (with BOS) + completion tokens per item, batched with targets on completion tokens only. */
function batchOf(model: Model, items = ITEMS) {
  const seqs = items.map((it) => {
    return model.tokenizePair(it.prompt, it.completion);
  });
  return makeBatch(seqs, 0);
}

function trainer(file: string, extra: Record<string, unknown> = {}): Promise<NativeTrainer> {
  return addon().createTrainer(file, { rank: 4, alpha: 8, dropout: 0, targets: 0x7f, seed: 3, threads: 2, ...extra });
}

// The architectures the graph trains; 'llama3' is llama with Llama 3.1's rope frequency factors (rope_freqs.weight).
const ARCHS = {
  llama: { arch: 'llama' }, qwen2: { arch: 'qwen2' }, qwen3: { arch: 'qwen3' },
  llama3: { arch: 'llama', ropeFreqs: 'llama3', ropeTheta: 500000 },
} as const;

for (const [arch, config] of Object.entries(ARCHS)) {
  test(`${arch}: training-graph log-probs equal the inference path within 1e-4, with and without an adapter`, async (t) => {
    const file = await tinyModel(config);
    const adapter = await writeRandomLora(file, path.join(TMP, `parity-${arch}.gguf`), {
      targets: { 0: ['attn_q', 'attn_k', 'attn_v', 'attn_output'], 1: ['ffn_gate', 'ffn_up', 'ffn_down'] }, std: 0.1,
    });
    const model = await loadModel(file);
    const lora = await model.loadLora(adapter);
    const batch = batchOf(model);
    for (const [label, initAdapter, use] of [['base', undefined, undefined], ['adapter', adapter, lora]] as const) {
      const tr = await trainer(file, initAdapter ? { initAdapter } : {});
      const ours = await tr.logprobs({ ...batch, useLora: true });
      const ref = (await model.score(ITEMS, use ? { lora: use } : {})).flatMap((s) => Array.from(s.logprobs));
      t.is(ours.length, ref.length);
      const maxDiff = ref.reduce((m, r, i) => Math.max(m, Math.abs(r - ours[i]!)), 0);
      t.log(`${arch} ${label}: ${ref.length} tokens, max |train graph - inference| = ${maxDiff.toExponential(2)}`);
      t.true(maxDiff < 1e-4);
      tr.dispose();
    }
    model.dispose();
  });
}

test('the SFT loss is the sum of -log p over response tokens only (prompt positions carry no loss)', async (t) => {
  const file = await tinyModel();
  const model = await loadModel(file);
  const tr = await trainer(file);
  const batch = batchOf(model);
  const { lossSum, nTargets } = await tr.accumulate({ ...batch, lossScale: 1 });
  const scores = await model.score(ITEMS);
  const ref = -scores.reduce((a, s) => a + s.sum, 0);
  t.is(nTargets, scores.reduce((a, s) => a + s.tokens, 0));
  t.log(`loss ${lossSum.toFixed(6)} vs -Σ scoring log-probs ${ref.toFixed(6)}`);
  t.true(Math.abs(lossSum - ref) < 1e-3);
  // Every position before the last prompt token has no target, so no prompt token is ever predicted.
  ITEMS.forEach((it, b) => {
    const { nPrompt } = model.tokenizePair(it.prompt, it.completion);
    for (let p = 0; p < nPrompt - 1; p++) t.is(batch.targets[b * batch.T + p], -1);
  });
  // A target placed on a prompt position is not ignored silently: it adds exactly its own -log p.
  const leaked = { ...batch, targets: Int32Array.from(batch.targets) };
  leaked.targets[1] = batch.tokens[2]!;
  tr.clearGrads();
  const withLeak = await tr.accumulate({ ...leaked, lossScale: 1 });
  t.is(withLeak.nTargets, nTargets + 1);
  t.true(withLeak.lossSum > lossSum);
  tr.clearGrads();
  model.dispose();
  tr.dispose();
});

for (const [arch, config] of Object.entries(ARCHS)) {
  test(`${arch}: LoRA gradients equal central finite differences`, async (t) => {
    const file = await tinyModel(config);
    const model = await loadModel(file);
    const tr = await trainer(file);
    const batch = batchOf(model);
    // Random B as well (B = 0 would make every A-gradient exactly zero).
    const { worst, n } = await loraGradientCheck(tr, batch);
    t.log(`${arch}: ${n} parameters, worst relative difference ${worst.toExponential(2)} (h = ${FD_STEP})`);
    t.true(worst < 2e-2);
    model.dispose();
    tr.dispose();
  });
}

// The factors change only slow rotations (wavelengths past 2,048 positions), so their effect shows at long
// range: a 600-token item, where ignoring them would be caught, and the training graph still matches.
test('llama3 rope factors matter at long range, and the training graph applies them', async (t) => {
  const config = { ...ARCHS.llama3, ropeTheta: 10000, ctx: 1024 };
  const file = await tinyModel(config);
  const withFactors = await loadModel(file);
  const without = await loadModel(await tinyModel({ arch: 'llama', ropeTheta: 10000, ctx: 1024 }));
  const long = [{ prompt: 'Question: count.\nAnswer:', completion: ' 1 2 3 4 5 6 7 8 9 10'.repeat(30) }];
  const a = (await withFactors.score(long)).flatMap((s) => Array.from(s.logprobs));
  const b = (await without.score(long)).flatMap((s) => Array.from(s.logprobs));
  const ignored = a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i]!)), 0);
  const tr = await trainer(file);
  const ours = await tr.logprobs({ ...batchOf(withFactors, long), useLora: true });
  const parity = a.reduce((m, x, i) => Math.max(m, Math.abs(x - ours[i]!)), 0);
  t.log(`${a.length} tokens: max |train graph - inference| = ${parity.toExponential(2)}; without the factors the inference differs by ${ignored.toExponential(2)}`);
  t.true(ignored > 1e-3);
  t.true(parity < 1e-4);
  tr.dispose();
  withFactors.dispose();
  without.dispose();
});

// The output head as a LoRA target (bit 7): the training graph, llama.cpp with the adapter, and the merged
// weights must agree; its gradients must match finite differences; a tied head is refused.
test('output-head LoRA: log-probs equal llama.cpp with the adapter and the merged model; gradients equal finite differences', async (t) => {
  const file = await tinyModel();
  const { adapter, merged } = await writeLoraAndMerged(file, TMP, 'head', { targets: { 1: ['ffn_down'] }, output: true, std: 0.1 });
  const model = await loadModel(file);
  const mergedModel = await loadModel(merged);
  const batch = batchOf(model);
  const tr = await trainer(file, { initAdapter: adapter });
  const ours = await tr.logprobs({ ...batch, useLora: true });
  const noHead = await trainer(file, { initAdapter: await writeRandomLora(file, path.join(TMP, 'nohead.gguf'), { targets: { 1: ['ffn_down'] }, std: 0.1 }) });
  const withoutHead = await noHead.logprobs({ ...batch, useLora: true });
  const ref = (await model.score(ITEMS, { lora: await model.loadLora(adapter) })).flatMap((s) => Array.from(s.logprobs));
  const refMerged = (await mergedModel.score(ITEMS)).flatMap((s) => Array.from(s.logprobs));
  const diff = (a: ArrayLike<number>) => ref.reduce((m, r, i) => Math.max(m, Math.abs(r - a[i]!)), 0);
  t.log(`max |train graph - llama.cpp + adapter| = ${diff(ours).toExponential(2)}, |merged - adapter| = ${diff(refMerged).toExponential(2)}, head's effect ${diff(withoutHead).toExponential(2)}`);
  t.true(diff(ours) < 1e-4);
  t.true(diff(refMerged) < 1e-4);
  t.true(diff(withoutHead) > 1e-2); // the head's pair is really applied by both paths

  const fresh = await trainer(file, { targets: 0xff });
  const p0 = fresh.getParams();
  const seven = await trainer(file);
  const headLen = p0.length - seven.getParams().length;
  t.is(headLen, 4 * (64 + model.info.nVocab)); // A [n_embd, r] and B [r, n_vocab], after the blocks' pairs
  let s = 11;
  for (let i = 0; i < p0.length; i++) if (p0[i] === 0) p0[i] = (((s = (s * 16807) % 2147483647) / 2147483647) - 0.5) * 0.1;
  fresh.setParams(p0);
  await fresh.accumulate({ ...batch, lossScale: 1 });
  const grad = fresh.getGrads();
  const loss = async (p: Float32Array) => {
    fresh.setParams(p);
    return -(await fresh.logprobs({ ...batch, useLora: true })).reduce((a, b) => a + b, 0);
  };
  const head = p0.length - headLen;
  const { worst, n } = await finiteDifferenceCheck(p0.subarray(head), grad.subarray(head), async (q) => {
    const p = Float32Array.from(p0);
    p.set(q, head);
    return loss(p);
  }, () => 0.05);
  t.log(`head: ${n} parameters, worst relative difference ${worst.toExponential(2)} (h = ${FD_STEP})`);
  t.true(worst < 2e-2);
  await t.throwsAsync(async () => addon().createTrainer(await tinyModel({ arch: 'qwen2' }), { rank: 4, alpha: 8, dropout: 0, targets: 0xff, seed: 3, threads: 2 }), { message: /tied to the token embeddings/ });
  for (const x of [tr, noHead, fresh, seven]) x.dispose();
  model.dispose();
  mergedModel.dispose();
});
