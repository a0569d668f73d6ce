// The architectures beyond the llama family's core (gemma, gemma2, phi3) against independent computations:
// per-token log-probs against llama.cpp's inference path with and without an adapter (and controls showing
// that each trait — GELU, the embedding scale, soft-caps, the sliding window, the fused tensors — changes
// what llama.cpp computes, so the parity is not vacuous), LoRA gradients against finite differences, a
// trained adapter in node-llama-cpp, and the sliding windows the graph does not implement.
import test from 'ava';
import path from 'node:path';
import { createModel, type CreateModelOptions } from '../lib/model/create.js';
import { loadModel, type Model } from '../lib/model.js';
import { addon, type NativeTrainer } from '../lib/native.js';
import { makeBatch } from '../lib/train/batches.js';
import { trainSft } from '../lib/train/sft.js';
import { UnsupportedModelError } from '../lib/errors.js';
import { writeRandomLora } from './helpers/lora.js';
import { editGguf } from './helpers/gguf-edit.js';
import { readGgufMetadata } from '../lib/gguf/reader.js';
import { TMP } from './helpers/models.js';
import { FD_STEP, loraGradientCheck } from './helpers/gradcheck.js';
import { referenceLogprobs } from './helpers/nlc.js';

const ITEMS = [
  { prompt: 'Question: Natalia sold 48 clips in April and half as many in May. How many?\nAnswer:', completion: ' 48 / 2 = 24. 48 + 24 = 72. #### 72' },
  { prompt: 'Question: What is 2 + 2?\nAnswer:', completion: ' 4' },
  { prompt: 'Hi', completion: ' there, friend: é' },
];

type Variant = Partial<CreateModelOptions> & { arch: CreateModelOptions['arch'] };
const made = new Map<string, Promise<string>>();
function model(name: string, v: Variant): Promise<string> {
  let p = made.get(name);
  if (!p) {
    const out = path.join(TMP, `arch-${name}.gguf`);
    p = createModel({ layers: 2, embd: 64, heads: 4, kvHeads: 2, ff: 128, ctx: 512, type: 'f32', seed: 5, out, ...v }).then(() => out);
    made.set(name, p);
  }
  return p;
}

// Small caps and a window of 8 make gemma2's traits bite on a random 2-layer model (its logits are ~N(0, 1),
// its attention scores tiny): the defaults (50, 30, 4096) would change almost nothing here.
const GEMMA2_BITING = { arch: 'gemma2', attnSoftcap: 0.1, finalSoftcap: 1.5, slidingWindow: 8 } as const;
const PHI3_VOCAB = path.resolve('../shared/models/vocab/ggml-vocab-phi-3.gguf');
const CASES: Record<string, { v: Variant; lora: Record<number, string[]> }> = {
  gemma: { v: { arch: 'gemma' }, lora: { 0: ['attn_q', 'attn_k', 'attn_v', 'attn_output'], 1: ['ffn_gate', 'ffn_up', 'ffn_down'] } },
  gemma2: { v: GEMMA2_BITING, lora: { 0: ['attn_q', 'attn_k', 'attn_v', 'attn_output'], 1: ['ffn_gate', 'ffn_up', 'ffn_down'] } },
  phi3: { v: { arch: 'phi3' }, lora: { 0: ['attn_qkv', 'attn_output'], 1: ['ffn_up', 'ffn_down'] } },
  'phi3 (Phi-3 vocabulary)': { v: { arch: 'phi3', vocabFrom: PHI3_VOCAB }, lora: { 0: ['attn_qkv'], 1: ['ffn_up'] } },
};

function batchOf(m: Model) {
  return makeBatch(ITEMS.map((it) => m.tokenizePair(it.prompt, it.completion)), 0);
}

function trainer(file: string, extra: Record<string, unknown> = {}): Promise<NativeTrainer> {
  return addon().createTrainer(file, { rank: 4, alpha: 8, dropout: 0, targets: 0x7f, seed: 3, threads: 1, ...extra });
}

const maxAbs = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).reduce((m, x, i) => Math.max(m, Math.abs(x - b[i]!)), 0);

async function scored(file: string, adapter?: string): Promise<number[]> {
  const m = await loadModel(file);
  const out = (await m.score(ITEMS, adapter ? { lora: await m.loadLora(adapter) } : {})).flatMap((s) => Array.from(s.logprobs));
  m.dispose();
  return out;
}

for (const [name, c] of Object.entries(CASES)) {
  // gemma2's attention soft-cap puts ~2e-5 between the two paths (measured 1.2e-5 to 5.6e-5, with the caps of 50
  // and of 0.1 alike, and 1.4e-6 with the caps off): rounding, not a different function (a cap of 0.1 instead of
  // 50 moves the log-probs by 3.7e-3, see the controls).
  const tol = name === 'gemma2' ? 1e-4 : 2e-5;
  test(`${name}: training-graph log-probs equal llama.cpp's inference within ${tol}, with and without an adapter, in both engines`, async (t) => {
    const file = await model(name, c.v);
    const adapter = await writeRandomLora(file, path.join(TMP, `arch-${name}-lora.gguf`), { targets: c.lora as never, std: 0.1 });
    const m = await loadModel(file);
    const batch = batchOf(m);
    m.dispose();
    const base = await scored(file);
    const withAdapter = await scored(file, adapter);
    t.true(maxAbs(base, withAdapter) > 1e-3, 'the adapter changes the scores');
    for (const engine of [{}, { frozenGrad: 'out_prod', head: 'dense' }]) {
      for (const [label, ref, init] of [['base', base, undefined], ['adapter', withAdapter, adapter]] as const) {
        const tr = await trainer(file, { ...engine, ...(init ? { initAdapter: init } : {}) });
        const ours = await tr.logprobs({ ...batch, useLora: true });
        t.is(ours.length, ref.length);
        const d = maxAbs(ours, ref);
        t.log(`${name} ${engine.head ?? 'chunked'} ${label}: ${ref.length} tokens, max |train graph - llama.cpp| = ${d.toExponential(2)}`);
        t.true(d < tol);
        tr.dispose();
      }
    }
  });
}

// Each trait changes llama.cpp's own result: dropping it from the file (where the format allows) or giving
// the same weights to a simpler architecture moves the log-probs far beyond the parity tolerance above.
test('controls: GELU + embedding scale, each gemma2 soft-cap and the sliding window all change what llama.cpp computes', async (t) => {
  const gemma2 = await scored(await model('gemma2', GEMMA2_BITING));
  const controls = {
    'no window (4096)': { ...GEMMA2_BITING, slidingWindow: 4096 },
    'attention cap 50': { ...GEMMA2_BITING, attnSoftcap: 50 },
    'final cap 30': { ...GEMMA2_BITING, finalSoftcap: 30 },
  };
  for (const [label, v] of Object.entries(controls)) {
    const d = maxAbs(gemma2, await scored(await model(`gemma2 ${label}`, v)));
    t.log(`gemma2 vs ${label}: max |Δ log p| = ${d.toExponential(2)}`);
    t.true(d > 1e-3, label);
  }
  // gemma's graph on the same tensors minus gemma2's post-norms is another function again.
  const gemma = await scored(await model('gemma', { arch: 'gemma' }));
  t.true(maxAbs(gemma, await scored(await model('gemma2 defaults', { arch: 'gemma2' }))) > 1e-3);
});

for (const [name, c] of Object.entries(CASES).filter(([n]) => !n.includes('vocabulary'))) {
  test(`${name}: LoRA gradients equal central finite differences; checkpointed v2 equals the autodiff reference`, async (t) => {
    const file = await model(name, c.v);
    const m = await loadModel(file);
    const batch = batchOf(m);
    m.dispose();
    // The smooth forward (smoothForward): the loss is then exactly the function the gradient is of. With
    // llama.cpp's kernels in the forward pass (the default) the gradient is the same smooth one; GELU's F16
    // table makes the loss itself piecewise constant at ~1e-3 relative, noise that finite differences amplify.
    const tr = await trainer(file, { smoothForward: true });
    const { p0, grad, worst, n } = await loraGradientCheck(tr, batch);
    t.log(`${name}: ${n} parameters, worst relative difference ${worst.toExponential(2)} (h = ${FD_STEP})`);
    t.true(worst < 2e-2);
    // The same gradients from the checkpointed, chunked engine and from ggml's autodiff graph (dense head, OUT_PROD).
    for (const engine of [{ checkpointing: 'on', smoothForward: true }, { frozenGrad: 'out_prod', head: 'dense', checkpointing: 'off', smoothForward: true }]) {
      const other = await trainer(file, engine);
      other.setParams(p0);
      await other.accumulate({ ...batch, lossScale: 1 });
      const g = other.getGrads();
      const scale = grad.reduce((x, v) => Math.max(x, Math.abs(v)), 0);
      const rel = maxAbs(g, grad) / scale;
      t.log(`${name} ${JSON.stringify(engine)}: max |Δgrad| / max |grad| = ${rel.toExponential(2)}`);
      t.true(scale > 0 && rel < 1e-5);
      other.dispose();
    }
    // The default engine's gradient: the same smooth derivative at llama.cpp's forward values.
    const exact = await trainer(file);
    exact.setParams(p0);
    await exact.accumulate({ ...batch, lossScale: 1 });
    const rel = maxAbs(exact.getGrads(), grad) / grad.reduce((x, v) => Math.max(x, Math.abs(v)), 0);
    t.log(`${name} default forward: max |Δgrad| / max |grad| = ${rel.toExponential(2)} against the smooth forward's`);
    t.true(rel < 2e-2);
    exact.dispose();
    tr.dispose();
  });
}

test('phi3 and gemma2: a trained adapter (fused attn_qkv / ffn_up targets for phi3) loads in node-llama-cpp with the same log-probs', async (t) => {
  const data = Array.from({ length: 8 }, (_, i) => ({ prompt: `Question: What is ${i} + 2?\nAnswer:`, response: ` ${i + 2}. #### ${i + 2}` }));
  // gemma2 with its real caps (a cap of 1.5 on the logits would bound what any adapter can learn) and a window of 8.
  for (const [name, v] of [['phi3', CASES.phi3!.v], ['gemma2', { arch: 'gemma2', slidingWindow: 8 }]] as const) {
    const file = await model(`${name} sft`, v);
    const r = await trainSft({ model: file, data, out: path.join(TMP, `arch-${name}-sft.gguf`), epochs: 6, batch: 4, lr: 1e-2, seed: 1, threads: 1, warmupRatio: 0 });
    const first = r.history[0]!.loss;
    const last = r.history.at(-1)!.loss;
    const m = await loadModel(file);
    const item = { prompt: data[3]!.prompt, completion: data[3]!.response };
    const [ours] = await m.score([item], { lora: await m.loadLora(r.adapter) });
    const { tokens } = m.tokenizePair(item.prompt, item.completion);
    const ref = await referenceLogprobs(file, tokens, ours!.promptTokens, r.adapter);
    const d = maxAbs(ref, ours!.logprobs);
    t.log(`${name}: loss ${first.toFixed(3)} -> ${last.toFixed(3)} in ${r.steps} steps; node-llama-cpp max diff ${d.toExponential(2)}`);
    t.true(last < first * 0.8);
    t.true(d < 1e-4);
    m.dispose();
  }
});

test('a sliding window the graph does not implement (phi3) is refused for longer sequences, with the length to cut to; shorter ones train', async (t) => {
  const file = await model('phi3 window 8', { arch: 'phi3', slidingWindow: 8 });
  const m = await loadModel(file);
  const long = batchOf(m);
  const short = makeBatch([m.tokenizePair('Hi', ' there')], 0);
  m.dispose();
  const tr = await trainer(file);
  t.true(long.T > 8 && short.T <= 8);
  const err = await t.throwsAsync(tr.accumulate({ ...long, lossScale: 1 }));
  t.regex(err!.message, /sliding attention window of 8 tokens.*phi3\.attention\.sliding_window.*at most 8 tokens/);
  const r = await tr.accumulate({ ...short, lossScale: 1 });
  t.true(r.nTargets > 0 && Number.isFinite(r.lossSum));
  tr.dispose();
  // Through the public trainer it is the typed error, and nothing is written.
  const data = [{ prompt: ITEMS[0]!.prompt, response: ITEMS[0]!.completion }];
  await t.throwsAsync(trainSft({ model: file, data, out: path.join(TMP, 'arch-swa-refused.gguf'), epochs: 1, batch: 1, seed: 1, threads: 1 }),
    { instanceOf: UnsupportedModelError });
  // gemma2's window is in the graph: the same long batch trains (its parity is checked above).
  const g2 = await trainer(await model('gemma2', GEMMA2_BITING));
  const m2 = await loadModel(await model('gemma2', GEMMA2_BITING));
  t.true((await g2.accumulate({ ...batchOf(m2), lossScale: 1 })).nTargets > 0);
  g2.dispose();
  m2.dispose();
});

test('a gemma file with an output.weight (which llama.cpp does not read: gemma ties its head) is refused by name', async (t) => {
  // A llama file relabelled as gemma: the same tensors, but llama's untied output.weight is one gemma's graph never uses.
  const src = await model('llama', { arch: 'llama' });
  const meta = await readGgufMetadata(src);
  const kv: Record<string, unknown> = { 'general.architecture': 'gemma' };
  for (const e of meta.kv.filter((e) => e.key.startsWith('llama.'))) {
    kv[e.key] = null;
    const { key: _key, ...value } = e;
    kv[`gemma.${e.key.slice(6)}`] = value;
  }
  const file = await editGguf(src, path.join(TMP, 'arch-gemma-relabelled.gguf'), { kv: kv as never });
  const err = await t.throwsAsync(trainer(file));
  t.regex(err!.message, /does not implement tensor output\.weight/);
  // Without the head tensor the same weights are a gemma model that trains (positive control: the gemma case above).
});
