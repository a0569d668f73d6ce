// LoRA adapters: base + adapter scores and samples like the weights merged offline, scale 0 and B = 0 are
// no-ops, node-llama-cpp reads our adapter files the same way, and every misuse is a typed error.
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { GgufFormatError, readGgufMetadata } from '../lib/gguf/reader.js';
import { decode } from '../lib/gguf/quantize.js';
import { GgmlType } from '../lib/gguf/types.js';
import { mergeAdapterFile } from '../lib/lora/merge.js';
import { loadModel, type Model } from '../lib/model.js';
import { referenceLogprobs } from './helpers/nlc.js';
import { writeLoraAndMerged, writeRandomLora, type LoraTargets } from './helpers/lora.js';
import { PROMPTS, TMP, tinyModel } from './helpers/models.js';

const ITEMS = [
  { prompt: PROMPTS[0]!, completion: ' She sold 48 / 2 = 24 clips in May. #### 72' },
  { prompt: PROMPTS[2]!, completion: ' 4' },
  { prompt: 'Hi', completion: ' there,\nfriend: é 🙂' },
];

// Every projection kind is adapted somewhere, not every one everywhere.
const TARGETS: LoraTargets = { 0: ['attn_q', 'attn_v', 'attn_output', 'ffn_gate', 'ffn_down'], 1: ['attn_k', 'ffn_up', 'ffn_down'] };

const GREEDY = { temperature: 0, maxTokens: 24, highPrecision: true } as const;

let dir: string;
let basePath: string;
let adapterPath: string;
let mergedPath: string;
let base: Model;
let merged: Model;

test.before(async () => {
  dir = fs.mkdtempSync(path.join(TMP, 'lora-'));
  basePath = await tinyModel();
  ({ adapter: adapterPath, merged: mergedPath } = await writeLoraAndMerged(basePath, dir, 'random', { targets: TARGETS, rank: 4, alpha: 8, seed: 5 }));
  base = await loadModel(basePath);
  merged = await loadModel(mergedPath);
});
test.after.always(() => {
  base?.dispose();
  merged?.dispose();
});

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function maxDiffOf(a: { logprobs: Float32Array }[], b: { logprobs: Float32Array }[]): number {
  return Math.max(...a.map((x, i) => maxAbsDiff(x.logprobs, b[i]!.logprobs)));
}

test('the adapter file carries llama.cpp adapter metadata', async (t) => {
  const lora = await base.loadLora(adapterPath);
  const meta = lora.metadata();
  t.is(meta['general.type'], 'adapter');
  t.is(meta['adapter.type'], 'lora');
  t.is(Number(meta['adapter.lora.alpha']), 8);
  lora.dispose();
});

test('scoring with base + adapter equals scoring the merged model', async (t) => {
  const lora = await base.loadLora(adapterPath);
  const withAdapter = await base.score(ITEMS, { lora });
  const ofMerged = await merged.score(ITEMS);
  const plain = await base.score(ITEMS);
  const diff = maxDiffOf(withAdapter, ofMerged);
  const effect = maxDiffOf(withAdapter, plain);
  t.log(`max |base+adapter - merged| = ${diff.toExponential(2)}; the adapter moves log-probs by up to ${effect.toExponential(2)}`);
  t.true(diff < 1e-4);
  // The comparison means something only if the adapter changes the model a lot more than that.
  t.true(effect > 1e-2);
  lora.dispose();
});

test('a merge stored as Q8_0: matrices in Q8_0 within one quantization step of the F32 merge, vectors F32, scored like it', async (t) => {
  const q8Path = path.join(dir, 'random.merged-q8_0.gguf');
  await mergeAdapterFile(basePath, adapterPath, q8Path, { store: 'q8_0' });
  const [f32, q8] = await Promise.all([readGgufMetadata(mergedPath), readGgufMetadata(q8Path)]);
  t.is(Number(q8.values.get('general.file_type')), 7);
  const f32Bytes = fs.readFileSync(mergedPath);
  const q8Bytes = fs.readFileSync(q8Path);
  let worst = 0;
  let worstAt = '';
  for (const a of f32.tensors) {
    const b = q8.tensors.find((x) => x.name === a.name)!;
    const matrix = a.ne.length >= 2 && a.ne[0]! % 32 === 0;
    t.is(b.type, matrix ? GgmlType.Q8_0 : a.type, a.name);
    if (!matrix) {
      t.deepEqual(q8Bytes.subarray(q8.dataOffset + b.offset, q8.dataOffset + b.offset + b.bytes), f32Bytes.subarray(f32.dataOffset + a.offset, f32.dataOffset + a.offset + a.bytes), a.name);
      continue;
    }
    const w = new Float32Array(f32Bytes.buffer.slice(f32Bytes.byteOffset + f32.dataOffset + a.offset, f32Bytes.byteOffset + f32.dataOffset + a.offset + a.bytes));
    const dq = decode(GgmlType.Q8_0, q8Bytes.subarray(q8.dataOffset + b.offset, q8.dataOffset + b.offset + b.bytes), w.length);
    // Each block of 32 is rounded to multiples of d = max|w| / 127: the error of each value in steps of d.
    for (let blk = 0; blk < w.length; blk += 32) {
      let amax = 0;
      for (let i = blk; i < blk + 32; i++) amax = Math.max(amax, Math.abs(w[i]!));
      for (let i = blk; i < blk + 32; i++) {
        const steps = Math.abs(w[i]! - dq[i]!) / (amax / 127 || 1);
        if (steps > worst) [worst, worstAt] = [steps, `${a.name}[${i}]: ${w[i]} stored as ${dq[i]}`];
      }
    }
  }
  const q8Model = await loadModel(q8Path);
  try {
    const diff = maxDiffOf(await q8Model.score(ITEMS), await merged.score(ITEMS));
    t.log(`worst rounding ${worst.toFixed(3)} steps; max |log-prob Q8_0 - F32| = ${diff.toExponential(2)}; ${q8Bytes.length} / ${f32Bytes.length} bytes`);
    // Rounding to nearest moves a value by half a step; the scale stored as F16 (relative error ≤ 2^-11) adds up
    // to 127 · 2^-11 steps at the block's largest quant.
    t.true(worst <= 0.5 + 127 * 2 ** -11, `${worst} steps at ${worstAt}`);
    t.true(diff > 0 && diff < 0.05);
    t.true(q8Bytes.length < 0.4 * f32Bytes.length);
  } finally {
    q8Model.dispose();
  }
});

test('an adapter with B = 0 and an adapter at scale 0 leave the base log-probs unchanged', async (t) => {
  const zeroPath = await writeRandomLora(basePath, path.join(dir, 'zero-b.lora.gguf'), { targets: TARGETS, seed: 9, zeroB: true });
  const zero = await base.loadLora(zeroPath);
  const lora = await base.loadLora(adapterPath);
  const plain = await base.score(ITEMS);
  const zeroB = await base.score(ITEMS, { lora: zero });
  const scale0 = await base.score(ITEMS, { lora: [{ adapter: lora, scale: 0 }] });
  const dZero = maxDiffOf(zeroB, plain);
  const dScale = maxDiffOf(scale0, plain);
  t.log(`max |B=0 adapter - base| = ${dZero.toExponential(2)}; max |scale 0 - base| = ${dScale.toExponential(2)}`);
  t.true(dZero < 1e-6);
  t.true(dScale < 1e-6);
  zero.dispose();
  lora.dispose();
});

test('greedy sampling with base + adapter equals the merged model and differs from the base', async (t) => {
  const lora = await base.loadLora(adapterPath);
  const withAdapter = await base.sample(PROMPTS, { ...GREEDY, lora });
  const ofMerged = await merged.sample(PROMPTS, GREEDY);
  const plain = await base.sample(PROMPTS, GREEDY);
  const scale0 = await base.sample(PROMPTS, { ...GREEDY, lora: [{ adapter: lora, scale: 0 }] });
  t.deepEqual(withAdapter.map((s) => s.text), ofMerged.map((s) => s.text));
  t.deepEqual(scale0.map((s) => s.text), plain.map((s) => s.text));
  const changed = withAdapter.filter((s, i) => s.text !== plain[i]!.text).length;
  t.log(`the adapter changes the greedy text of ${changed} of ${PROMPTS.length} prompts`);
  t.true(changed >= 1);
  lora.dispose();
});

test("node-llama-cpp applies our adapter file the same way (log-probs within 1e-4)", async (t) => {
  const lora = await base.loadLora(adapterPath);
  const scores = await base.score(ITEMS, { lora });
  let maxDiff = 0;
  for (const [i, item] of ITEMS.entries()) {
    const pair = base.tokenizePair(item.prompt, item.completion);
    const ref = await referenceLogprobs(basePath, pair.tokens, pair.nPrompt, adapterPath);
    t.is(ref.length, scores[i]!.logprobs.length);
    maxDiff = Math.max(maxDiff, maxAbsDiff(ref, scores[i]!.logprobs));
  }
  t.log(`max |weak2strong - node-llama-cpp| with the adapter = ${maxDiff.toExponential(2)}`);
  t.true(maxDiff < 1e-4);
  lora.dispose();
});

test('an adapter made for a model of another shape is an AdapterError naming the shape and the base model', async (t) => {
  const narrow = await tinyModel({ embd: 32 });
  const foreign = await writeRandomLora(narrow, path.join(dir, 'narrow.lora.gguf'), { targets: { 0: ['attn_q'] } });
  const e = await t.throwsAsync(base.loadLora(foreign), { code: 'ERR_W2S_ADAPTER', name: 'AdapterError' });
  t.log(e!.message);
  t.regex(e!.message, /shape/);
  t.true(e!.message.includes(basePath));
  // The model still works, with and without its own adapter.
  const lora = await base.loadLora(adapterPath);
  t.is((await base.sample([PROMPTS[0]!], { maxTokens: 2, lora })).length, 1);
  lora.dispose();
});

test('an adapter of another architecture, or a model file given as an adapter, is an AdapterError', async (t) => {
  const qwen = await tinyModel({ arch: 'qwen2' });
  const qwenLora = await writeRandomLora(qwen, path.join(dir, 'qwen.lora.gguf'), { targets: { 0: ['attn_q'] } });
  const e1 = await t.throwsAsync(base.loadLora(qwenLora), { code: 'ERR_W2S_ADAPTER' });
  t.log(e1!.message);
  const e2 = await t.throwsAsync(base.loadLora(basePath), { code: 'ERR_W2S_ADAPTER' });
  t.log(e2!.message);
});

test('a file that is not GGUF is a GgufFormatError; a missing file is a FileNotFoundError', async (t) => {
  const text = path.join(dir, 'not-an-adapter.gguf');
  fs.writeFileSync(text, 'this is not a GGUF file at all\n');
  const e = await t.throwsAsync(base.loadLora(text), { code: 'ERR_W2S_GGUF_FORMAT' });
  t.true(e instanceof GgufFormatError);
  t.is((e as GgufFormatError).reason, 'not-gguf');
  // A truncated adapter (a valid header cut short) must be caught before llama.cpp sees it.
  const cut = path.join(dir, 'cut.lora.gguf');
  const bytes = fs.readFileSync(adapterPath);
  fs.writeFileSync(cut, bytes.subarray(0, bytes.length - 100));
  const e2 = await t.throwsAsync(base.loadLora(cut), { code: 'ERR_W2S_GGUF_FORMAT' });
  t.is((e2 as GgufFormatError).reason, 'truncated');
  const missing = path.join(dir, 'no-such.lora.gguf');
  const e3 = await t.throwsAsync(base.loadLora(missing), { code: 'ERR_W2S_FILE_NOT_FOUND', name: 'FileNotFoundError' });
  t.true(e3!.message.includes(missing));
});

test("an adapter loaded for one model cannot be used with another; a disposed adapter is a DisposedError", async (t) => {
  const lora = await base.loadLora(adapterPath);
  // `merged` has the same shapes, so only the ownership check can catch this.
  t.throws(() => merged.sample([PROMPTS[0]!], { maxTokens: 2, lora }), { code: 'ERR_W2S_INVALID_ARGUMENT', name: 'InvalidArgumentError', message: /was loaded for/ });
  t.throws(() => merged.score(ITEMS, { lora: [{ adapter: lora }] }), { code: 'ERR_W2S_INVALID_ARGUMENT' });
  t.throws(() => base.sample([PROMPTS[0]!], { lora: [{ adapter: lora, scale: Number.NaN }] }), { code: 'ERR_W2S_INVALID_ARGUMENT' });
  t.throws(() => base.sample([PROMPTS[0]!], { lora: [{} as never] }), { code: 'ERR_W2S_INVALID_ARGUMENT' });
  lora.dispose();
  t.true(lora.disposed);
  t.throws(() => base.sample([PROMPTS[0]!], { maxTokens: 2, lora }), { code: 'ERR_W2S_DISPOSED', name: 'DisposedError' });
  t.throws(() => base.score(ITEMS, { lora }), { code: 'ERR_W2S_DISPOSED' });
  t.throws(() => lora.metadata(), { code: 'ERR_W2S_DISPOSED' });
  // Disposing a model disposes its adapters; the model then refuses to load more.
  const m = await loadModel(basePath);
  const owned = await m.loadLora(adapterPath);
  m.dispose();
  t.true(owned.disposed);
  await t.throwsAsync(async () => m.loadLora(adapterPath), { code: 'ERR_W2S_DISPOSED' });
});

test('adapters and models disposed while their jobs wait or run do not disturb those jobs', async (t) => {
  const lora = await base.loadLora(adapterPath);
  const expected = await base.sample(PROMPTS, { ...GREEDY, lora });
  const expectedScores = await base.score(ITEMS, { lora });
  // The first job runs, the second waits in the model's queue, when the adapter is disposed.
  const again = await base.loadLora(adapterPath);
  const running = base.sample(PROMPTS, { ...GREEDY, lora: again });
  const queued = base.score(ITEMS, { lora: again });
  again.dispose();
  t.throws(() => base.sample(PROMPTS, { lora: again }), { code: 'ERR_W2S_DISPOSED' });
  t.deepEqual(await running, expected);
  t.is(maxDiffOf(await queued, expectedScores), 0);
  // Same when the whole model goes away right after the calls.
  const m = await loadModel(basePath);
  const owned = await m.loadLora(adapterPath);
  const p1 = m.sample(PROMPTS, { ...GREEDY, lora: owned });
  const p2 = m.score(ITEMS, { lora: owned });
  m.dispose();
  t.deepEqual(await p1, expected);
  t.is(maxDiffOf(await p2, expectedScores), 0);
  lora.dispose();
});
