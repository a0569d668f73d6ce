// DPO and ORPO on the LoRA engine against independent computations: losses from llama.cpp's inference path
// (Model.score) with the formulas written out here, gradients against central finite differences of the
// forward-only path, ln 2 at the start of DPO, margins measured by inference after training, the data
// layer's skips, the reference saved with the run, and finite values where ORPO's log(1 - p) would be -inf.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readGgufMetadata } from '../lib/gguf/reader.js';
import { writeGguf } from '../lib/gguf/writer.js';
import { loadModel, type LoraAdapter, type Model } from '../lib/model.js';
import { addon, type NativeTrainer } from '../lib/native.js';
import { makeBatch, type Sequence } from '../lib/train/batches.js';
import { toPreferencePair, tokenizePairs, type PreferencePair } from '../lib/train/preference-data.js';
import { trainDpo, trainOrpo } from '../lib/train/preference.js';
import { epochOrder } from '../lib/train/batches.js';
import { poisonTokenEmbedding } from './helpers/convert.js';
import { writeRandomLora } from './helpers/lora.js';
import { TMP, tinyModel } from './helpers/models.js';
import { finiteDifferenceCheck } from './helpers/gradcheck.js';

const PAIRS: PreferencePair[] = [
  { prompt: 'Question: What is 2 + 2?\nAnswer:', chosen: ' 2 + 2 = 4. #### 4', rejected: ' 2 + 2 = 5. #### 5' },
  { prompt: 'Question: Natalia sold 48 clips in April and half as many in May. How many?\nAnswer:', chosen: ' 48 / 2 = 24. 48 + 24 = 72. #### 72', rejected: ' 48 + 48 = 96. #### 96' },
  { prompt: 'Hi', chosen: ' there, friend', rejected: ' go away: é' },
];
const TRAIN: PreferencePair[] = Array.from({ length: 8 }, (_, i) => ({
  prompt: `Question: What is ${i} + ${i + 3}?\nAnswer:`,
  chosen: ` ${i} + ${i + 3} = ${2 * i + 3}. #### ${2 * i + 3}`,
  rejected: ` ${i} + ${i + 3} = ${2 * i + 5}. #### ${2 * i + 5}`,
}));
const out = (name: string) => path.join(TMP, `pref-${name}`);
const BASE = { batch: 4, lr: 5e-3, seed: 1, threads: 1, warmupRatio: 0 } as const;
const ADAPTED = { 0: ['attn_q', 'attn_k', 'attn_v', 'attn_output'], 1: ['ffn_gate', 'ffn_up', 'ffn_down'] } as const;

// ---- the formulas, written out independently of lib/train/preference.ts --------------------------------------
const logSigmoid = (x: number) => (x >= 0 ? -Math.log1p(Math.exp(-x)) : x - Math.log1p(Math.exp(x)));
const dpoLoss = (pc: number, pr: number, rc: number, rr: number, beta: number) => -logSigmoid(beta * ((pc - rc) - (pr - rr)));
/** log(p / (1 - p)) for p = exp(l), l clamped to <= -1e-4 as documented for the native graph. */
const logOdds = (l: number) => { const m = Math.min(l, -1e-4); return m - Math.log(-Math.expm1(m)); };
const orpoOdds = (lc: number, lr: number) => -logSigmoid(logOdds(lc) - logOdds(lr));
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).reduce((m, x, i) => Math.max(m, Math.abs(x - b[i]!)), 0);

/** Tokenized pairs (training convention) as one interleaved batch: 2i chosen, 2i+1 rejected. */
function pairBatch(model: Model, pairs: readonly PreferencePair[]) {
  const t = tokenizePairs(model, pairs, 1024);
  const seqs: Sequence[] = t.pairs.flatMap((p) => [p.chosen, p.rejected]);
  return { ...makeBatch(seqs, 0), n: seqs.map((s) => s.tokens.length - s.nPrompt) };
}

/** Σ log p of every pair's [chosen, rejected] response + EOS through llama.cpp's inference path. */
async function scoreSums(model: Model, pairs: readonly PreferencePair[], lora?: LoraAdapter) {
  const items = pairs.flatMap((p) => [p.chosen, p.rejected]).map((c, k) => ({ prompt: pairs[k >> 1]!.prompt, completion: `${c}</s>` }));
  const scores = await model.score(items, { parseSpecial: true, ...(lora ? { lora } : {}) });
  return { sums: scores.map((s) => s.sum), tokens: scores.map((s) => s.tokens) };
}

/** Σ log p per sequence from the trainer's per-token forward path (host log-softmax), for finite differences. */
async function forwardSums(tr: NativeTrainer, batch: ReturnType<typeof pairBatch>) {
  const lp = await tr.logprobs({ ...batch, useLora: true });
  const sums: number[] = [];
  let k = 0;
  for (const n of batch.n) {
    let s = 0;
    for (let i = 0; i < n; i++) s += lp[k++]!;
    sums.push(s);
  }
  return sums;
}

/** Seeded uniform noise in [-a, a]. */
function perturb(p: Float32Array, a: number, seed: number): Float32Array {
  let s = seed;
  return p.map((x) => x + (((s = (s * 16807) % 2147483647) / 2147483647) * 2 - 1) * a);
}

/** finiteDifferenceCheck with the floor relative to the largest gradient entry; restores p0 afterwards. */
async function gradCheck(tr: NativeTrainer, p0: Float32Array, grad: Float32Array, loss: (p: Float32Array) => Promise<number>) {
  const r = await finiteDifferenceCheck(p0, grad, loss, (gmax) => 0.02 * gmax);
  tr.setParams(p0);
  return r;
}

function trainer(file: string, extra: Record<string, unknown> = {}): Promise<NativeTrainer> {
  return addon().createTrainer(file, { rank: 4, alpha: 8, dropout: 0, targets: 0x7f, seed: 3, threads: 1, ...extra });
}

test('the training tokenization matches scoring of response + EOS (the convention both sides of these tests use)', async (t) => {
  const model = await loadModel(await tinyModel());
  const batch = pairBatch(model, PAIRS);
  const { tokens } = await scoreSums(model, PAIRS);
  t.deepEqual(batch.n, tokens);
  model.dispose();
});

test('DPO loss at step 0 is ln 2 (policy = reference), with a non-trivial starting adapter and gradient accumulation', async (t) => {
  const model = await tinyModel();
  const init = await writeRandomLora(model, out('init0.gguf'), { targets: ADAPTED, std: 0.1 });
  const r = await trainDpo({ ...BASE, model, data: TRAIN, lora: init, out: out('ln2.gguf'), batch: 2, gradAccum: 2, maxSteps: 1 });
  const h = r.history[0]!;
  t.log(`step 1 loss ${h.loss} vs ln 2 ${Math.LN2}: diff ${Math.abs(h.loss - Math.LN2).toExponential(2)}; ` +
    `rewards/chosen ${h['rewards/chosen']!.toExponential(2)}, rewards/rejected ${h['rewards/rejected']!.toExponential(2)}`);
  t.true(Math.abs(h.loss - Math.LN2) < 1e-5);
  t.true(Math.abs(h['rewards/chosen']!) < 1e-5 && Math.abs(h['rewards/rejected']!) < 1e-5);
});

test('DPO: loss equals the formula on llama.cpp scores and gradients equal finite differences (non-trivial reference)', async (t) => {
  const file = await tinyModel();
  const init = await writeRandomLora(file, out('init1.gguf'), { targets: ADAPTED, std: 0.1, seed: 5 });
  const model = await loadModel(file);
  const tr = await trainer(file, { initAdapter: init });
  const batch = pairBatch(model, PAIRS);
  const P = PAIRS.length;
  const beta = 0.5;

  // Reference = the starting adapter, scored by llama.cpp; the trainer's own reference path agrees.
  const ref = (await scoreSums(model, PAIRS, await model.loadLora(init))).sums;
  const own = await tr.sequenceLogprobs({ ...batch, useLora: true });
  t.log(`reference log-probs: max |sequenceLogprobs - llama.cpp| = ${maxAbsDiff(own, ref).toExponential(2)}`);
  t.true(maxAbsDiff(own, ref) < 1e-3);

  // Move the policy away from the reference, then compare against llama.cpp scoring of the moved adapter.
  const p0 = perturb(tr.getParams(), 0.05, 11);
  tr.setParams(p0);
  await tr.saveAdapter(out('moved.gguf'));
  const pol = (await scoreSums(model, PAIRS, await model.loadLora(out('moved.gguf')))).sums;
  const refLogps = Float64Array.from(ref);
  const r = await tr.accumulatePairs({ ...batch, kind: 'dpo', beta, lambda: 0, refLogps, lossScale: 1 / P });
  const expected = mean(PAIRS.map((_, i) => dpoLoss(pol[2 * i]!, pol[2 * i + 1]!, ref[2 * i]!, ref[2 * i + 1]!, beta)));
  t.log(`DPO loss ${(r.lossSum / P).toFixed(6)} vs formula on llama.cpp scores ${expected.toFixed(6)} (β ${beta}); ` +
    `policy log-probs max diff ${maxAbsDiff(r.logps, pol).toExponential(2)}`);
  t.true(Math.abs(r.lossSum / P - expected) < 1e-4);
  t.true(Math.abs(expected - Math.LN2) > 0.05); // the check is not at the trivial point
  t.true(maxAbsDiff(r.logps, pol) < 1e-3);

  const grad = tr.getGrads();
  tr.clearGrads();
  const { worst, n, gmax } = await gradCheck(tr, p0, grad, async (p) => {
    tr.setParams(p);
    const s = await forwardSums(tr, batch);
    return mean(PAIRS.map((_, i) => dpoLoss(s[2 * i]!, s[2 * i + 1]!, refLogps[2 * i]!, refLogps[2 * i + 1]!, beta)));
  });
  t.log(`DPO gradient: ${n} parameters, worst relative difference ${worst.toExponential(2)} (max |g| ${gmax.toExponential(2)}, h = 1e-2)`);
  t.true(worst < 2e-2);
  tr.dispose();
  model.dispose();
});

test('ORPO: loss equals the formula on llama.cpp scores and gradients equal finite differences', async (t) => {
  const file = await tinyModel();
  const init = await writeRandomLora(file, out('init2.gguf'), { targets: ADAPTED, std: 0.1, seed: 9 });
  const model = await loadModel(file);
  const tr = await trainer(file, { initAdapter: init });
  const batch = pairBatch(model, PAIRS);
  const P = PAIRS.length;
  const lambda = 0.5;
  const p0 = perturb(tr.getParams(), 0.05, 17);
  tr.setParams(p0);
  await tr.saveAdapter(out('moved-orpo.gguf'));
  const pol = (await scoreSums(model, PAIRS, await model.loadLora(out('moved-orpo.gguf')))).sums;
  const orpo = (s: ArrayLike<number>) => mean(PAIRS.map((_, i) => {
    const lc = s[2 * i]! / batch.n[2 * i]!;
    const lr = s[2 * i + 1]! / batch.n[2 * i + 1]!;
    return -lc + lambda * orpoOdds(lc, lr);
  }));
  const r = await tr.accumulatePairs({ ...batch, kind: 'orpo', beta: 0, lambda, lossScale: 1 / P });
  t.log(`ORPO loss ${(r.lossSum / P).toFixed(6)} vs formula on llama.cpp scores ${orpo(pol).toFixed(6)} (λ ${lambda})`);
  t.true(Math.abs(r.lossSum / P - orpo(pol)) < 1e-4);

  const grad = tr.getGrads();
  tr.clearGrads();
  const { worst, n, gmax } = await gradCheck(tr, p0, grad, async (p) => {
    tr.setParams(p);
    return orpo(await forwardSums(tr, batch));
  });
  t.log(`ORPO gradient: ${n} parameters, worst relative difference ${worst.toExponential(2)} (max |g| ${gmax.toExponential(2)}, h = 1e-2)`);
  t.true(worst < 2e-2);
  tr.dispose();
  model.dispose();
});

test('ORPO: the SFT part is the length-averaged SFT loss of the chosen responses; the odds term is the formula, ln 2 for equal responses', async (t) => {
  const file = await tinyModel();
  const model = await loadModel(file);
  const tr = await trainer(file);
  tr.setParams(perturb(tr.getParams(), 0.05, 23));
  const batch = pairBatch(model, PAIRS);
  const P = PAIRS.length;
  const t0 = tokenizePairs(model, PAIRS, 1024).pairs;

  // λ = 0: mean over pairs of (SFT loss sum / response tokens) of the chosen side, value and gradient.
  const sft = await tr.accumulatePairs({ ...batch, kind: 'orpo', beta: 0, lambda: 0, lossScale: 1 / P });
  const gOrpo = tr.getGrads();
  tr.clearGrads();
  const perPair: number[] = [];
  for (const p of t0) {
    const n = p.chosen.tokens.length - p.chosen.nPrompt;
    const r = await tr.accumulate({ ...makeBatch([p.chosen], 0), lossScale: 1 / (P * n) });
    perPair.push(r.lossSum / n);
  }
  const gSft = tr.getGrads();
  tr.clearGrads();
  const gDiff = maxAbsDiff(gOrpo, gSft) / gSft.reduce((m, g) => Math.max(m, Math.abs(g)), 0);
  t.log(`SFT part ${(sft.lossSum / P).toFixed(6)} vs SFT on chosen ${mean(perPair).toFixed(6)}; gradient max diff / max |g| = ${gDiff.toExponential(2)}`);
  t.true(Math.abs(sft.lossSum / P - mean(perPair)) < 1e-5);
  t.true(gDiff < 1e-4);

  // λ = 1 minus λ = 0 is the mean odds term, here against log-probs from llama.cpp scoring.
  const full = await tr.accumulatePairs({ ...batch, kind: 'orpo', beta: 0, lambda: 1, lossScale: 1 / P });
  tr.clearGrads();
  await tr.saveAdapter(out('orpo-part.gguf'));
  const pol = (await scoreSums(model, PAIRS, await model.loadLora(out('orpo-part.gguf')))).sums;
  const odds = mean(PAIRS.map((_, i) => orpoOdds(pol[2 * i]! / batch.n[2 * i]!, pol[2 * i + 1]! / batch.n[2 * i + 1]!)));
  t.log(`odds term ${((full.lossSum - sft.lossSum) / P).toFixed(6)} vs formula on llama.cpp scores ${odds.toFixed(6)}`);
  t.true(Math.abs((full.lossSum - sft.lossSum) / P - odds) < 1e-4);

  // Equal responses (identical sequences, which the data layer would skip): the odds term is ln 2 and adds
  // no gradient (its pulls on the two sides cancel).
  const same = makeBatch([t0[0]!.chosen, t0[0]!.chosen], 0);
  const a = await tr.accumulatePairs({ ...same, kind: 'orpo', beta: 0, lambda: 0, lossScale: 1 });
  const ga = tr.getGrads();
  tr.clearGrads();
  const b = await tr.accumulatePairs({ ...same, kind: 'orpo', beta: 0, lambda: 1, lossScale: 1 });
  const gb = tr.getGrads();
  tr.clearGrads();
  // Relative to the gradient's scale: F32 round-off of the two cancelling pulls is ~1e-7 of it.
  const gChange = maxAbsDiff(ga, gb) / ga.reduce((m, g) => Math.max(m, Math.abs(g)), 0);
  t.log(`equal responses: odds term ${b.lossSum - a.lossSum} vs ln 2 ${Math.LN2}; gradient change / max |g| ${gChange.toExponential(2)}`);
  t.true(Math.abs(b.lossSum - a.lossSum - Math.LN2) < 1e-5);
  t.true(gChange < 1e-5);
  tr.dispose();
  model.dispose();
});

/** A copy of an F32 model whose output norm weights are scaled: logits × factor, so the argmax token has
 * log-prob 0 in F32 and every other token a log-prob in the thousands. */
async function scaleOutputNorm(src: string, dst: string, factor: number) {
  const meta = await readGgufMetadata(src);
  const file = fs.readFileSync(src);
  await writeGguf(dst, meta.kv, meta.tensors.map((tensor) => {
    const bytes = Buffer.from(file.subarray(meta.dataOffset + tensor.offset, meta.dataOffset + tensor.offset + tensor.bytes));
    if (tensor.name === 'output_norm.weight') {
      const f = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
      for (let i = 0; i < f.length; i++) f[i] = f[i]! * factor;
    }
    return { name: tensor.name, ne: tensor.ne, type: tensor.type, data: () => [bytes] };
  }));
}

test('ℓ̄ = 0 (probability 1) and log-probs in the thousands give finite DPO and ORPO losses and gradients', async (t) => {
  const file = out('confident.gguf');
  await scaleOutputNorm(await tinyModel(), file, 1000);
  const model = await loadModel(file, { vocabOnly: true });
  const tr = await trainer(file);
  const V = tr.info().nVocab;
  // Greedy continuation of a prompt, three tokens, found by scoring every vocabulary token at each step.
  const prefix = model.tokenize('Question: What is 2 + 2?\nAnswer:', { addSpecial: true });
  const nPrompt = prefix.length;
  for (let step = 0; step < 3; step++) {
    const T = prefix.length;
    const tokens = new Int32Array(V * T);
    const targets = new Int32Array(V * T).fill(-1);
    for (let v = 0; v < V; v++) {
      tokens.set(prefix, v * T);
      targets[v * T + T - 1] = v;
    }
    const lp = await tr.logprobs({ T, B: V, tokens, targets, useLora: true });
    prefix.push(lp.indexOf(Math.max(...lp)));
  }
  const chosen = { tokens: prefix, nPrompt };
  const rejected = { tokens: [...prefix.slice(0, nPrompt), ...model.tokenize(' banana')], nPrompt };
  const batch = makeBatch([chosen, rejected], 0);
  const [lc, lr] = await tr.sequenceLogprobs({ ...batch, useLora: true });
  t.log(`greedy response Σ log p ${lc}, rejected ${lr}`);
  t.true(lc! / 3 > -1e-4); // inside the clamp: log(1 - exp(ℓ̄)) would be -inf or nearly
  for (const kind of ['dpo', 'orpo'] as const) {
    const r = await tr.accumulatePairs({ ...batch, kind, beta: 0.1, lambda: 1, refLogps: new Float64Array([-5, -5]), lossScale: 1 });
    const g = tr.getGrads();
    tr.clearGrads();
    const nr = rejected.tokens.length - nPrompt;
    const expected = kind === 'dpo' ? dpoLoss(r.logps[0]!, r.logps[1]!, -5, -5, 0.1) : -r.logps[0]! / 3 + orpoOdds(r.logps[0]! / 3, r.logps[1]! / nr);
    t.log(`${kind}: loss ${r.lossSum} (formula ${expected}), all ${g.length} gradients finite: ${g.every(Number.isFinite)}`);
    t.true(Number.isFinite(r.lossSum) && g.every(Number.isFinite));
    t.true(Math.abs(r.lossSum - expected) < 1e-3 * Math.max(1, Math.abs(expected)));
  }
  tr.dispose();
  model.dispose();
});

test('DPO training raises the chosen-minus-rejected margin measured by llama.cpp, and lowers the rejected log-probs', async (t) => {
  const file = await tinyModel();
  const seen: number[] = [];
  const r = await trainDpo({ ...BASE, model: file, data: TRAIN, out: out('dpo.gguf'), epochs: 6, beta: 0.1, onProgress: (p) => { if (p.metrics) seen.push(p.metrics['rewards/margins']!); } });
  const model = await loadModel(file);
  const before = (await scoreSums(model, TRAIN)).sums;
  const after = (await scoreSums(model, TRAIN, await model.loadLora(r.adapter))).sums;
  const margin = (s: number[]) => TRAIN.map((_, i) => s[2 * i]! - s[2 * i + 1]!);
  const rejected = (s: number[]) => TRAIN.map((_, i) => s[2 * i + 1]!);
  const last = r.history.at(-1)!;
  t.log(`${r.steps} steps: loss ${r.history[0]!.loss.toFixed(4)} -> ${last.loss.toFixed(4)}; logged margin ${seen[0]!.toFixed(3)} -> ${seen.at(-1)!.toFixed(3)}, accuracy ${last['rewards/accuracies']}`);
  t.log(`llama.cpp: mean margin ${mean(margin(before)).toFixed(3)} -> ${mean(margin(after)).toFixed(3)}; ` +
    `mean rejected log-prob ${mean(rejected(before)).toFixed(3)} -> ${mean(rejected(after)).toFixed(3)}`);
  const fell = rejected(after).filter((x, i) => x < rejected(before)[i]!).length;
  t.log(`margin change per pair ${margin(after).map((m, i) => (m - margin(before)[i]!).toFixed(2)).join(' ')}; rejected fell on ${fell}/${TRAIN.length} pairs`);
  t.true(margin(after).every((m, i) => m > margin(before)[i]!));
  t.true(mean(margin(after)) > mean(margin(before)) + 2);
  t.true(mean(rejected(after)) < mean(rejected(before)) - 1);
  t.true(fell >= TRAIN.length / 2);
  t.is(seen.length, r.steps);
  for (const key of ['loss', 'lr', 'tokensPerSecond', 'rewards/chosen', 'rewards/rejected', 'rewards/margins', 'rewards/accuracies']) {
    t.true(r.history.every((h) => Number.isFinite(h[key])), key);
  }
  const log = JSON.parse(fs.readFileSync(r.log, 'utf8'));
  t.is(log.kind, 'dpo');
  t.is(log.history.length, r.steps);
  model.dispose();
});

test('ORPO training raises the margin and the chosen log-probs measured by llama.cpp', async (t) => {
  const file = await tinyModel();
  const r = await trainOrpo({ ...BASE, model: file, data: TRAIN, out: out('orpo.gguf'), epochs: 8, lambda: 1 });
  const model = await loadModel(file);
  const before = (await scoreSums(model, TRAIN)).sums;
  const after = (await scoreSums(model, TRAIN, await model.loadLora(r.adapter))).sums;
  const margin = (s: number[]) => mean(TRAIN.map((_, i) => s[2 * i]! - s[2 * i + 1]!));
  const chosen = (s: number[]) => mean(TRAIN.map((_, i) => s[2 * i]!));
  const last = r.history.at(-1)!;
  t.log(`${r.steps} steps: loss ${r.history[0]!.loss.toFixed(3)} -> ${last.loss.toFixed(3)}; logged log-odds margin ` +
    `${r.history[0]!['rewards/margins']!.toFixed(3)} -> ${last['rewards/margins']!.toFixed(3)}`);
  t.log(`llama.cpp: mean margin ${margin(before).toFixed(3)} -> ${margin(after).toFixed(3)}; mean chosen log-prob ${chosen(before).toFixed(3)} -> ${chosen(after).toFixed(3)}`);
  t.true(margin(after) > margin(before) + 0.5);
  t.true(last['rewards/margins']! > r.history[0]!['rewards/margins']!);
  t.true(chosen(after) > chosen(before) + 10);
  t.true(last.loss < r.history[0]!.loss);
  model.dispose();
});

test('identical pairs, empty responses and too-long prompts are skipped with counts; nothing left is a clear error', async (t) => {
  const model = await tinyModel();
  const long = `Question: ${'very '.repeat(40)}long?\nAnswer:`;
  const data = [
    ...TRAIN.slice(0, 2),
    { prompt: 'Q: 1?', chosen: ' same', rejected: ' same' },
    { prompt: 'Q: 2?', chosen: '', rejected: ' x' },
    { prompt: 'Q: 3?', chosen: ' y', rejected: '' },
    { prompt: long, chosen: ' a', rejected: ' b' },
    { instruction: 'Q: 4?', input: '', output: [' yes', ' no'] as [string, string] },
  ];
  const r = await trainOrpo({ ...BASE, model, data, out: out('skips.gguf'), maxLen: 32 });
  t.log(JSON.stringify(r.data));
  t.like(r.data, { rows: 7, pairs: 3, skippedIdentical: 1, skippedEmptyResponse: 2, skippedPromptTooLong: 1 });
  t.true(r.history.every((h) => Number.isFinite(h.loss)));
  const e = await t.throwsAsync(trainDpo({ ...BASE, model, data: data.slice(2, 6), out: out('none.gguf'), maxLen: 32 }), { code: 'ERR_W2S_INVALID_ARGUMENT' });
  t.log(e!.message);
  t.regex(e!.message, /No usable preference pairs in 4 rows \(identical responses: 1, empty response: 2, prompt too long for maxLen 32: 1\)/);
  t.false(fs.existsSync(out('none.gguf')));
});

test('data files: {prompt, chosen, rejected} and the paper layout; bad rows name their line', async (t) => {
  t.deepEqual(toPreferencePair({ instruction: 'Solve.', input: '2 + 2', output: [' 4', ' 5'] }), { prompt: 'Solve.\n2 + 2', chosen: ' 4', rejected: ' 5' });
  t.deepEqual(toPreferencePair({ id: 3, instruction: 'Q', input: '', output: [' a', ' b'] }), { prompt: 'Q', chosen: ' a', rejected: ' b' });
  t.is(toPreferencePair({ instruction: 'Q', input: '', output: [' a'] }), undefined);
  const model = await tinyModel();
  const file = out('pairs.jsonl');
  fs.writeFileSync(file, [
    JSON.stringify({ id: 1, instruction: TRAIN[0]!.prompt, input: '', output: [TRAIN[0]!.chosen, TRAIN[0]!.rejected] }),
    JSON.stringify(TRAIN[1]),
  ].join('\n') + '\n');
  const r = await trainDpo({ ...BASE, model, data: file, out: out('file.gguf') });
  t.like(r.data, { rows: 2, pairs: 2 });
  const bad = out('bad-pairs.jsonl');
  fs.writeFileSync(bad, `${JSON.stringify(TRAIN[0])}\n{"prompt":"x","response":"y"}\n`);
  await t.throwsAsync(trainDpo({ ...BASE, model, data: bad, out: out('bad.gguf') }), { code: 'ERR_W2S_DATA_FORMAT', message: /bad-pairs\.jsonl:2/ });
  await t.throwsAsync(trainDpo({ ...BASE, model, data: TRAIN, out: out('bad.gguf'), beta: 0 }), { message: 'Expected number in (0, 1000000] for beta but received 0 of type number' });
  await t.throwsAsync(trainOrpo({ ...BASE, model, data: TRAIN, out: out('bad.gguf'), lambda: -1 }), { code: 'ERR_W2S_INVALID_ARGUMENT' });
});

test('a resumed DPO run uses the reference saved in its checkpoint and continues exactly', async (t) => {
  const model = await tinyModel();
  const init = out('init-resume.gguf');
  await writeRandomLora(model, init, { targets: ADAPTED, std: 0.1, seed: 21 });
  const common = { ...BASE, model, data: TRAIN, lora: init, epochs: 3, batch: 2, checkpointEvery: 2 };
  const full = await trainDpo({ ...common, out: out('full.gguf') });
  const part = await trainDpo({ ...common, out: out('part.gguf'), maxSteps: 4 });
  const state = JSON.parse(String((await readGgufMetadata(part.checkpoint)).values.get('w2s.checkpoint.state')));
  t.is(state.extra.reference.length, 2 * TRAIN.length);
  // The starting adapter changes on disk: the reference must not be recomputed from it.
  await writeRandomLora(model, init, { targets: ADAPTED, std: 0.1, seed: 22 });
  const resumed = await trainDpo({ ...common, out: out('resumed.gguf'), resume: part.checkpoint });
  const tail = resumed.history.slice(4).map((h) => h.loss);
  const ref = full.history.slice(4).map((h) => h.loss);
  t.log(`steps 5..${full.steps}: max |resumed - uninterrupted| loss = ${maxAbsDiff(tail, ref)}`);
  t.deepEqual(tail, ref);
  t.deepEqual(fs.readFileSync(resumed.adapter), fs.readFileSync(full.adapter));
  // A DPO checkpoint is not an ORPO run's.
  await t.throwsAsync(trainOrpo({ ...common, out: out('x.gguf'), resume: part.checkpoint }), { code: 'ERR_W2S_CHECKPOINT', message: /another run/ });
});

test('an AbortSignal stops preference training within a step', async (t) => {
  const model = await tinyModel();
  const controller = new AbortController();
  const seen: number[] = [];
  await t.throwsAsync(trainDpo({
    ...BASE, model, data: TRAIN, batch: 1, out: out('abort.gguf'), epochs: 20, signal: controller.signal,
    onProgress: (p) => { seen.push(p.step); if (p.step === 2) controller.abort(); },
  }), { name: 'AbortError' });
  t.deepEqual(seen, [1, 2]);
  t.false(fs.existsSync(out('abort.gguf')));
});

test('w2s train dpo|orpo: paper-layout data, a step line with the rewards, the skip counts, exit 2 for bad arguments', async (t) => {
  const cli = fileURLToPath(new URL('../lib/cli/main.js', import.meta.url));
  const model = await tinyModel();
  const data = out('cli-pairs.jsonl');
  fs.writeFileSync(data, [
    ...TRAIN.slice(0, 3).map((p, id) => JSON.stringify({ id, instruction: p.prompt, input: '', output: [p.chosen, p.rejected] })),
    JSON.stringify({ id: 9, instruction: 'Q', input: '', output: [' same', ' same'] }),
  ].join('\n') + '\n');
  for (const [kind, weight] of [['dpo', '--beta'], ['orpo', '--lambda']] as const) {
    const adapter = out(`cli-${kind}.gguf`);
    const r = spawnSync(process.execPath, [cli, 'train', kind, '--model', model, '--data', data, '--out', adapter, weight, '0.2',
      '--batch', '2', '--epochs', '2', '--threads', '1'], { encoding: 'utf8' });
    t.log(`${kind}: exit ${r.status}; ${r.stdout.trim().split('\n')[0]}; ${r.stderr.trim().split('\n').at(-1)}`);
    t.is(r.status, 0, r.stderr);
    t.regex(r.stdout + r.stderr, /step 1\/4 .*loss .*rewards\/margins .*rewards\/accuracies/);
    t.regex(r.stderr, /3 pairs \(skipped: 1 identical, 0 empty response, 0 prompt too long; 0 truncated\); 4 steps/);
    t.true(fs.existsSync(adapter));
  }
  const bad = spawnSync(process.execPath, [cli, 'train', 'dpo', '--model', model, '--data', data, '--out', out('cli-bad.gguf'), '--beta', 'x'], { encoding: 'utf8' });
  t.is(bad.status, 2);
  t.regex(bad.stderr, /Expected number for --beta but received "x"/);
});

test('a non-finite value stops training: ORPO at the step that meets it (last good checkpoint kept), DPO already at the reference', async (t) => {
  // One pair uses a token whose embedding is NaN (as in the SFT test).
  const clean = await tinyModel();
  const m = await loadModel(clean, { vocabOnly: true });
  const common = new Set(TRAIN.flatMap((d) => [...m.tokenize(d.prompt, { addSpecial: true }), ...m.tokenize(d.chosen), ...m.tokenize(d.rejected)]));
  const [poisonId] = m.tokenize('ξ').filter((id) => !common.has(id));
  m.dispose();
  const model = out('poisoned.gguf');
  await poisonTokenEmbedding(clean, model, poisonId!);
  const data = [...TRAIN.slice(0, 6), { prompt: 'Question: 1 + 1?\nAnswer:', chosen: ' 2', rejected: ' ξ' }];
  const seed = [...Array(100).keys()].find((sd) => epochOrder(data.length, sd, 0).indexOf(6) === 2)!;
  const o = { ...BASE, model, data, batch: 1, epochs: 1, checkpointEvery: 1, seed };
  const e = await t.throwsAsync(trainOrpo({ ...o, out: out('nan-orpo.gguf') }), { code: 'ERR_W2S_TRAIN_NONFINITE' });
  t.log(e!.message);
  t.regex(e!.message, /loss at step 3 is NaN/);
  t.false(fs.existsSync(out('nan-orpo.gguf')));
  t.is(Number((await readGgufMetadata(out('nan-orpo.gguf.ckpt'))).values.get('w2s.checkpoint.step')), 2);
  const d = await t.throwsAsync(trainDpo({ ...o, out: out('nan-dpo.gguf') }), { code: 'ERR_W2S_TRAIN_NONFINITE' });
  t.log(d!.message);
  t.regex(d!.message, /reference log-prob of the rejected response of data row 7 is NaN/);
  t.false(fs.existsSync(out('nan-dpo.gguf')));
});
