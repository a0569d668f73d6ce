// Training engine v2 against ggml's own autodiff graph, kept as the reference mode ('out_prod' input
// gradients through the frozen weights + the 'dense' head: all logits and one-hot cross-entropy): the
// MUL_MAT input gradients (native/core/frozen_grad.h) and the chunked head with its written-out gradient
// (native/core/loss_head.h) give the same losses and LoRA gradients on every base type the creator writes,
// for SFT, DPO and ORPO, also when both are forced into many chunks; the compute buffer no longer holds
// [n_vocab × rows] tensors; and an op audit: no OUT_PROD on a non-F32 source, and every op is one that the
// pinned llama.cpp's CUDA and Vulkan backends list.
import test from 'ava';
import path from 'node:path';
import { loadModel, type Model } from '../lib/model.js';
import { addon, type NativeTrainer, type NativeTrainerOptions } from '../lib/native.js';
import { makeBatch } from '../lib/train/batches.js';
import { TMP, tinyModel } from './helpers/models.js';
import { GPU_BACKENDS, rejection } from './helpers/backend-ops.js';
import { convertMatrices } from './helpers/convert.js';

const ITEMS = [
  { prompt: 'Question: Natalia sold 48 clips in April and half as many in May. How many?\nAnswer:', completion: ' 48 / 2 = 24. 48 + 24 = 72. #### 72' },
  { prompt: 'Question: What is 2 + 2?\nAnswer:', completion: ' 4' },
  { prompt: 'Hi', completion: ' there, friend: é' },
  { prompt: 'Q: 7 * 6?\nA:', completion: ' 42' },
];
const TYPES = ['f32', 'f16', 'q8_0', 'q4_0'] as const;

function batchOf(model: Model) {
  return makeBatch(ITEMS.map((it) => model.tokenizePair(it.prompt, it.completion)), 0);
}

type Engine = Pick<NativeTrainerOptions, 'frozenGrad' | 'head' | 'headChunkBytes' | 'transposeChunkBytes' | 'checkpointing' | 'cpuGemm'>;
const REFERENCE: Engine = { frozenGrad: 'out_prod', head: 'dense', checkpointing: 'off' };
const DEFAULTS: Engine = {};
// The graph against the graph, on ggml's kernels: the addon's packed GEMM (native/core/cpu_gemm.h, default on)
// sums in another order, and on F16 and quantized bases ggml rounds each MUL_MAT's activations to F16 / Q8_0
// / Q8_K, which turns those ~1e-7 differences into a flipped rounding here and there (1.5e-5 relative in a
// gradient, measured). The GEMM is held to ggml's MUL_MAT per op by the native ctest, and to this file's
// reference below ('the packed CPU GEMM ...'); the graph tests of non-F32 bases run without it.
const graphEngine = (type: string, e: Engine): Engine => (type === 'f32' ? e : { ...e, cpuGemm: false });

function trainer(file: string, engine: Engine, targets = 0x7f, dropout = 0): Promise<NativeTrainer> {
  return addon().createTrainer(file, { rank: 4, alpha: 8, dropout, targets, seed: 3, threads: 1, ...engine });
}

/** Random B too (B = 0 makes every A-gradient zero), identical in both trainers. */
function randomize(tr: NativeTrainer): void {
  const p = tr.getParams();
  let s = 11;
  for (let i = 0; i < p.length; i++) if (p[i] === 0) p[i] = (((s = (s * 16807) % 2147483647) / 2147483647) - 0.5) * 0.1;
  tr.setParams(p);
}

/** max |a - b| / max |b|: the gradient's error relative to its scale. */
function relDiff(a: Float32Array, b: Float32Array): { rel: number; scale: number } {
  let d = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return { rel: d / scale, scale };
}

// Many chunks on a tiny model: 3 rows per head chunk (logits + p of a 320-token vocabulary = 2.5 KiB a row),
// 8 rows per transposed chunk of a 64-wide weight; and every layer checkpointed (recomputed in the backward).
const CHUNKED: Engine = { headChunkBytes: 3 * 2 * 4 * 320, transposeChunkBytes: 8 * 64 * 4, checkpointing: 'on' };

async function compare(t: import('ava').ExecutionContext, label: string, file: string, engine: Engine, targets: number, dropout = 0) {
  const model = await loadModel(file);
  const batch = batchOf(model);
  const [ours, ref] = [await trainer(file, engine, targets, dropout), await trainer(file, REFERENCE, targets, dropout)];
  // The base model's Σ log p: ours against llama.cpp's inference path (the reference's cross-entropy sum is
  // compared with ours through the losses below).
  const scored = (await model.score(ITEMS)).reduce((x, sc) => x + sc.sum, 0);
  const base = (await ours.logprobs({ ...batch, useLora: false })).reduce((x, y) => x + y, 0);
  t.log(`${label} base Σ log p: ours - llama.cpp's scoring = ${(base - scored).toExponential(2)} (of ${scored.toFixed(3)})`);
  t.true(Math.abs(base - scored) <= 1e-5 * Math.abs(scored));
  randomize(ours);
  ref.setParams(ours.getParams());
  // DPO's gradient is σ(-z)·β times the log-prob gradients, z = β·(difference of two sums of F32 log-probs).
  // The reference's sums drift: its CROSS_ENTROPY_LOSS is ~1e-7 per token off a double-precision log-softmax
  // (checked below against llama.cpp's scoring: ours is within 1e-6 relative, the reference up to ~1e-5), and
  // σ' passes that to every DPO gradient entry: 1.2e-5 relative measured on the qwen2 F16/Q8_0 bases.
  const check = (what: string, a: number, b: number, tol = 1e-5) => {
    const { rel, scale } = relDiff(ours.getGrads(), ref.getGrads());
    t.log(`${label} ${what}: loss ${a.toFixed(6)} vs ${b.toFixed(6)}, max |Δgrad| / max |grad| = ${rel.toExponential(2)} (scale ${scale.toExponential(2)})`);
    t.true(scale > 0);
    t.true(Math.abs(a - b) <= 1e-5 * Math.abs(b), `${what} loss`);
    t.true(rel < tol, `${what} gradients`);
    ours.clearGrads();
    ref.clearGrads();
  };
  const a = await ours.accumulate({ ...batch, lossScale: 0.5 });
  const b = await ref.accumulate({ ...batch, lossScale: 0.5 });
  t.is(a.nTargets, b.nTargets);
  check('SFT', a.lossSum, b.lossSum);
  // Pairs: sequences 0/1 and 2/3; DPO's reference log-probs a little off the policy's.
  const refLogps = Float64Array.from(await ref.sequenceLogprobs({ ...batch, useLora: false }), (x, i) => x - 0.3 * (i % 2));
  const mine = await ours.sequenceLogprobs({ ...batch, useLora: false });
  t.true(maxAbs(mine, Float64Array.from(refLogps, (x, i) => x + 0.3 * (i % 2))) < 1e-4);
  for (const kind of ['dpo', 'orpo'] as const) {
    const o = { ...batch, kind, beta: 0.5, lambda: 0.7, refLogps, lossScale: 0.5 };
    const pa = await ours.accumulatePairs(o);
    const pb = await ref.accumulatePairs(o);
    t.true(maxAbs(pa.logps, pb.logps) < 1e-4);
    check(kind.toUpperCase(), pa.lossSum, pb.lossSum, kind === 'dpo' ? 3e-5 : 1e-5);
  }
  const lpa = await ours.logprobs({ ...batch, useLora: true });
  const lpb = await ref.logprobs({ ...batch, useLora: true });
  t.log(`${label} per-token log-probs: max |Δ| = ${maxAbs(lpa, lpb).toExponential(2)}`);
  t.true(maxAbs(lpa, lpb) < 1e-5);
  ours.dispose();
  ref.dispose();
  model.dispose();
}

const maxAbs = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).reduce((m, x, i) => Math.max(m, Math.abs(x - b[i]!)), 0);

for (const type of TYPES) {
  for (const arch of ['llama', 'qwen2'] as const) {
    test(`${arch} ${type}: SFT, DPO and ORPO losses and gradients of engine v2 equal ggml's autodiff graph within 1e-5 relative`, async (t) => {
      await compare(t, `${arch} ${type}`, await tinyModel({ arch, type }), graphEngine(type, DEFAULTS), 0x7f);
    });
  }
  test(`llama ${type}, forced into many head and transpose chunks, every layer checkpointed: the same losses and gradients`, async (t) => {
    await compare(t, `llama ${type} chunked`, await tinyModel({ arch: 'llama', type }), graphEngine(type, CHUNKED), 0x7f);
  });
}

for (const type of TYPES) {
  test(`the packed CPU GEMM on a ${type} base: the same losses and gradients as ggml's MUL_MAT in the v2 training graph`, async (t) => {
    const file = await tinyModel({ arch: 'qwen2', type });
    const model = await loadModel(file);
    const batch = batchOf(model);
    const [ours, ggml] = [await trainer(file, {}, 0x7f), await trainer(file, { cpuGemm: false }, 0x7f)];
    randomize(ours);
    ggml.setParams(ours.getParams());
    // F32: the same products summed in another order. Other bases: plus ggml's rounding of activations (above).
    const [lossTol, gradTol] = type === 'f32' ? [1e-6, 1e-5] : [1e-5, 1e-4];
    const a = await ours.accumulate({ ...batch, lossScale: 0.5 });
    const b = await ggml.accumulate({ ...batch, lossScale: 0.5 });
    const { rel } = relDiff(ours.getGrads(), ggml.getGrads());
    t.log(`${type}: loss ${a.lossSum.toFixed(6)} vs ${b.lossSum.toFixed(6)}, max |Δgrad| / max |grad| = ${rel.toExponential(2)}`);
    t.true(rel > 0, 'the GEMM ran (ggml sums in another order)');
    t.true(Math.abs(a.lossSum - b.lossSum) <= lossTol * Math.abs(b.lossSum));
    t.true(rel < gradTol);
    ours.dispose();
    ggml.dispose();
    model.dispose();
  });
}

for (const arch of ['llama', 'qwen2', 'qwen3'] as const) {
  test(`${arch} f32 with dropout 0.2, checkpointed and not: the same masks, losses and gradients as the reference`, async (t) => {
    const file = await tinyModel({ arch });
    await compare(t, `${arch} dropout`, file, { checkpointing: 'off' }, 0x7f, 0.2);
    await compare(t, `${arch} dropout checkpointed`, file, { checkpointing: 'on' }, 0x7f, 0.2);
  });
}

test('a LoRA on the output head keeps the dense head (MUL_MAT gradients still): the same gradients as the reference', async (t) => {
  await compare(t, 'llama q8_0 head LoRA', await tinyModel({ arch: 'llama', type: 'q8_0' }), DEFAULTS, 0xff);
});

test('the compute buffer of the chunked head holds no [n_vocab × rows] tensors (dense: logits, labels and their gradients)', async (t) => {
  const file = await tinyModel({ arch: 'llama', type: 'q8_0', vocab: 4096 });
  const model = await loadModel(file);
  const items = Array.from({ length: 8 }, (_, i) => ({ prompt: `Q: ${i} + ${i}?`, completion: ` ${i} + ${i} = ${2 * i}. #### ${2 * i} and a few more words of answer to make rows` }));
  const batch = makeBatch(items.map((it) => model.tokenizePair(it.prompt, it.completion)), 0);
  const bytes = async (engine: Engine) => {
    const tr = await trainer(file, engine);
    await tr.accumulate({ ...batch, lossScale: 1 });
    const { computeBytes } = tr.graphOps();
    tr.dispose();
    return computeBytes;
  };
  const V = 4096, rowBytes = V * 4 * batch.nTargets;
  const dense = await bytes(REFERENCE), chunked = await bytes({ headChunkBytes: 16 * 2 * 4 * V });
  t.log(`${batch.nTargets} target rows × ${V} vocabulary (${(rowBytes / 2 ** 20).toFixed(2)} MiB per [n_vocab × rows] F32): ` +
    `compute buffer dense ${(dense / 2 ** 20).toFixed(2)} MiB, chunked (16 rows) ${(chunked / 2 ** 20).toFixed(2)} MiB`);
  t.true(dense - chunked >= 2 * rowBytes, 'at least the logits and the labels are gone');
  model.dispose();
});

// ---- op audit against the pinned llama.cpp source ------------------------------------------------------------

// Frozen types: the creator's (F16, Q8_0, Q4_0) and K-quants written by ggml's quantizer (rows of 256).
const AUDIT_TYPES = [
  { name: 'f16' }, { name: 'q8_0' }, { name: 'q4_0' },
  { name: 'q4_K', id: 12 }, { name: 'q5_K', id: 13 }, { name: 'q6_K', id: 14 },
] as const;

async function auditModel(type: (typeof AUDIT_TYPES)[number]): Promise<string> {
  const shape = { arch: 'llama' as const, embd: 256, heads: 4, kvHeads: 2, ff: 512 };
  if (!('id' in type)) return tinyModel({ ...shape, type: type.name });
  const out = path.join(TMP, `audit-${type.name}.gguf`);
  await convertMatrices(await tinyModel({ ...shape, type: 'f32' }), out, type.name, type.id, 256);
  return out;
}

/** The op signatures of the SFT and DPO graphs of one engine, and which GPU backend rejects which. */
async function audit(file: string, engine: Engine, targets = 0x7f) {
  const model = await loadModel(file);
  const batch = batchOf(model);
  model.dispose();
  const tr = await trainer(file, engine, targets);
  await tr.accumulate({ ...batch, lossScale: 1 });
  const sft = tr.graphOps();
  await tr.accumulatePairs({ ...batch, kind: 'dpo', beta: 0.1, lambda: 0, refLogps: new Float64Array(batch.B), lossScale: 1 });
  const dpo = tr.graphOps();
  tr.dispose();
  const ops = { ...sft.ops, ...dpo.ops };
  const rejected = Object.keys(ops).flatMap((sig) => GPU_BACKENDS.map((b) => rejection(b, sig)).filter((r): r is string => r !== undefined).map((r) => `${sig}: ${r}`));
  return { ops, rejected, transientBytes: sft.transientBytes };
}

for (const type of AUDIT_TYPES) {
  test(`${type.name} base: every op of the SFT and DPO training graphs is one the bundled CUDA and Vulkan supports_op accept`, async (t) => {
    const file = await auditModel(type);
    const ours = await audit(file, DEFAULTS);
    t.log(`${type.name}: ${Object.entries(ours.ops).map(([sig, n]) => `${sig} ×${n}`).join(', ')}; largest transient transpose ${ours.transientBytes} bytes`);
    t.deepEqual(ours.rejected, []);
    t.true((ours.ops[`MUL_MAT ${type.name} f32`] ?? 0) > 0); // the base is used in its own type
    t.true((ours.ops[`GET_ROWS ${type.name} i32`] ?? 0) > 0); // the dequantizing reads of the transposes
    // Checkpointed graphs are the same layer graphs: the same ops.
    const ck = await audit(file, { checkpointing: 'on' });
    t.deepEqual(ck.rejected, []);
  });
}

for (const arch of ['gemma2', 'phi3'] as const) {
  test(`${arch} q8_0 (GELU's and tanh's smooth forms, soft-caps, post-norms / fused q/k/v and gate/up): every op passes the GPU audit`, async (t) => {
    const file = await tinyModel({ arch, type: 'q8_0', ...(arch === 'gemma2' ? { slidingWindow: 8 } : {}) });
    for (const engine of [DEFAULTS, { checkpointing: 'on' } as Engine]) {
      const ours = await audit(file, engine);
      t.log(`${arch} ${JSON.stringify(engine)}: ${Object.entries(ours.ops).map(([sig, n]) => `${sig} ×${n}`).join(', ')}`);
      t.deepEqual(ours.rejected, []);
      if (arch === 'gemma2') t.true((ours.ops['SOFTPLUS f32'] ?? 0) > 0 && (ours.ops['TANH f32'] ?? 0) > 0 && (ours.ops['GELU f32'] ?? 0) > 0);
    }
  });
}

test('negative controls: the autodiff reference graph of a quantized base is rejected (OUT_PROD on q8_0); so is a made-up op or type', async (t) => {
  const ref = await audit(await auditModel({ name: 'q8_0' }), REFERENCE);
  t.log(ref.rejected.join('; '));
  t.true(ref.rejected.some((r) => r.startsWith('OUT_PROD q8_0 f32')));
  for (const b of GPU_BACKENDS) {
    t.truthy(rejection(b, 'NOT_AN_OP f32'));
    t.truthy(rejection(b, 'GET_ROWS q9_Z i32'));
    t.is(rejection(b, 'GET_ROWS q4_K i32'), undefined);
  }
});
